"""Time parameters of every read (`since`, `until`, and the times inside cursors): parsed in one place.

A time is an RFC 3339 / ISO 8601 value (any offset; naive means UTC) or a relative one like `-1h`
(s, m, h, d, w). Whatever it says, the result lies between EARLIEST and LATEST: a time outside is
clamped to the nearer bound, so `since=1000-01-01T00:00:00Z` means "from the start" and a window of
any width never overflows the arithmetic done on it (look-backs, series steps, padding). Text that is
no time at all is a BadRequest (400) naming the parameter.
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Optional

from .errors import BadRequest

# No stored record is older (ingest refuses times before 2000) or this far ahead; both leave centuries of
# room for arithmetic on a window before Python's datetime (years 1-9999) or DuckDB's TIMESTAMP would overflow.
EARLIEST = datetime(1970, 1, 1)
LATEST = datetime(2300, 1, 1)
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"-(\d+(?:\.\d*)?|\.\d+)([smhdw])", re.ASCII)
_SLACK = timedelta(days=2)  # more than any UTC offset


def now_utc() -> datetime:
    """The current time as naive UTC."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def clamp(value: datetime) -> datetime:
    """`value` (naive UTC) moved inside [EARLIEST, LATEST]."""
    return min(max(value, EARLIEST), LATEST)


def parse_time(value: Optional[str], name: str, now: Optional[datetime] = None) -> Optional[datetime]:
    """`value` as a naive UTC datetime inside [EARLIEST, LATEST] (clamped), or None when it is None or "".

    `now` (naive UTC, default the clock) anchors relative times. Raises BadRequest naming `name` when
    `value` is neither an ISO 8601 time nor a relative time like `-1h`."""
    if value is None or value == "":
        return None
    v = str(value).strip()
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
        raise BadRequest("cursor is not one this server issued")
    try:
        return parse_time(value, "cursor")
    except BadRequest:
        raise BadRequest("cursor is not one this server issued") from None
