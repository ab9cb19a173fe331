"""Cells of an ad-hoc SQL answer: every Arrow value as a JSON value a person can read, never an exception.

Arrow's own conversion to Python fails on values DuckDB holds and Python cannot (`'infinity'::DATE`,
timestamps past year 9999 or before year 1, nanosecond times); such a column is converted value by value
from its raw numbers instead, in DuckDB's own words (`infinity`, `5877642-06-25 (BC)`). JSON has no
NaN, infinities or integers past 64 bits, so those become text ("NaN", "Infinity", the digits).
Times are RFC 3339 UTC (`…T…Z`), dates `YYYY-MM-DD`, blobs base64, maps lists of [key, value] pairs.
"""
from __future__ import annotations

import base64
import functools
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_YEARS_1_9999_US = (-62_135_596_800_000_000, 253_402_300_799_999_999)
_YEARS_1_9999_DAYS = (-719_162, 2_932_896)
# Arrow types whose Python values are always JSON as they are.
_PLAIN = (pa.types.is_boolean, pa.types.is_string, pa.types.is_large_string, pa.types.is_null,
          pa.types.is_int8, pa.types.is_int16, pa.types.is_int32, pa.types.is_int64,
          pa.types.is_uint8, pa.types.is_uint16, pa.types.is_uint32, pa.types.is_uint64)


@functools.lru_cache(maxsize=256)
def _plain(t: pa.DataType) -> bool:
    """Whether Arrow's Python values of type `t` are JSON as they are (nested ones too)."""
    if any(is_type(t) for is_type in _PLAIN):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _plain(t.value_type)
    if pa.types.is_struct(t):
        return all(_plain(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_map(t):
        return _plain(t.key_type) and _plain(t.item_type)
    if pa.types.is_dictionary(t):
        return _plain(t.value_type)
    return False


def column_cells(arr: pa.Array) -> list:
    """The JSON-ready cells of one Arrow column (any type, nested too), in order; never raises."""
    t = arr.type
    try:
        if _plain(t):
            return arr.to_pylist()
        if pa.types.is_timestamp(t):
            return _timestamps(arr)
        if pa.types.is_date32(t):
            return _dates(arr)
        if pa.types.is_floating(t) and pc.all(pc.is_finite(arr)).as_py() is not False:
            return arr.to_pylist()
        if pa.types.is_time(t):  # Python's time has no 24:00:00, which DuckDB allows
            return _fallback(arr)
        values = arr.to_pylist()
    except Exception:  # a value Python's types cannot hold: convert from the raw numbers
        return _fallback(arr)
    return [cell(v) for v in values]


def _timestamps(arr: pa.Array) -> list:
    """RFC 3339 UTC text of a timestamp column within years 1-9999, made by Arrow (fast); raises
    ValueError for a column holding others (then _fallback writes each)."""
    unit = arr.type.unit
    lo, hi = pc.min_max(arr.cast(pa.int64())).values()
    per = _PER_SECOND[unit]
    if lo.is_valid and (lo.as_py() <= -_INT64_MAX or hi.as_py() >= _INT64_MAX  # -infinity, infinity
                        or lo.as_py() * 1_000_000 // per < _YEARS_1_9999_US[0]
                        or hi.as_py() * 1_000_000 // per > _YEARS_1_9999_US[1]):
        raise ValueError("infinite, or outside years 1-9999")
    naive = arr.cast(pa.timestamp("ns" if unit == "ns" else "us"))  # UTC; s and ms with 6 digits as us
    text = pc.replace_substring(naive.cast(pa.string()), " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(text, pa.scalar("Z"), "").to_pylist()


def _dates(arr: pa.Array) -> list:
    """`YYYY-MM-DD` of a date column within years 1-9999 (Arrow, fast); ValueError for others."""
    lo, hi = pc.min_max(arr.cast(pa.int32())).values()
    if lo.is_valid and (lo.as_py() < _YEARS_1_9999_DAYS[0] or hi.as_py() > _YEARS_1_9999_DAYS[1]):
        raise ValueError("outside years 1-9999")
    return arr.cast(pa.string()).to_pylist()


def cell(v: Any) -> Any:
    """One Python value (as Arrow gives it) as JSON-ready: str, int within 64 bits, finite float, bool,
    None, list or dict of those."""
    if v is None or isinstance(v, (str, bool)):
        return v
    if isinstance(v, int):
        return v if -2**63 <= v < 2**64 else str(v)
    if isinstance(v, float):
        return v if math.isfinite(v) else ("NaN" if v != v else "Infinity" if v > 0 else "-Infinity")
    if isinstance(v, datetime):
        return _iso(v)
    if isinstance(v, (date, time)):
        return v.isoformat()
    if isinstance(v, Decimal):  # DuckDB's HUGEINT/DECIMAL, e.g. sum() of integers
        if not v.is_finite():
            return str(v)
        if v == v.to_integral_value():
            return cell(int(v))
        f = float(v)
        return f if Decimal(repr(f)) == v else str(v)  # a float only when it says the same number
    if isinstance(v, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(v)).decode()
    if isinstance(v, pa.MonthDayNano):
        return interval_text(v.months, v.days, v.nanoseconds)
    if isinstance(v, dict):
        return {str(k): cell(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [cell(x) for x in v]
    if isinstance(v, timedelta):
        return str(v)
    return str(v)


def _iso(v: datetime) -> str:
    """RFC 3339 UTC with microseconds and a four-digit year."""
    if v.tzinfo is not None:
        try:
            v = v.astimezone(timezone.utc)
        except (OverflowError, ValueError):
            return v.isoformat()
    return (f"{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:{v.second:02d}."
            f"{v.microsecond:06d}Z")


def civil(days: int) -> tuple[int, int, int]:
    """(year, month, day) of the proleptic Gregorian calendar, `days` after 1970-01-01 (any sign, any
    size; year 0 is 1 BC). Howard Hinnant's civil_from_days."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (m <= 2), m, d


def _ymd(days: int) -> tuple[str, str]:
    """('YYYY-MM-DD', ' (BC)' or '') as DuckDB writes a date."""
    y, m, d = civil(days)
    return (f"{y:04d}-{m:02d}-{d:02d}", "") if y > 0 else (f"{1 - y:04d}-{m:02d}-{d:02d}", " (BC)")


def date_text(days: int) -> str:
    """A DATE from its days since 1970-01-01, as DuckDB writes it: `infinity`, `-infinity`, BC dates."""
    if days >= _INT32_MAX:
        return "infinity"
    if days <= -_INT32_MAX:
        return "-infinity"
    text, bc = _ymd(days)
    return text + bc


def timestamp_text(value: int, unit: str) -> str:
    """A TIMESTAMP from its count of `unit` (s, ms, us, ns) since the epoch, as RFC 3339 UTC (nanoseconds
    when the unit has them); `infinity`, `-infinity`, and ` (BC)` after a time before year 1."""
    if value >= _INT64_MAX:
        return "infinity"
    if value <= -_INT64_MAX:
        return "-infinity"
    per = _PER_SECOND[unit]
    days, rest = divmod(value, 86400 * per)
    seconds, fraction = divmod(rest, per)
    text, bc = _ymd(days)
    digits = 9 if unit == "ns" else 6
    fraction = fraction * (10 ** digits // per)
    return (f"{text}T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}."
            f"{fraction:0{digits}d}Z{bc}")


def time_text(value: int, unit: str) -> str:
    """A TIME from its count of `unit` since midnight (DuckDB allows 24:00:00)."""
    per = _PER_SECOND[unit]
    seconds, fraction = divmod(value, per)
    digits = 9 if unit == "ns" else 6
    fraction = fraction * (10 ** digits // per)
    clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return clock + (f".{fraction:0{digits}d}" if fraction else "")


def interval_text(months: int, days: int, nanos: int) -> str:
    """An INTERVAL as DuckDB writes it: `1 year 2 months 3 days 04:05:06.000007`."""
    parts = []
    years, months = divmod(months, 12) if months >= 0 else (-(-months // 12), -(-months % 12))
    for n, word in ((years, "year"), (months, "month"), (days, "day")):
        if n:
            parts.append(f"{n} {word}{'' if abs(n) == 1 else 's'}")
    if nanos or not parts:
        sign = "-" if nanos < 0 else ""
        micros = abs(nanos) // 1000
        seconds, frac = divmod(micros, 1_000_000)
        clock = f"{sign}{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        parts.append(clock + (f".{frac:06d}" if frac else ""))
    return " ".join(parts)


def _fallback(arr: pa.Array) -> list:
    """Cells of a column Arrow could not convert, by type; each value alone as a last resort."""
    t = arr.type
    try:
        if pa.types.is_dictionary(t):
            labels = column_cells(arr.dictionary)
            return [None if i is None else labels[i] for i in arr.indices.to_pylist()]
        if pa.types.is_date32(t):
            return [None if v is None else date_text(v) for v in arr.cast(pa.int32()).to_pylist()]
        if pa.types.is_date64(t):
            return [None if v is None else date_text(v // 86_400_000) for v in arr.cast(pa.int64()).to_pylist()]
        if pa.types.is_timestamp(t):
            return [None if v is None else timestamp_text(v, t.unit) for v in arr.cast(pa.int64()).to_pylist()]
        if pa.types.is_time(t):
            raw = arr.cast(pa.int64() if pa.types.is_time64(t) else pa.int32()).to_pylist()
            return [None if v is None else time_text(v, t.unit) for v in raw]
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            return [column_cells(s.values) if s.is_valid else None for s in arr]
        if pa.types.is_map(t):
            out = []
            for s in arr:
                if not s.is_valid:
                    out.append(None)
                    continue
                keys, items = s.values.flatten()
                out.append([list(kv) for kv in zip(column_cells(keys), column_cells(items))])
            return out
        if pa.types.is_struct(t):
            names = [t.field(i).name for i in range(t.num_fields)]
            fields = [column_cells(f) for f in arr.flatten()]
            valid = arr.is_valid().to_pylist()
            return [dict(zip(names, vals)) if ok else None for ok, vals in zip(valid, zip(*fields))] \
                if fields else [{} if ok else None for ok in valid]
    except Exception:
        pass
    return [_one(arr, i) for i in range(len(arr))]


def _one(arr: pa.Array, i: int) -> Any:
    scalar = arr[i]
    try:
        return cell(scalar.as_py())
    except Exception:
        pass
    if not scalar.is_valid:
        return None
    try:
        return str(scalar)
    except Exception:
        return f"<a {arr.type} value that cannot be shown>"
