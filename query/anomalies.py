"""Anomalies read off the caches: work that is stuck or orphaned, slow beyond its task's own p99, a task
failing far above its baseline, runners gone silent. Each says why it fired and links what it is about.

A first cut for issue 9 (the tasks and workflows pages, charts and the live-runner tests are not built).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class AnomalySettings:
    runner_dead_after_s: float = 600.0     # a runner silent this long is gone (pynenc's default)
    max_pending_s: float = 300.0           # PENDING longer than this is stuck
    slow_factor: float = 3.0               # RUNNING longer than this × its task's p99 is slow
    min_samples: int = 20                  # finished invocations a task needs before its p99 counts
    spike_window_s: float = 900.0          # failure rate over this window ...
    spike_baseline_s: float = 86_400.0     # ... against this one before it
    spike_factor: float = 3.0
    spike_min_failures: int = 5


def find(q, s: AnomalySettings, now: datetime) -> list[dict]:
    """`q(sql, params)` runs a read and returns a Result. Returns anomalies, most recent first."""
    out: list[dict] = []
    dead = now - timedelta(seconds=s.runner_dead_after_s)
    # RUNNING on a runner context (or its parent process) that stopped after it started, or went silent.
    for d in q("""
        SELECT i.app_id, i.invocation_id, i.task_id, i.updated_at, coalesce(i.worker_id, i.runner_id) AS ctx,
               r.parent_runner_id AS parent, coalesce(r.stopped_at, p.stopped_at) AS stopped_at,
               greatest(r.last_event, r.last_transition, p.last_event, p.last_transition) AS last_seen
        FROM invocation_state i
        JOIN runner_state r ON r.app_id = i.app_id AND r.runner_id = coalesce(i.worker_id, i.runner_id)
        LEFT JOIN runner_state p ON p.app_id = r.app_id AND p.runner_id = r.parent_runner_id
        WHERE i.status = 'RUNNING'
          AND (coalesce(r.stopped_at, p.stopped_at) >= i.updated_at
               OR greatest(r.last_event, r.last_transition, p.last_event, p.last_transition) < ?)""",
                 [dead]).dicts():
        why = (f"RUNNING since {d['updated_at']:%Y-%m-%d %H:%M:%S} on {d['ctx']}, which stopped at "
               f"{d['stopped_at']:%H:%M:%S}" if d["stopped_at"] is not None and d["stopped_at"] >= d["updated_at"]
               else f"RUNNING since {d['updated_at']:%Y-%m-%d %H:%M:%S} on {d['ctx']}, silent since "
                    f"{d['last_seen']:%H:%M:%S} (dead after {s.runner_dead_after_s:g} s)")
        out.append({"kind": "orphaned", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                    "task_id": d["task_id"], "runner_id": d["ctx"], "since": d["updated_at"], "why": why})
    for d in q("""SELECT app_id, invocation_id, task_id, updated_at FROM invocation_state
                  WHERE status = 'PENDING' AND updated_at < ?""",
               [now - timedelta(seconds=s.max_pending_s)]).dicts():
        out.append({"kind": "pending_too_long", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                    "task_id": d["task_id"], "since": d["updated_at"],
                    "why": f"PENDING since {d['updated_at']:%Y-%m-%d %H:%M:%S}, longer than the "
                           f"{s.max_pending_s:g} s limit"})
    orphaned = {a["invocation_id"] for a in out if a["kind"] == "orphaned"}
    for d in q("""
        WITH p AS (
            SELECT app_id, task_id, quantile_cont(epoch(updated_at) - epoch(coalesce(started_at, created_at)), 0.99)
                     AS p99, count(*) AS n
            FROM invocation_state WHERE status IN ('SUCCESS', 'FAILED') GROUP BY ALL HAVING count(*) >= ?)
        SELECT i.app_id, i.invocation_id, i.task_id, i.started_at, p.p99, p.n
        FROM invocation_state i JOIN p USING (app_id, task_id)
        WHERE i.status = 'RUNNING' AND i.started_at IS NOT NULL
          AND epoch(?::TIMESTAMP) - epoch(i.started_at) > ? * greatest(p.p99, 0.001)""",
               [s.min_samples, now, s.slow_factor]).dicts():
        if d["invocation_id"] in orphaned:
            continue  # its runner is gone: that is the news, not its duration
        ran = (now - d["started_at"]).total_seconds()
        out.append({"kind": "slow", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                    "task_id": d["task_id"], "since": d["started_at"],
                    "why": f"RUNNING for {ran:.0f} s, over {s.slow_factor:g} × its task's p99 of {d['p99']:.2f} s "
                           f"({d['n']} finished)"})
    for d in q("""
        SELECT app_id, task_id,
               count(*) FILTER (WHERE updated_at >= $w AND status = 'FAILED') AS fw,
               count(*) FILTER (WHERE updated_at >= $w) AS nw,
               count(*) FILTER (WHERE updated_at < $w AND status = 'FAILED') AS fb,
               count(*) FILTER (WHERE updated_at < $w) AS nb
        FROM invocation_state WHERE updated_at >= $b AND status IN ('SUCCESS', 'FAILED') GROUP BY ALL""",
               {"w": now - timedelta(seconds=s.spike_window_s),
                "b": now - timedelta(seconds=s.spike_window_s + s.spike_baseline_s)}).dicts():
        rate = d["fw"] / d["nw"] if d["nw"] else 0.0
        base = max(d["fb"] / d["nb"] if d["nb"] else 0.0, 0.01)
        if d["fw"] >= s.spike_min_failures and rate >= s.spike_factor * base:
            out.append({"kind": "failure_spike", "app_id": d["app_id"], "task_id": d["task_id"], "since": None,
                        "why": f"{d['fw']} of {d['nw']} failed in the last {s.spike_window_s / 60:g} min "
                               f"({rate:.0%}), against {base:.0%} before"})
    for d in q("""SELECT app_id, runner_id, greatest(last_event, last_transition) AS last_seen FROM runner_state
                  WHERE first_seen IS NOT NULL AND stopped_at IS NULL AND greatest(last_event, last_transition) < ?""",
               [dead]).dicts():
        out.append({"kind": "runner_silent", "app_id": d["app_id"], "runner_id": d["runner_id"],
                    "since": d["last_seen"],
                    "why": f"no record since {d['last_seen']:%Y-%m-%d %H:%M:%S} and no stop "
                           f"(dead after {s.runner_dead_after_s:g} s)"})
    out.sort(key=lambda a: a["since"] or now, reverse=True)
    return out
