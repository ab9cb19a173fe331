"""Histories as the read models show them: the stored records of one invocation settled by the one rule
of proto/history.py (once per identity, causal order, adjusted clocks, the dialects' readings), with
times as datetimes for the JSON and pages."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from tasktrail.proto.history import settle

_EPOCH = datetime(1970, 1, 1)


def at(us: int) -> datetime:
    """Naive UTC datetime of `us` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def settled(raw: list[dict]) -> list[dict]:
    """`raw`: the invocation's transition rows (ts in micros, in arrival order). Returns its history,
    oldest first: each row with `timestamp` (the adjusted time, a datetime), `sent_timestamp` (the time the
    record carried) and `clock_adjustment_s` (seconds it was moved forward; None when not moved)."""
    out = settle(raw)
    for r in out:
        r["timestamp"] = at(r["ts"])
        r["sent_timestamp"] = at(r["sent_ts"])
        moved = r["ts"] - r["sent_ts"]
        r["clock_adjustment_s"] = moved / 1e6 if moved else None
    return out


def adjustment(rows: list[dict]) -> Optional[dict]:
    """What the clock adjustment of a history amounts to, for the page: {records, max_s}, or None."""
    moved = [r["clock_adjustment_s"] for r in rows if r.get("clock_adjustment_s")]
    if not moved:
        return None
    return {"records": len(moved), "max_s": max(moved)}
