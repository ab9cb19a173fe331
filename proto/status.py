"""The canonical status model: pynenc's 13 invocation statuses and their palette.

Names are upper case on every surface of tasktrail; runners may send pynenc's
lower-case values, which `normalize` maps.
"""
from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    REGISTERED = "REGISTERED"
    CONCURRENCY_CONTROLLED = "CONCURRENCY_CONTROLLED"
    CONCURRENCY_CONTROLLED_FINAL = "CONCURRENCY_CONTROLLED_FINAL"
    REROUTED = "REROUTED"
    PENDING = "PENDING"
    PENDING_RECOVERY = "PENDING_RECOVERY"
    RUNNING = "RUNNING"
    RUNNING_RECOVERY = "RUNNING_RECOVERY"
    PAUSED = "PAUSED"
    KILLED = "KILLED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"


STATUSES: tuple[str, ...] = tuple(s.value for s in Status)
FINAL_STATUSES = frozenset({"SUCCESS", "FAILED", "CONCURRENCY_CONTROLLED_FINAL"})
# The same as an SQL list for `status IN (...)` (the query modules share it).
FINAL_SQL = ", ".join(f"'{s}'" for s in sorted(FINAL_STATUSES))
# Stage inside one attempt: registration, waiting, running, outcome (RETRY after FAILED: rustvello sends
# both for a retried attempt, in that order). The one order of records with equal times, everywhere: the
# history rule (proto/history.py, proto/history_batch.py), the writer's status_key (store/state.py) and
# the SQL macro status_order (store/sql/views.sql is rendered from it).
STATUS_RANK: dict[str, int] = {
    "REGISTERED": 0,
    "CONCURRENCY_CONTROLLED": 1, "REROUTED": 1, "PENDING": 1, "PENDING_RECOVERY": 1,
    "RUNNING": 2, "PAUSED": 2, "RUNNING_RECOVERY": 2,
    "FAILED": 3, "KILLED": 3,
    "RETRY": 4, "SUCCESS": 4, "CONCURRENCY_CONTROLLED_FINAL": 4,
}
UNKNOWN_RANK = 3      # a status not in STATUS_RANK (an atomic-service one: COMPLETED, ...) ranks with FAILED
# A record's order as one integer: its time (micros) × RANK_SCALE + its rank (every rank is below the scale).
RANK_SCALE = 8
# Statuses drawn as bars on a timeline (pynmon's segment statuses).
SEGMENT_STATUSES = frozenset({"PENDING", "RUNNING", "PAUSED"})
# In flight: work that is owned by a runner or waiting for one.
ACTIVE_STATUSES = frozenset({"PENDING", "RUNNING", "PAUSED", "PENDING_RECOVERY", "RUNNING_RECOVERY"})

# pynmon's palette (pynmon/util/status_colors.py), shared by badges, timeline and history.
STATUS_COLORS: dict[str, str] = {
    "REGISTERED": "#95a5a6",
    "CONCURRENCY_CONTROLLED": "#e67e22",
    "CONCURRENCY_CONTROLLED_FINAL": "#d35400",
    "REROUTED": "#16a085",
    "PENDING": "#f39c12",
    "PENDING_RECOVERY": "#e67e22",
    "RUNNING": "#3498db",
    "RUNNING_RECOVERY": "#e67e22",
    "PAUSED": "#1abc9c",
    "KILLED": "#c0392b",
    "SUCCESS": "#27ae60",
    "FAILED": "#e74c3c",
    "RETRY": "#9b59b6",
}
UNKNOWN_COLOR = "#7f8c8d"

_BY_NAME = {s: s for s in STATUSES} | {s.lower(): s for s in STATUSES}


def normalize(value: str | None) -> str | None:
    """Return the canonical upper-case name for `value`, or None if it is not a status."""
    if not value:
        return None
    return _BY_NAME.get(value) or _BY_NAME.get(value.strip().upper())


def is_final(status: str | None) -> bool:
    return status in FINAL_STATUSES


# A runner is alive while it was heard from within this many seconds (pynenc's default, 10 min); the
# --runner-dead-after setting.
RUNNER_DEAD_AFTER_S = 600.0

# Atomic-service vocabulary (pynenc/orchestrator/atomic_service.py).
ATOMIC_DECISION_REASONS = (
    "ASSIGNED",
    "NOT_ASSIGNED_SLOT",
    "NO_STABLE_RUNNERS",
    "SCHEDULED_RUNNER_IN_GRACE",
    "SLOT_WINDOW_INVALID",
    "LATE_START",
)
ATOMIC_EXECUTION_STATUSES = ("RUNNING", "COMPLETED", "ABANDONED", "BLOCKED")
