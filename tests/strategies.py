"""Hypothesis strategies the fuzz and schemathesis tests share: time parameters at their extremes, and SQL
whose values Python or JSON cannot hold as they are."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from hypothesis import strategies as st

_OFFSETS = st.one_of(st.none(), st.just(timezone.utc), st.builds(
    lambda m: timezone(timedelta(minutes=m)), st.integers(-(23 * 60 + 59), 23 * 60 + 59)))


def _written(dt: datetime, style: int) -> str:
    text = dt.isoformat()
    if style == 1 and dt.tzinfo is timezone.utc:
        return text.replace("+00:00", "Z")
    if style == 2:
        return dt.date().isoformat()
    return text


# A time parameter: any time of years 1-9999 at any offset, relative times of any size (digits beyond any
# float included), the hand-picked edges, and text that is no time at all.
time_values = st.one_of(
    st.builds(_written, st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
                                     timezones=_OFFSETS), st.integers(0, 2)),
    st.builds(lambda n, u: f"-{n}{u}", st.one_of(st.integers(0, 10**500), st.floats(0, 1e308).map(repr)),
              st.sampled_from("smhdw")),
    st.sampled_from(["1000-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59.999999-23:59", "1970-01-01T00:00:00Z", "2300-01-01T00:00:00Z", "-0s",
                     "-" + "9" * 400 + "s", "-1e400h", "all", "", "now", "-²h"]),
    st.text(max_size=40),
)

# Literals DuckDB holds that Python's types, Arrow's conversion or JSON cannot take as they are.
ODD_LITERALS = [
    "'infinity'::DATE", "'-infinity'::DATE", "'infinity'::TIMESTAMP", "'-infinity'::TIMESTAMP",
    "'infinity'::TIMESTAMPTZ", "'-infinity'::TIMESTAMP_NS", "'infinity'::TIMESTAMP_S", "'infinity'::TIMESTAMP_MS",
    "'5877642-06-25 (BC)'::DATE", "'5881580-07-10'::DATE", "'294247-01-10 04:00:54.775806'::TIMESTAMP",
    "'290309-12-22 (BC) 00:00:00'::TIMESTAMP", "'1677-09-22 00:00:00'::TIMESTAMP_NS",
    "'2024-01-01 00:00:00.123456789'::TIMESTAMP_NS", "'0001-01-01 00:00:00+00'::TIMESTAMPTZ", "'24:00:00'::TIME",
    "'12:00:00+15:59'::TIMETZ", "'23:59:59.999999999'::TIME_NS", "'nan'::DOUBLE", "'inf'::FLOAT", "'-inf'::DOUBLE",
    "-0.0::DOUBLE", "'170141183460469231731687303715884105727'::HUGEINT",
    "'-170141183460469231731687303715884105728'::HUGEINT", "'340282366920938463463374607431768211455'::UHUGEINT",
    "18446744073709551615::UBIGINT", "-9223372036854775808::BIGINT", "'0101'::BIT",
    "INTERVAL '-14 months -3 days -1 hour'", "INTERVAL '83 years 999 days 00:16:39.999999'", "'\\x00\\xff'::BLOB",
    "''::BLOB", "'🦆' || chr(0)", "chr(0)", "NULL", "[]::INTEGER[]", "'99999999999999999999999999.9999999999'::DECIMAL(38,10)",
    "0.1::DECIMAL(3,1)", "gen_random_uuid()", "'POINT(1 2)'::GEOMETRY", "union_value(a := 'x')",
    "'{\"a\": [1, 2.5e308]}'::JSON",
]
_WRAPS = ["{}", "[{}]", "[{}, NULL]", "{{'k': {}}}", "MAP {{'k': {}}}", "[[{}]]", "{{'a': [{}], 'b': 1}}", "{}::VARCHAR"]

odd_expressions = st.builds(lambda lit, wrap: wrap.format(lit), st.sampled_from(ODD_LITERALS), st.sampled_from(_WRAPS))

# A SELECT over odd values: one to four of them, over a few rows, or all of test_all_types().
odd_sql = st.one_of(
    st.builds(lambda exprs, n: f"SELECT {', '.join(exprs)} FROM range({n})", st.lists(odd_expressions, min_size=1,
                                                                                      max_size=4), st.integers(1, 3)),
    st.just("SELECT * FROM test_all_types()"),
    st.builds(lambda cols: "SELECT " + ", ".join(f'"{c}"' for c in cols) + " FROM test_all_types()", st.lists(st.sampled_from([
        "date", "timestamp", "timestamp_ns", "timestamp_tz", "time_tz", "uhugeint", "hugeint", "bignum", "bit",
        "interval", "double_array", "date_array", "timestamp_array", "timestamptz_array", "map", "union",
        "struct_of_fixed_array", "geometry", "time_ns"]), min_size=1, max_size=5)),
)
