"""Request parameters, parsed in one place: times (`since`, `until`, the times inside cursors), limits,
cursors, status and id lists, flags and choices. The facade (query/service.py) turns a request's strings
into typed values here; read models receive those values (datetime, int, lists), never request text.
Anything that is not a valid value is a BadRequest naming the parameter, worded once here.

A time is an RFC 3339 / ISO 8601 value (any offset; naive means UTC) or a relative one like `-1h`
(s, m, h, d, w). Whatever it says, the result lies between EARLIEST and LATEST: a time outside is
clamped to the nearer bound, so `since=1000-01-01T00:00:00Z` means "from the start" and a window of
any width never overflows the arithmetic done on it (look-backs, series steps, padding). Text that is
no time at all is a BadRequest (400) naming the parameter. Times go out (`iso`) as RFC 3339 UTC with
microseconds.
"""
from __future__ import annotations

import base64
import json
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Sequence

from tasktrail.proto.status import STATUSES

from .errors import BadRequest

# No stored record is older (ingest refuses times before 2000) or this far ahead; both leave centuries of
# room for arithmetic on a window before Python's datetime (years 1-9999) or DuckDB's TIMESTAMP would overflow.
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(2300, 1, 1)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"-(\d+(?:\.\d*)?|\.\d+)([smhdw])", re.ASCII)
_SLACK = timedelta(days=2)  # more than any UTC offset

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
BAD_CURSOR = "cursor is not one this server issued"
# `level` of a log read: the lowest severity number it keeps (OTLP's severity ranges).
LEVELS = {"TRACE": 1, "DEBUG": 5, "INFO": 9, "WARN": 13, "WARNING": 13, "ERROR": 17, "CRITICAL": 21, "FATAL": 21}


# --- times -----------------------------------------------------------------------------------
def now_utc() -> datetime:
    """The current time as naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def clamp(value: datetime) -> datetime:
    """`value` (naive UTC) moved inside [EARLIEST, LATEST]."""
    return min(max(value, EARLIEST), LATEST)


def parse_time(value: Optional[str], name: str, now: Optional[datetime] = None) -> Optional[datetime]:
    """`value` as a naive UTC datetime inside [EARLIEST, LATEST] (clamped), or None when it is None or "";
    `since=all` is EARLIEST, the same on every endpoint.

    `now` (naive UTC, default the clock) anchors relative times. Raises BadRequest naming `name` when
    `value` is neither an ISO 8601 time nor a relative time like `-1h`."""
    if value is None or value == "":
        return None
    v = str(value).strip()
    if name == "since" and v.lower() == "all":  # every endpoint: no lower bound
        return EARLIEST
    m = _RELATIVE.fullmatch(v)
    if m:
        seconds = float(m.group(1)) * UNITS[m.group(2)]
        base = now or now_utc()
        if not math.isfinite(seconds) or seconds >= (base - EARLIEST).total_seconds():
            return EARLIEST
        return clamp(base - timedelta(seconds=seconds))
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"{name} is not an RFC 3339 time or a relative time like -1h: {value!r}") from None
    naive = dt.replace(tzinfo=None)
    if naive < EARLIEST - _SLACK:  # far outside: clamped before the offset is applied, which could overflow
        return EARLIEST
    if naive > LATEST + _SLACK:
        return LATEST
    offset = dt.utcoffset()
    return clamp(naive - offset if offset else naive)


def cursor_time(value: Any) -> datetime:
    """The time a pagination cursor carries (as this server wrote it), as naive UTC.
    Raises BadRequest when it is not one."""
    if not isinstance(value, str):
        raise BadRequest(BAD_CURSOR)
    try:
        return parse_time(value, "cursor")
    except BadRequest:
        raise BadRequest(BAD_CURSOR) from None


def iso(value: Any) -> Optional[str]:
    """A naive-UTC datetime from DuckDB as RFC 3339 with microseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return str(value)


def window(since: Optional[str], until: Optional[str], now: datetime) -> tuple:
    """(since, until) of a read as datetimes (None where not given); relative times count from `now`."""
    return parse_time(since, "since", now), parse_time(until, "until", now)


def summary_window(since: Optional[str], until: Optional[str], now: datetime, default: timedelta) -> tuple:
    """The window of a summary page: `since` (default the `default` before `until` or now, `all` for no
    bound) and `until`, so its cost follows the window and not the size of the store."""
    if isinstance(since, str) and since.strip().lower() == "all":
        return None, parse_time(until, "until", now)
    hi = parse_time(until, "until", now)
    lo = parse_time(since, "since", now) if since else (hi or now) - default
    if hi is not None and lo > hi:
        raise BadRequest(f"since ({iso(lo)}) is after until ({iso(hi)})")
    return lo, hi


# --- limits, cursors ---------------------------------------------------------------------------
def limit(value: Optional[int], default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if value is None:
        return default
    if value < 1 or value > maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}, got {value}")
    return value


def encode_cursor(values: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def cursor_of(time_or_key: Any, tie: Any) -> str:
    """The cursor after a row whose sort key is `time_or_key` (a datetime is written as the cursor's
    time) and whose tie-breaker is `tie`."""
    key = iso(time_or_key).rstrip("Z") if isinstance(time_or_key, datetime) else time_or_key
    return encode_cursor([key, tie])


def _decode_cursor(cursor: str, n: int = 2) -> list:
    """The `n` values a cursor of this server holds; BadRequest for anything else."""
    try:
        pad = "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if not isinstance(values, list) or len(values) != n:
            raise ValueError
        return values
    except (ValueError, TypeError):
        raise BadRequest(BAD_CURSOR) from None


def cursor_values(cursor: Optional[str], n: int) -> Optional[list]:
    """The `n` values a cursor of this server holds (checked by the caller); None without a cursor."""
    return _decode_cursor(cursor, n) if cursor else None


def page_cursor(cursor: Optional[str], timed: bool) -> Optional[tuple]:
    """(sort key, invocation id) after which a page of invocations goes on: the key is a datetime when
    the sort is by a time (`timed`), else the value as written. None without a cursor."""
    if not cursor:
        return None
    key, inv = _decode_cursor(cursor)
    key = cursor_time(key) if timed else key
    if not isinstance(key, (str, datetime, type(None))) or not isinstance(inv, str):
        raise BadRequest(BAD_CURSOR)
    return key, inv


def log_cursor(cursor: Optional[str]) -> Optional[tuple[datetime, int]]:
    """(time, batch) after which a page of log lines goes on; None without a cursor."""
    if not cursor:
        return None
    ts, batch = _decode_cursor(cursor)
    ts = cursor_time(ts)
    if not isinstance(batch, int) or isinstance(batch, bool) or abs(batch) >= 2**63:
        raise BadRequest(BAD_CURSOR)
    return ts, batch


# --- lists, flags, choices -----------------------------------------------------------------------
def statuses(status: Sequence[str] | None) -> list[str]:
    """Statuses from repeated and comma-separated values, any case; BadRequest for an unknown one."""
    out: list[str] = []
    for s in status or ():
        for part in s.split(","):
            p = part.strip().upper()
            if not p:
                continue
            if p not in STATUSES:
                raise BadRequest(f"unknown status {part!r}; expected one of {', '.join(STATUSES)}")
            out.append(p)
    return out


def id_list(value: str | Sequence[str]) -> list[str]:
    """Ids from a query parameter: repeated, each value is one id as written; a single value is a comma
    list (its whole text is also tried, so one id holding commas is still found)."""
    values = [value] if isinstance(value, str) else [v for v in value if v]
    if len(values) != 1:
        return values
    parts = [i.strip() for i in values[0].split(",") if i.strip()]
    return parts + ([values[0]] if values[0] not in parts else [])


def comma_list(values: Sequence[str] | None, *, strip: bool = True) -> list[str]:
    """The non-blank items of repeated, comma-separated values (stripped unless `strip` is False)."""
    return [v.strip() if strip else v for raw in (values or ()) for v in raw.split(",") if v.strip()]


def flag(name: str, value: Optional[str]) -> Optional[bool]:
    """A true/false parameter; None when not given."""
    if value is None or value == "":
        return None
    v = str(value).strip().lower()
    if v in ("1", "true", "yes"):
        return True
    if v in ("0", "false", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {value!r}")


def choice(name: str, value: Any, allowed: Sequence, shown: Optional[Sequence[str]] = None) -> Any:
    """`value` when it is one of `allowed`; else BadRequest listing `shown` (default: `allowed`)."""
    if value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(str(a) for a in (shown or allowed))}, got {value!r}")
    return value


def choices(name: str, values: Sequence[str] | None, allowed: Sequence[str], default: tuple) -> tuple:
    """Upper-cased comma-separated choices among `allowed`, in `allowed`'s order; `default` when none."""
    wanted = [v.upper() for v in comma_list(values)]
    if not wanted:
        return default
    bad = [v for v in wanted if v not in allowed]
    if bad:
        raise BadRequest(f"{name} must be among {', '.join(a.lower() for a in allowed)}, got {bad[0]!r}")
    return tuple(a for a in allowed if a in wanted)


def level(value: Optional[str]) -> Optional[int]:
    """The severity floor a `level` names (TRACE … FATAL, any case); None when not given."""
    if not value:
        return None
    floor = LEVELS.get(value.upper())
    if floor is None:
        raise BadRequest(f"level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL, got {value!r}")
    return floor


def trace_id(value: str) -> str:
    """A trace id as 32 lower-case hex characters."""
    tid = value.lower()
    if len(tid) != 32 or any(c not in "0123456789abcdef" for c in tid):
        raise BadRequest(f"trace id must be 32 hex characters, got {value!r}")
    return tid
