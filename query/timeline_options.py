"""The timeline's options (issue 18), Pynmon's `/invocations/timeline` ones (reference §6.2) under the same
names: `resolution`, `show_system`, `show_atomic_service`, `histogram_status`; and `fit` (the range the
occupancy is bucketed over: the data's span, as the page draws it, or the whole window).

- `resolution` (auto, 100ms … 1h, pynmon/util/time_ranges.py's list): the time grid. Pynmon uses it as the
  axis's tick interval (never finer than the labels can be told apart, millisecond labels under 1 s);
  tasktrail also buckets the occupancy histogram by it (widened to at most 240 buckets). `auto`: pynmon's
  tick and bucket rules for the length shown.
- `show_system=0` hides system tasks (proto/system_tasks.py: pynenc's `pynenc.core_tasks.*` and the
  same rule for rustvello, Celery and tasktrail.v1 runners): whole invocations, before the limit counts.
- `show_atomic_service=0` leaves out the atomic-service lane (its execution windows).
- `histogram_status`: comma list of registered, pending, running (default pending + running, pynmon's);
  given but empty, none.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Optional

from tasktrail.proto.system_tasks import SQL_PATTERN

from . import params
from .workflows import CATEGORIES, DEFAULT_CATEGORIES

RESOLUTIONS = {"auto": None, "100ms": 0.1, "250ms": 0.25, "500ms": 0.5, "1s": 1, "5s": 5, "10s": 10, "30s": 30,
               "1m": 60, "5m": 300, "15m": 900, "30m": 1800, "1h": 3600}
MARGIN = 0.04                           # of the data's span, each side (as web/static/timeline.js fits)
MIN_MARGIN = timedelta(milliseconds=20)
POINT_MARGIN = timedelta(milliseconds=100)


def options(*, resolution: Optional[str] = None, show_system: Optional[str] = None,
            show_atomic_service: Optional[str] = None, histogram_status: Any = None,
            fit: Optional[str] = None) -> dict:
    """The request's option strings as values: {resolution, resolution_s, show_system, show_atomic_service,
    histogram_status (upper-case categories, in REGISTERED, PENDING, RUNNING order), fit}. Raises
    BadRequest naming the parameter for an unknown resolution, category or flag."""
    res = (resolution or "auto").strip().lower()
    params.choice("resolution", res, list(RESOLUTIONS))
    if histogram_status is None:
        cats = DEFAULT_CATEGORIES
    else:
        given = [histogram_status] if isinstance(histogram_status, str) else list(histogram_status)
        cats = params.choices("histogram_status", given, tuple(CATEGORIES), ()) if any(
            v.strip() for v in given) else ()
    flags = {k: params.flag(k, v) for k, v in (("show_system", show_system),
                                               ("show_atomic_service", show_atomic_service), ("fit", fit))}
    return {"resolution": res, "resolution_s": RESOLUTIONS[res],
            "show_system": flags["show_system"] is not False,
            "show_atomic_service": flags["show_atomic_service"] is not False,
            "histogram_status": tuple(cats), "fit": flags["fit"] is not False}


def system_filter(since: datetime, until: datetime) -> tuple[str, list]:
    """(clause, params) keeping only invocations with no record of a system task (proto/system_tasks.py) in
    [since, until) (the timeline's look-back and window: the records it reads, whose task ids it shows).
    Bounded by time, the regex runs on the window's rows only (zone maps skip the rest of the store)."""
    return ("invocation_id NOT IN (SELECT invocation_id FROM transitions WHERE ts >= ? AND ts < ?"
            " AND task_id IS NOT NULL AND regexp_full_match(task_id, ?))", [since, until, SQL_PATTERN])


def hidden_system(q, since: datetime, until: datetime, app: Optional[str]) -> int:
    """How many invocations of system tasks have a transition in [since, until) (what show_system=0 hid)."""
    sql = ("SELECT count(DISTINCT invocation_id) FROM transitions WHERE ts >= ? AND ts < ?"
           " AND task_id IS NOT NULL AND regexp_full_match(task_id, ?)")
    args: list = [since, until, SQL_PATTERN]
    if app:
        sql += " AND app_id = ?"
        args.append(app)
    return int(q(sql, args).rows[0][0])


def _parse(ts: str) -> datetime:
    return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")


def view(lo: Optional[str], hi: Optional[str], out: dict, window: tuple[datetime, datetime], fit: bool) -> tuple:
    """The range drawn, as the page draws it: the window, or with `fit` the span of everything drawn inside
    it (`lo`/`hi`: the lanes' first and last times, RFC 3339; plus `out`'s markers and atomic windows) with
    4 % of it (at least 20 ms; 100 ms round a single instant) each side, never outside the window."""
    w0, w1 = window
    if not fit:
        return w0, w1
    times = [t for t in (lo, hi) if t]
    times += [m["timestamp"] for m in out["markers"]["markers"]]
    for w in out["atomic_windows"]:
        times += [w["start"], w["end"] or out["until"]]
    if not times:
        return w0, w1
    a, b = max(_parse(min(times)), w0), min(_parse(max(times)), w1)
    m = max((b - a) * MARGIN, MIN_MARGIN) if b > a else POINT_MARGIN
    v0, v1 = max(w0, a - m), min(w1, b + m)
    return (v0, v1) if v1 > v0 else (w0, w1)
