"""One transaction on a store's connection, all of it or none: the read models' rebuilds and upkeep steps
(store/invocation_keys.py, store/status_counts.py) and retention (store/retention.py) run their work in it."""
from __future__ import annotations

from typing import Callable, TypeVar

import duckdb

T = TypeVar("T")


def in_transaction(con, fn: Callable[[], T]) -> T:
    """fn() between BEGIN and COMMIT on `con`; returns what it returns. On any error the transaction is rolled
    back (`rollback`) and the error raised."""
    con.begin()
    try:
        out = fn()
        con.commit()
    except Exception:
        rollback(con)
        raise
    return out


def rollback(con) -> None:
    """Roll back, unless a failed commit (a lake's conflict) already ended the transaction: the caller then
    raises that commit's own error, not "no transaction is active"."""
    try:
        con.rollback()
    except duckdb.Error:
        pass
