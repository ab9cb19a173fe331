"""Anomalies read off the caches: work that is stuck or orphaned, slow beyond its task's own p99, a task
failing far above its baseline, runners and the atomic-service scheduler gone silent. Each says why it
fired and names what it is about (the service adds links).

Liveness, within `runner_dead_after_s`: a context that sends heartbeats (pynenc's workers, whose parent
reports only its OS-alive children) is judged by its own heartbeats; one that never does (threads,
rustvello workers) is alive while it, its parent runner or anything else from its process (same app,
host and pid: a periodic metric export, a log line, a span) sent a record. rustvello 0.9 sends nothing
while a worker runs a task, so its process's own OTel metric reader (or
`tasktrail.proto.emitter.ProcessPulse`) is what tells a long task from a dead worker. ExternalRunner
contexts are submitting clients, never flagged silent.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tasktrail.proto import names as n

KINDS = ("orphaned", "pending_too_long", "slow", "failure_spike", "runner_silent", "scheduler_silent")


@dataclass(frozen=True)
class AnomalySettings:
    runner_dead_after_s: float = 600.0     # a runner silent this long is gone (pynenc's default)
    max_pending_s: float = 300.0           # PENDING longer than this is stuck
    slow_factor: float = 3.0               # RUNNING longer than this × its task's p99 is slow
    min_samples: int = 20                  # finished invocations a task needs before its p99 counts
    slow_baseline_s: float = 7 * 86_400    # ... among those that finished this recently
    spike_window_s: float = 900.0          # failure rate over this window ...
    spike_baseline_s: float = 86_400.0     # ... against this one before it
    spike_factor: float = 3.0
    spike_min_failures: int = 5
    scheduler_factor: float = 3.0          # the scheduler is silent past this many of its usual intervals
    scheduler_min_silence_s: float = 10.0


def _host(col: str) -> str:
    return f"""coalesce({col}->>'$."{n.TT_RUNNER_HOSTNAME}"', {col}->>'$."{n.HOST_NAME}"')"""


def _pid(col: str) -> str:
    return (f"""TRY_CAST(coalesce({col}->>'$."{n.TT_RUNNER_PID}"', {col}->>'$."{n.PROCESS_PID}"') """
            "AS BIGINT)")


def process_last_seen(q, since: datetime) -> dict:
    """{(app_id, hostname, pid): last record time} of every process heard from since `since`, from any
    record its resource names (bounded to the recent past, so zone maps skip the rest of the log)."""
    seen: dict = {}
    rows = q(f"""
        WITH recent AS (
            SELECT resource_id, max(ts) AS last FROM metric_points WHERE ts >= $s GROUP BY 1
            UNION ALL SELECT resource_id, max(ts) FROM log_records WHERE ts >= $s GROUP BY 1
            UNION ALL SELECT resource_id, max(coalesce(end_ts, start_ts)) FROM spans WHERE start_ts >= $s GROUP BY 1)
        SELECT r.app_id, {_host('r.attributes')} AS host, {_pid('r.attributes')} AS pid, max(recent.last) AS last
        FROM recent JOIN resources r USING (resource_id) GROUP BY ALL
        UNION ALL
        SELECT app_id, hostname, pid, max(greatest(last_event, last_transition)) FROM runner_state
        WHERE pid IS NOT NULL AND greatest(last_event, last_transition) >= $s GROUP BY ALL""", {"s": since}).rows
    for app, host, pid, last in rows:
        if host is None or pid is None or last is None:
            continue
        key = (app, host, int(pid))
        if key not in seen or last > seen[key]:
            seen[key] = last
    return seen


def find(q, s: AnomalySettings, now: datetime) -> list[dict]:
    """`q(sql, params)` runs a read and returns a Result. Returns anomalies, most recent first."""
    out: list[dict] = []
    dead = now - timedelta(seconds=s.runner_dead_after_s)
    procs = process_last_seen(q, dead)

    def alive_by_process(app, host, pid) -> bool:
        return host is not None and pid is not None and (app, host, int(pid)) in procs

    # RUNNING on a runner context that stopped after it started, or went silent. A context that sends
    # heartbeats (pynenc's workers: the parent reports its OS-alive children every loop) is judged by its
    # own; one that never does (threads, rustvello workers) by itself, its parent and its process.
    for d in q("""
        SELECT i.app_id, i.invocation_id, i.task_id, i.updated_at, coalesce(i.worker_id, i.runner_id) AS ctx,
               coalesce(r.stopped_at, p.stopped_at) AS stopped_at, coalesce(r.hostname, p.hostname) AS host,
               coalesce(r.pid, p.pid) AS pid, coalesce(r.heartbeats, 0) AS heartbeats,
               greatest(r.last_event, r.last_transition) AS own_last,
               greatest(r.last_event, r.last_transition, p.last_event, p.last_transition) AS last_seen
        FROM invocation_state i
        JOIN runner_state r ON r.app_id = i.app_id AND r.runner_id = coalesce(i.worker_id, i.runner_id)
        LEFT JOIN runner_state p ON p.app_id = r.app_id AND p.runner_id = r.parent_runner_id
        WHERE i.status = 'RUNNING'
          AND (coalesce(r.stopped_at, p.stopped_at) >= i.updated_at OR greatest(r.last_event, r.last_transition) < ?)""",
                 [dead]).dicts():
        stopped = d["stopped_at"] is not None and d["stopped_at"] >= d["updated_at"]
        if not stopped:
            if d["heartbeats"] and d["own_last"] >= dead:
                continue
            if not d["heartbeats"] and (d["last_seen"] >= dead or alive_by_process(d["app_id"], d["host"], d["pid"])):
                continue  # quiet, but its parent or its process still sends: a long task, not a dead worker
        last = d["own_last"] if d["heartbeats"] else d["last_seen"]
        why = (f"RUNNING since {d['updated_at']:%Y-%m-%d %H:%M:%S} on {d['ctx']}, which stopped at "
               f"{d['stopped_at']:%H:%M:%S}" if stopped
               else f"RUNNING since {d['updated_at']:%Y-%m-%d %H:%M:%S} on {d['ctx']}, "
                    + (f"whose heartbeats stopped at {last:%H:%M:%S}" if d["heartbeats"]
                       else f"silent since {last:%H:%M:%S} with nothing from its process")
                    + f" (dead after {s.runner_dead_after_s:g} s)")
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
    running = q("""SELECT app_id, invocation_id, task_id, started_at FROM invocation_state
                   WHERE status = 'RUNNING' AND started_at IS NOT NULL""").dicts()
    tasks = sorted({r["task_id"] for r in running if r["task_id"] is not None})
    p99: dict = {}
    if tasks:  # each task's p99 over its finished runs of the baseline window (the cost follows that window)
        for app, task, value, count in q("""
            SELECT app_id, task_id,
                   quantile_cont(epoch(updated_at) - epoch(coalesce(started_at, created_at)), 0.99), count(*)
            FROM invocation_state
            WHERE updated_at >= $b AND status IN ('SUCCESS', 'FAILED') AND task_id IN (SELECT unnest($t::VARCHAR[]))
            GROUP BY ALL HAVING count(*) >= $n""",
                                     {"b": now - timedelta(seconds=s.slow_baseline_s), "t": tasks,
                                      "n": s.min_samples}).rows:
            p99[(app, task)] = (value, count)
    for d in running:
        if (d["app_id"], d["task_id"]) not in p99:
            continue
        d["p99"], d["n"] = p99[(d["app_id"], d["task_id"])]
        if (now - d["started_at"]).total_seconds() <= s.slow_factor * max(d["p99"], 0.001):
            continue
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
               count(*) FILTER (WHERE updated_at < $w) AS nb,
               min(updated_at) FILTER (WHERE updated_at >= $w AND status = 'FAILED') AS first_failed,
               (list(invocation_id ORDER BY updated_at DESC) FILTER (WHERE updated_at >= $w AND status = 'FAILED'))[1:20]
                   AS failed_ids
        FROM invocation_state WHERE updated_at >= $b AND status IN ('SUCCESS', 'FAILED') GROUP BY ALL""",
               {"w": now - timedelta(seconds=s.spike_window_s),
                "b": now - timedelta(seconds=s.spike_window_s + s.spike_baseline_s)}).dicts():
        rate = d["fw"] / d["nw"] if d["nw"] else 0.0
        base = max(d["fb"] / d["nb"] if d["nb"] else 0.0, 0.01)
        if d["fw"] >= s.spike_min_failures and rate >= s.spike_factor * base:
            out.append({"kind": "failure_spike", "app_id": d["app_id"], "task_id": d["task_id"],
                        "since": d["first_failed"], "invocation_ids": list(d["failed_ids"] or []),
                        "why": f"{d['fw']} of {d['nw']} failed in the last {s.spike_window_s / 60:g} min "
                               f"({rate:.0%}), against {base:.0%} before"})
    alive_apps = set()
    for d in q("""SELECT app_id, runner_id, runner_class, hostname, pid, stopped_at,
                         greatest(last_event, last_transition) AS last_seen
                  FROM runner_state WHERE first_seen IS NOT NULL""").dicts():
        if d["stopped_at"] is not None or d["runner_class"] == "ExternalRunner":
            continue  # stopped, or a submitting client (pynenc's and rustvello's ExternalRunner), not a runner
        if d["last_seen"] is not None and d["last_seen"] >= dead:
            alive_apps.add(d["app_id"])
            continue
        if alive_by_process(d["app_id"], d["hostname"], d["pid"]):
            alive_apps.add(d["app_id"])
            continue
        out.append({"kind": "runner_silent", "app_id": d["app_id"], "runner_id": d["runner_id"],
                    "since": d["last_seen"],
                    "why": f"no record from it or its process since {d['last_seen']:%Y-%m-%d %H:%M:%S} "
                           f"and no stop (dead after {s.runner_dead_after_s:g} s)"})
    for d in q("""
        SELECT app_id, max(ts) AS last, count(*) AS n,
               (epoch(max(ts)) - epoch(min(ts))) / nullif(count(*) - 1, 0) AS every_s
        FROM (SELECT app_id, ts FROM atomic_decisions WHERE ts >= $b
              UNION ALL SELECT app_id, ts FROM atomic_executions WHERE ts >= $b) GROUP BY app_id""",
               {"b": now - timedelta(seconds=s.spike_baseline_s)}).dicts():
        if d["n"] < 3 or not d["every_s"] or d["app_id"] not in alive_apps:
            continue  # too few fires to know its rhythm, or no runner alive to run it (runner_silent says so)
        limit = max(s.scheduler_factor * d["every_s"], s.scheduler_min_silence_s)
        if (now - d["last"]).total_seconds() > limit:
            out.append({"kind": "scheduler_silent", "app_id": d["app_id"], "since": d["last"],
                        "why": f"the atomic-service scheduler last fired at {d['last']:%Y-%m-%d %H:%M:%S}; it "
                               f"fires every {d['every_s']:.1f} s and runners are alive"})
    out.sort(key=lambda a: a["since"] or now, reverse=True)
    return out
