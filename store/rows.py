"""Rows to Arrow: the only place that turns canonical rows into columns.

Column types come from the tables themselves (store/sql/*.sql), so the SQL files
stay the single source of the schema; `check_schema` pins them to proto/model.py.
"""
from __future__ import annotations

import pyarrow as pa

from tasktrail.proto.model import TABLES

_ARROW = {
    "VARCHAR": pa.string(), "BIGINT": pa.int64(), "INTEGER": pa.int32(), "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(), "TIMESTAMP": pa.timestamp("us"), "VARCHAR[]": pa.list_(pa.string()),
}


def arrow_schemas(describe: dict[str, list[tuple[str, str]]]) -> dict[str, pa.Schema]:
    """Arrow schemas per table from `{table: [(column, duckdb_type), ...]}`, without `batch`."""
    return {t: pa.schema([(c, _ARROW[ty]) for c, ty in cols if c != "batch"]) for t, cols in describe.items()}


def check_schema(describe: dict[str, list[tuple[str, str]]]) -> None:
    """Fail loudly when a table and its row type disagree: a migration is missing."""
    for table, row_type in TABLES.items():
        cols = [c for c, _ in describe.get(table, []) if c != "batch"]
        if cols != list(row_type._fields):
            raise RuntimeError(f"table {table} has columns {cols}, row type {row_type.__name__} "
                               f"has {list(row_type._fields)}: the store needs a migration")


def to_arrow(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    """A list of row tuples (NamedTuples) as one Arrow table."""
    columns = list(zip(*rows))
    arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema)]
    return pa.Table.from_arrays(arrays, schema=schema)
