"""History adjusters: read-time corrections, applied in a declared order (never written back).

ORDER MATTERS: `collapse_retried_failures` needs the history sorted, and
`fill_previous_status` must run last so it sees the adjusted sequence.
"""
from __future__ import annotations

_RANK = {"REGISTERED": 0, "PENDING": 1, "RUNNING": 2}


def sort_by_time(rows: list[dict]) -> list[dict]:
    """Oldest first; equal timestamps keep the lifecycle order."""
    return sorted(rows, key=lambda r: (r["timestamp"], _RANK.get(r["status"], 3)))


def collapse_retried_failures(rows: list[dict]) -> list[dict]:
    """rustvello sends task.failed then task.retry_scheduled for an attempt that will be
    retried: that FAILED is not final, so it reads as the RETRY that follows it (the
    error of the attempt moves onto the RETRY row)."""
    out: list[dict] = []
    for i, r in enumerate(rows):
        nxt = rows[i + 1] if i + 1 < len(rows) else None
        if (r["status"] == "FAILED" and nxt is not None and nxt["status"] == "RETRY"
                and (r.get("attempt") is None or nxt.get("attempt") in (None, r.get("attempt")))):
            for k in ("error_type", "error_message"):
                if not nxt.get(k) and r.get(k):
                    nxt[k] = r[k]
            continue
        out.append(r)
    return out


def fill_previous_status(rows: list[dict]) -> list[dict]:
    prev = None
    for r in rows:
        if not r.get("previous_status"):
            r["previous_status"] = prev
        prev = r["status"]
    return rows


STANDARD_ADJUSTERS = (sort_by_time, collapse_retried_failures, fill_previous_status)


def adjust(rows: list[dict]) -> list[dict]:
    for step in STANDARD_ADJUSTERS:
        rows = step(rows)
    return rows
