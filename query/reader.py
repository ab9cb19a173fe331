"""The one reader every read model reads the log through, and the pieces of SQL they share.

`Reader(sql, params, max_rows)` runs one read under the service's time limit (QueryTimeout past it) and a
row cap; `arrow` answers as one Arrow table; `stream` runs an ad-hoc statement under its own limits and
turns a statement DuckDB refuses into a BadRequest (our own SQL failing is a bug: it stays a QueryError).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable, Optional, Sequence

from tasktrail.store import api
from tasktrail.store.api import EventLog, QueryError, Result

from .errors import BadRequest

MAX_ROWS = 100_000  # what one read model's read may return (the row cap)

# A point lookup by id in the invocation_state cache (params: the id twice): the store's contract spells it.
BY_ID = api.BY_ID
# An invocation's trigger runs, and whether it has any, through its kind-2 keys (params: the id 3 times; once).
TRIGGER_RUNS_OF = api.TRIGGER_RUNS_OF
ANY_TRIGGER_RUN = api.ANY_TRIGGER_RUN
# The rows whose parent is one of n ids (params: the ids twice), through the parents' keys.
children_of = api.children_of
# The created_at of the rows whose parent is one of n ids (params: the ids), from the parents' keys.
children_keys = api.children_keys


class Reader:
    def __init__(self, log: EventLog, timeout_s: float) -> None:
        self.log, self.timeout_s = log, timeout_s

    def __call__(self, sql: str, params: Sequence[Any] | dict = (), max_rows: int = MAX_ROWS) -> Result:
        return self.log.query(sql, params, timeout_s=self.timeout_s, max_rows=max_rows)

    def arrow(self, sql: str, params: Sequence[Any] = ()):
        return self.log.query_arrow(sql, params, timeout_s=self.timeout_s)

    def stream(self, statement: str, consume: Callable, *, timeout_s: float, wait_s: float, prepare: tuple = ()):
        try:
            return self.log.stream(statement, consume, timeout_s=timeout_s, wait_s=wait_s, prepare=prepare)
        except QueryError as exc:
            raise BadRequest(f"SQL error: {exc}") from None


def newest_first(q, sql: str, params: Sequence[Any], anchor: Optional[datetime], enough: int,
                 first_s: float = 3600.0, grow: int = 16, widest_s: float = 366 * 86400.0) -> list:
    """The rows of `sql` (newest first, its WHERE ending in `{since}`, which this fills with a bound on `ts`
    whose parameter follows `params`), read over the `first_s` seconds before `anchor` (and anything later)
    first, then windows `grow` times as long, until `enough` rows come or the window passes `widest_s`, when
    the last read has no lower bound. The log's tables are stored in arrival order, so their zone maps skip
    what lies before the window: a page of newest rows costs what the window holds, not what the store does.
    `anchor` is a hint (the subject's last activity): a wrong one costs reads, never rows. None: one read."""
    span = first_s
    while anchor is not None and span <= widest_s:
        rows = q(sql.format(since="AND ts >= ?"), [*params, anchor - timedelta(seconds=span)]).rows
        if len(rows) >= enough:
            return rows
        span *= grow
    return q(sql.format(since=""), list(params)).rows


def conditions(*pairs: tuple) -> tuple[list, list]:
    """(clauses, params) for the (clause, value) pairs whose value is given (not None, not "")."""
    clauses, params = [], []
    for clause, value in pairs:
        if value is not None and value != "":
            clauses.append(clause)
            params.append(value)
    return clauses, params


def where(clauses: Sequence[str]) -> str:
    """`WHERE a AND b`, or nothing without clauses."""
    return ("WHERE " + " AND ".join(clauses)) if clauses else ""


def by_ids(n: int) -> str:
    """Lookup of n invocation ids (params: the ids twice) through the state cache's id_hash."""
    ph = ", ".join(["?"] * n)
    hashes = ", ".join(["hash(?::VARCHAR)"] * n)
    return f"id_hash IN ({hashes}) AND invocation_id IN ({ph})"


# Up to this many ids are read as point lookups, one UNION ALL branch each (`state_rows`): DuckDB takes an
# IN list as an optional filter and compares it on every row (~20 ms over 200,000 invocations for 3 ids,
# against ~1 ms per point lookup).
POINT_LOOKUPS = 16


def state_rows(ids: Sequence[str], columns: str = "*") -> tuple[str, list]:
    """(a parenthesized relation of the invocation_state rows of these distinct `ids`, its params): point
    lookups for a few ids, else one scan by_ids."""
    ids = list(dict.fromkeys(ids))
    if len(ids) <= POINT_LOOKUPS:
        one = f"SELECT {columns} FROM invocation_state WHERE {BY_ID}"
        return "(" + " UNION ALL ".join([one] * len(ids)) + ")", [x for i in ids for x in (i, i)]
    return f"(SELECT {columns} FROM invocation_state WHERE {by_ids(len(ids))})", ids + ids
