"""Ad-hoc SQL: one statement admitted by query/sql_guard.py, answered under its limits (time, rows,
bytes, how many at once) as query/sql_answer.py builds it; SQL DuckDB refuses is a BadRequest."""
from __future__ import annotations

from . import sql_guard, sql_values
from .reader import Reader
from .sql_answer import AnswerBuilder, SqlAnswer


def answer(reader: Reader, statement: str, *, max_rows: int, max_bytes: int, timeout_s: float,
           wait_s: float) -> SqlAnswer:
    """Raises BadRequest (refused or failing SQL), QueryTimeout, ReadersBusy (every SQL cursor busy)."""
    sql_guard.check(statement)
    return reader.stream(statement, AnswerBuilder(max_rows=max_rows, max_bytes=max_bytes, timeout_s=timeout_s),
                         timeout_s=timeout_s, wait_s=wait_s, prepare=sql_values.macros(max_bytes))
