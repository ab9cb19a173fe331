"""Admission for ad-hoc SQL: exactly one SELECT statement that calls nothing which changes state.

This is the first of two walls. The second is the store itself, opened with
DuckDB's `enable_external_access = false` and a locked configuration, so even a
SELECT cannot read files (read_csv, read_text, glob), ATTACH, INSTALL or COPY.

A SELECT can still call table functions that act (`FROM checkpoint()` stalls every commit; DuckLake's
`ducklake_expire_snapshots()` and postgres_scanner's `postgres_execute()` write), so the statement is
parsed into DuckDB's own syntax tree (`json_serialize_sql`) and every function it calls is checked, in
any position (CTE, subquery, join, LIMIT): a table function must be on the READ_ONLY_TABLE_FUNCTIONS
list, and no call may name one of STATE_CHANGING. Names are compared without case or schema, as DuckDB
resolves them.
"""
from __future__ import annotations

import json
import re
from typing import Iterator

import duckdb

from .errors import BadRequest
from .sql_values import BOUNDED

MAX_SQL_CHARS = 100_000
_PRAGMA = re.compile(r"\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*pragma\b", re.IGNORECASE | re.DOTALL)

# Table functions a SELECT may read from: generators, unnesting, and catalog introspection that only reads.
READ_ONLY_TABLE_FUNCTIONS = frozenset({
    "range", "generate_series", "unnest", "repeat", "repeat_row", "json_each", "json_tree", "query_table",
    "summary", "histogram", "histogram_values", "test_all_types", "test_vector_types",
    "icu_calendar_names", "pg_timezone_names",
    "duckdb_columns", "duckdb_constraints", "duckdb_databases", "duckdb_dependencies", "duckdb_extensions",
    "duckdb_functions", "duckdb_indexes", "duckdb_keywords", "duckdb_memory", "duckdb_optimizers",
    "duckdb_schemas", "duckdb_sequences", "duckdb_settings", "duckdb_tables", "duckdb_temporary_files",
    "duckdb_types", "duckdb_variables", "duckdb_views", "duckdb_approx_database_count",
    "duckdb_connection_count",
    "pragma_collations", "pragma_database_size", "pragma_metadata_info", "pragma_platform", "pragma_show",
    "pragma_storage_info", "pragma_table_info", "pragma_user_agent", "pragma_version",
    # A lake's history (tasktrail web on DuckLake): snapshots and changes, read only.
    "ducklake_snapshots", "ducklake_current_snapshot", "ducklake_last_committed_snapshot",
    "ducklake_table_info", "ducklake_table_changes", "ducklake_table_insertions", "ducklake_table_deletions",
    "ducklake_list_files", "ducklake_options", "ducklake_settings",
})

# Calls that change state or run SQL this check cannot see, named in the refusal (table functions and
# scalars; any other table function is refused too, for not being on the list above).
STATE_CHANGING = {
    "checkpoint": "runs a checkpoint, which stalls every commit",
    "force_checkpoint": "runs a checkpoint, which stalls every commit",
    "enable_logging": "changes the database's logging", "disable_logging": "changes the database's logging",
    "truncate_duckdb_logs": "deletes the database's logs",
    "enable_profiling": "changes profiling", "disable_profiling": "changes profiling",
    "query": "runs SQL given as a string, which this check cannot see",
    "json_execute_serialized_sql": "runs SQL given as a string, which this check cannot see",
    "setseed": "changes the reader's random seed", "nextval": "advances a sequence",
    "write_log": "writes to the database's log",
    "postgres_execute": "runs SQL on the PostgreSQL catalog", "postgres_query": "runs SQL on PostgreSQL",
    "postgres_attach": "attaches a database", "postgres_configure_pool": "changes the connection pool",
    "pg_clear_cache": "changes the PostgreSQL cache",
    "ducklake_add_data_files": "writes to the lake", "ducklake_cleanup_old_files": "deletes lake files",
    "ducklake_delete_orphaned_files": "deletes lake files", "ducklake_expire_snapshots": "expires lake snapshots",
    "ducklake_flush_inlined_data": "writes to the lake", "ducklake_merge_adjacent_files": "rewrites lake files",
    "ducklake_rewrite_data_files": "rewrites lake files", "ducklake_set_option": "changes lake options",
    "ducklake_set_commit_message": "changes the lake's commit", "ducklake_commit": "commits to the lake",
}


def check(statement: str) -> None:
    """Admit `statement` or raise BadRequest saying why not (returns None)."""
    if not isinstance(statement, str) or not statement.strip():
        raise BadRequest("sql must be a non-empty string")
    if len(statement) > MAX_SQL_CHARS:
        raise BadRequest(f"sql is over {MAX_SQL_CHARS} characters")
    parser = duckdb.connect(":memory:")
    try:
        try:
            statements = parser.extract_statements(statement)
        except duckdb.Error as exc:
            raise BadRequest(f"SQL does not parse: {str(exc).splitlines()[0]}") from None
        if len(statements) != 1:
            raise BadRequest(f"send exactly one statement, got {len(statements)}")
        kind = statements[0].type
        if kind != duckdb.StatementType.SELECT:
            raise BadRequest(f"only read-only SELECT statements are allowed, got {kind.name}")
        # DuckDB parses some PRAGMAs as SELECTs over pragma functions: refuse them by their keyword.
        if _PRAGMA.match(statement):
            raise BadRequest("only read-only SELECT statements are allowed, got PRAGMA")
        try:
            tree = json.loads(parser.execute("SELECT json_serialize_sql(?::VARCHAR)", [statement]).fetchone()[0])
        except (duckdb.Error, ValueError, TypeError) as exc:
            raise BadRequest(f"SQL cannot be checked: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    finally:
        parser.close()
    if not isinstance(tree, dict) or tree.get("error"):
        message = tree.get("error_message") if isinstance(tree, dict) else None
        raise BadRequest(f"SQL cannot be checked: {message or 'not a plain SELECT'}")
    for name, as_table, qualified in calls(tree):
        if qualified and not as_table and name in BOUNDED:
            raise BadRequest(f"call {name}() without a schema: the unqualified one bounds the size of what it "
                             "builds (--sql-max-bytes)")
        if name in STATE_CHANGING:
            raise BadRequest(f"{name}() is not allowed in ad-hoc SQL: it {STATE_CHANGING[name]}")
        if as_table and name not in READ_ONLY_TABLE_FUNCTIONS:
            raise BadRequest(f"table function {name}() is not allowed in ad-hoc SQL; read-only ones are: "
                             + ", ".join(sorted(READ_ONLY_TABLE_FUNCTIONS)))


def calls(node) -> Iterator[tuple[str, bool, bool]]:
    """(lower-case name, called as a table function, named with a schema or catalog) of every function
    call in a json_serialize_sql tree."""
    stack = [(node, False)]
    while stack:
        item, as_table = stack.pop()
        if isinstance(item, dict):
            if item.get("class") == "FUNCTION" and isinstance(item.get("function_name"), str):
                qualified = any(item.get(k) not in (None, "", "temp") for k in ("schema", "catalog"))
                yield item["function_name"].lower(), as_table, qualified
            table_ref = item.get("type") == "TABLE_FUNCTION"
            for key, value in item.items():
                stack.append((value, table_ref and key == "function"))
        elif isinstance(item, list):
            stack.extend((v, False) for v in item)
