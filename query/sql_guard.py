"""Admission for ad-hoc SQL: exactly one SELECT statement.

This is the first of two walls. The second is the store itself, opened with
DuckDB's `enable_external_access = false` and a locked configuration, so even a
SELECT cannot read files (read_csv, read_text, glob), ATTACH, INSTALL or COPY.
"""
from __future__ import annotations

import re

import duckdb

from .errors import BadRequest

MAX_SQL_CHARS = 100_000
_PRAGMA = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*pragma\b", re.IGNORECASE | re.DOTALL)


def check(statement: str) -> None:
    if not isinstance(statement, str) or not statement.strip():
        raise BadRequest("sql must be a non-empty string")
    if len(statement) > MAX_SQL_CHARS:
        raise BadRequest(f"sql is over {MAX_SQL_CHARS} characters")
    parser = duckdb.connect(":memory:")
    try:
        statements = parser.extract_statements(statement)
    except duckdb.Error as exc:
        raise BadRequest(f"SQL does not parse: {str(exc).splitlines()[0]}") from None
    finally:
        parser.close()
    if len(statements) != 1:
        raise BadRequest(f"send exactly one statement, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise BadRequest(f"only read-only SELECT statements are allowed, got {kind.name}")
    # DuckDB parses some PRAGMAs as SELECTs over pragma functions: refuse them by their keyword.
    if _PRAGMA.match(statement):
        raise BadRequest("only read-only SELECT statements are allowed, got PRAGMA")
