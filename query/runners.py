"""Runners: every runner context with its liveness and role (the one rule, query/anomalies.Liveness) and
the invocations running on it; one runner's workers, recent activity and heartbeats. Read from the
runner_state cache (one row per context, folded by the writer) through the `runners` view.
"""
from __future__ import annotations

from datetime import datetime
from typing import Optional

from tasktrail.store import api

from .anomalies import Liveness
from .errors import NotFound
from .params import iso
from .reader import where

# A runner's most specific kept field over runner_state rows, as the writer's fold orders them: the store's
# contract spells it (store/api.py best_of).
best_of = api.best_of


def listing(q, live: Liveness, app: Optional[str] = None, runner_id: Optional[str] = None) -> list[dict]:
    """Runner contexts in order of first sight, judged by `live`."""
    clauses, params = [], []
    if app:
        clauses.append("r.app_id = ?")
        params.append(app)
    if runner_id:
        clauses.append("r.runner_id = ?")
        params.append(runner_id)
    r = q(f"""
        WITH running AS (
          SELECT coalesce(worker_id, runner_id) AS rid, runner_id AS top, list(invocation_id) AS ids
          FROM invocation_state WHERE status = 'RUNNING' GROUP BY ALL)
        SELECT r.*, (SELECT flatten(list(ids)) FROM running WHERE running.rid = r.runner_id
                                                           OR running.top = r.runner_id) AS running_ids
        FROM runners r {where(clauses)}
        ORDER BY r.first_seen, r.runner_id""", params)
    return [{"runner_id": d["runner_id"], "app_id": d["app_id"], "runner_class": d["runner_class"],
             "parent_runner_id": d["parent_runner_id"], "hostname": d["hostname"], "pid": d["pid"],
             "first_seen": iso(d["first_seen"]), "last_heartbeat": iso(d["last_heartbeat"]),
             "last_activity": iso(d["last_activity"]), "stopped_at": iso(d["stopped_at"]),
             "alive": live.alive(d), "role": live.role(d),
             "running_invocations": sorted(set(d["running_ids"] or []))}
            for d in r.dicts()]


def detail(q, runner_id: str, app: Optional[str], dead: datetime) -> dict:
    """One runner (alive when heard from since `dead`), its workers, recent transitions and heartbeats."""
    live = Liveness(q, dead)
    found = listing(q, live, app, runner_id)
    if not found:
        raise NotFound(f"runner {runner_id} is not in the log")
    runner = found[0]
    runner["workers"] = [w for w in listing(q, live, app) if w["parent_runner_id"] == runner_id]
    recent = q("""SELECT ts, invocation_id, task_id, status FROM transitions
                  WHERE runner_id = ? OR worker_id = ? ORDER BY ts DESC LIMIT 50""", [runner_id, runner_id]).rows
    runner["recent_activity"] = [{"timestamp": iso(t), "invocation_id": i, "task_id": k, "status": s}
                                 for t, i, k, s in recent]
    hb = q("""SELECT ts, atomic_eligible, consumed_queues FROM runner_events
              WHERE runner_id = ? AND kind = 'heartbeat' ORDER BY ts DESC LIMIT 20""", [runner_id]).rows
    runner["heartbeats"] = [{"timestamp": iso(t), "atomic_eligible": e, "consumed_queues": c} for t, e, c in hb]
    return runner
