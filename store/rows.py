"""Rows to Arrow: the only place that turns canonical rows into columns.

Column types come from the tables themselves (store/sql/*.sql), so the SQL files
stay the single source of the schema; `check_schema` pins them to proto/model.py.
"""
from __future__ import annotations

import json

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
    """A list of row tuples (NamedTuples) as one Arrow table.

    A column whose values do not fit its type (a runner that sends a task id as a number, a list
    where text belongs) is converted value by value instead of failing the request or its batch:
    text columns take the JSON of the value, numbers what converts, anything else NULL."""
    columns = list(zip(*rows))
    arrays = []
    for col, f in zip(columns, schema):
        try:
            arrays.append(pa.array(col, type=f.type))
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            arrays.append(pa.array([_coerce(v, f.type) for v in col], type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _coerce(v, t: pa.DataType):
    if v is None:
        return None
    if pa.types.is_string(t):
        return v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    if pa.types.is_boolean(t):
        return v if isinstance(v, bool) else None
    if pa.types.is_integer(t):
        bits = t.bit_width - 1
        return v if isinstance(v, int) and not isinstance(v, bool) and -(1 << bits) <= v < (1 << bits) else None
    if pa.types.is_floating(t):
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
    if pa.types.is_timestamp(t):
        return v if isinstance(v, int) and -(1 << 62) < v < (1 << 62) else None
    if pa.types.is_list(t):
        return [x if isinstance(x, str) else json.dumps(x, default=str) for x in v] if isinstance(v, (list, tuple)) \
            else None
    return None
