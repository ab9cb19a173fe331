"""History adjusters: read-time corrections, applied in a declared order (never written back).

ORDER MATTERS: `collapse_retried_failures` and `requeued_registration` need the history sorted,
and `fill_previous_status` must run last so it sees the adjusted sequence.
"""
from __future__ import annotations

# Lifecycle order for equal timestamps; query/timeline.py orders by the same rank in SQL.
_RANK = {"REGISTERED": 0, "PENDING": 1, "RUNNING": 2}


def sort_by_time(rows: list[dict]) -> list[dict]:
    """Oldest first; equal timestamps keep the lifecycle order."""
    return sorted(rows, key=lambda r: (r["timestamp"], _RANK.get(r["status"], 3)))


def sequential_attempts(rows: list[dict]) -> list[dict]:
    """Attempts are sequential: an attempt's outcome goes before any row of a later attempt.

    Celery re-sends a retried task from inside the running attempt and ends that attempt's span
    only afterwards, so the next attempt can start (on another worker process) before the
    outcome of the previous one is stamped."""
    out: list[dict] = []
    for r in rows:
        a = r.get("attempt")
        if a is not None and r["status"] != "RUNNING":
            k = next((i for i, o in enumerate(out) if o.get("attempt") is not None and o["attempt"] > a), None)
            if k is not None:
                out.insert(k, r)
                continue
        out.append(r)
    return out


def retried_failures(statuses: list, attempts: list) -> set[int]:
    """Indexes of FAILED entries that a RETRY of the same attempt follows.

    rustvello sends task.failed then task.retry_scheduled for an attempt that will be
    retried: that FAILED is not final, so it reads as the RETRY that follows it."""
    drop = set()
    for i in range(len(statuses) - 1):
        if (statuses[i] == "FAILED" and statuses[i + 1] == "RETRY"
                and (attempts[i] is None or attempts[i + 1] in (None, attempts[i]))):
            drop.add(i)
    return drop


def collapse_retried_failures(rows: list[dict]) -> list[dict]:
    """Drop the retried FAILEDs (see `retried_failures`); their error moves onto the RETRY row."""
    drop = retried_failures([r["status"] for r in rows], [r.get("attempt") for r in rows])
    for i in drop:
        for k in ("error_type", "error_message"):
            if not rows[i + 1].get(k) and rows[i].get(k):
                rows[i + 1][k] = rows[i][k]
    return [r for i, r in enumerate(rows) if i not in drop]


_OUTCOMES = frozenset({"RETRY", "SUCCESS", "FAILED", "KILLED"})


def requeued_registration(rows: list[dict]) -> list[dict]:
    """A task sent again under the same id (Celery re-sends a task it retries) is not a new
    registration: every REGISTERED after the first reads as PENDING, pynenc's RETRY → PENDING.
    Celery sends it from inside the running attempt, before that attempt's RETRY: such a re-send is
    placed right after the outcome, at the outcome's time."""
    out: list[dict] = []
    registered = False
    held = None
    for r in rows:
        if r["status"] == "REGISTERED":
            if registered:
                r["status"] = "PENDING"
                if out and out[-1]["status"] == "RUNNING":
                    held = r
                    continue
            registered = True
        out.append(r)
        if held is not None and r["status"] in _OUTCOMES:
            held["timestamp"] = max(held["timestamp"], r["timestamp"])
            out.append(held)
            held = None
    if held is not None:
        out.append(held)
    return out


def fill_previous_status(rows: list[dict]) -> list[dict]:
    prev = None
    for r in rows:
        if not r.get("previous_status"):
            r["previous_status"] = prev
        prev = r["status"]
    return rows


STANDARD_ADJUSTERS = (sort_by_time, sequential_attempts, collapse_retried_failures, requeued_registration, fill_previous_status)


def adjust(rows: list[dict]) -> list[dict]:
    for step in STANDARD_ADJUSTERS:
        rows = step(rows)
    return rows
