"""Anomalies read off the caches: work that is stuck or orphaned, slow beyond its task's own p99, a task
failing far above its baseline, runners and the atomic-service scheduler gone silent. Each says why it
fired and names what it is about (the service adds links).

Liveness, within `runner_dead_after_s`: a context that sends heartbeats (pynenc's workers, whose parent
reports only its OS-alive children) is judged by its own heartbeats; one that never does (threads,
rustvello workers) is alive while it, its parent runner or anything else from its process (same app,
host and pid: a periodic metric export, a log line, a span) sent a record. rustvello 0.9 sends nothing
while a worker runs a task, so its process's own OTel metric reader (or
`tasktrail.proto.emitter.ProcessPulse`) is what tells a long task from a dead worker.

Roles: a context that only submits work is a client, never flagged silent (its process may well be gone:
a script, a web request). It is one whose class says so (pynenc's and rustvello's `ExternalRunner`,
Celery's publishing `CeleryClient`, tasktrail's `TasktrailCeleryControl`), or one that never did work
(no PENDING, RUNNING or outcome it stamped: runner_state.last_work), sends no heartbeats, never said it
started, and has no worker that did.

Work waiting to start (`pending_too_long`): PENDING past `max_pending_s` as before, and REGISTERED past it
with no RUNNING ever: Celery and rustvello have no PENDING stage (a task nobody consumes stays REGISTERED),
and a pynenc invocation REGISTERED that long was not picked up either. The `why` names the queue when a
transition said it (Celery's routing key, rustvello's queue) and whether any runner took work from that
queue since (a RUNNING transition of the queue, or a heartbeat listing it in its consumed queues).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional
from urllib.parse import urlencode

from tasktrail.proto import names as n
from tasktrail.proto.status import RUNNER_DEAD_AFTER_S
from tasktrail.proto.urlpath import segment

from .liveness import CLIENT_CLASSES, STATES, Liveness, process_last_seen, stopped  # noqa: F401 (re-exported)
from .params import iso

KINDS = ("orphaned", "pending_too_long", "slow", "failure_spike", "runner_silent", "scheduler_silent")


@dataclass(frozen=True)
class AnomalySettings:
    runner_dead_after_s: float = RUNNER_DEAD_AFTER_S     # a runner silent this long is gone (pynenc's default)
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


def _ago(seconds: float) -> str:
    """A duration as people say it: 45 s, 12 min, 1.5 h, 3 d."""
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= 1.5 * size:
            value = seconds / size
            return (f"{value:.1f}".rstrip("0").rstrip(".") if value < 10 else f"{value:.0f}") + f" {unit}"
    return f"{seconds:.0f} s"


def _queue_sql(col: str) -> str:
    """SQL: the queue a transition's attrs name (n.QUEUE_ATTRS), or NULL."""
    return "coalesce(" + ", ".join(f"""TRY({col}->>'$."{a}"')""" for a in n.QUEUE_ATTRS) + ")"


CONSUMERS_LOOKBACK_S = 86_400.0  # how far back "took work from the queue since" looks (bounds the scan)


def never_picked_up(q, waiting: list[dict], s: AnomalySettings, now: datetime) -> list[dict]:
    """`pending_too_long` anomalies of invocations REGISTERED past the limit and never run (rows with app_id,
    invocation_id, task_id, created_at, updated_at): each names its queue when a transition said it, and
    says whether any runner took work from that queue since it was registered (within the last day)."""
    if not waiting:
        return []
    since = min(d["created_at"] for d in waiting)
    recent = max(since, now - timedelta(seconds=CONSUMERS_LOOKBACK_S))
    queues = {(app, inv): queue for app, inv, queue in q(f"""
        SELECT app_id, invocation_id, arg_min({_queue_sql('attrs')}, ts) FILTER (WHERE {_queue_sql('attrs')} IS NOT NULL)
        FROM transitions WHERE status = 'REGISTERED' AND ts >= $s AND attrs IS NOT NULL
          AND invocation_id IN (SELECT unnest($ids::VARCHAR[])) GROUP BY ALL""",
        {"s": since, "ids": sorted({d["invocation_id"] for d in waiting})}).rows if queue is not None}
    consumers: dict = {}  # (app, queue) -> [(context, last time it took work from the queue)]
    if queues:
        for app, queue, ctx, last in q(f"""
            SELECT app_id, queue, ctx, max(ts) FROM (
                SELECT app_id, {_queue_sql('attrs')} AS queue, coalesce(worker_id, runner_id) AS ctx, ts
                FROM transitions WHERE status = 'RUNNING' AND ts >= $s AND attrs IS NOT NULL
                UNION ALL
                SELECT app_id, unnest(consumed_queues), runner_id, ts FROM runner_events
                WHERE kind = 'heartbeat' AND ts >= $s AND consumed_queues IS NOT NULL)
            WHERE queue IN (SELECT unnest($q::VARCHAR[])) GROUP BY ALL""",
                                       {"s": recent, "q": sorted(set(queues.values()))}).rows:
            consumers.setdefault((app, queue), []).append((ctx, last))
    out = []
    for d in waiting:
        registered = f"registered {_ago((now - d['updated_at']).total_seconds())} ago " \
                     f"({d['updated_at']:%Y-%m-%d %H:%M:%S}) and never picked up"
        queue = queues.get((d["app_id"], d["invocation_id"]))
        if queue is None:
            why = registered
        else:
            took = {c for c, last in consumers.get((d["app_id"], queue), ()) if last >= d["created_at"]}
            why = (f"{registered}, though {len(took)} runner{'s' if len(took) > 1 else ''} took work from queue "
                   f"'{queue}' since" if took else f"{registered}: no runner consumes queue '{queue}'")
        item = {"kind": "pending_too_long", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                "task_id": d["task_id"], "since": d["updated_at"],
                "why": f"{why} (limit {s.max_pending_s:g} s)"}
        if queue is not None:
            item["queue"] = queue
        out.append(item)
    return out


def find(q, s: AnomalySettings, now: datetime, runner_rows: Optional[list] = None) -> list[dict]:
    """`q(sql, params)` runs a read and returns a Result; `runner_rows`: Liveness rows the caller read.
    Returns anomalies, most recent first."""
    live = Liveness(q, now - timedelta(seconds=s.runner_dead_after_s), runner_rows)
    # One read of the work in flight (open_invocations: the invocation_state rows not final, fold-kept by
    # store/open_invocations.py, so the read follows the work in flight, not the store) serves the three
    # invocation checks. REGISTERED work only once it waited past the limit and never ran (a retry's
    # re-send has run before).
    stuck_before = now - timedelta(seconds=s.max_pending_s)
    cols = ("app_id, invocation_id, task_id, status, created_at, updated_at, started_at, "
            "coalesce(worker_id, runner_id) AS ctx")
    active = q(f"""SELECT {cols} FROM open_invocations WHERE status = 'RUNNING' OR status = 'PENDING'
                      OR (status = 'REGISTERED' AND updated_at < $w AND started_at IS NULL)""",
               {"w": stuck_before}).dicts()
    out = _orphaned(active, live, s)
    orphaned = {a["invocation_id"] for a in out}
    for d in active:
        if d["status"] == "PENDING" and d["updated_at"] < stuck_before:
            out.append({"kind": "pending_too_long", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                        "task_id": d["task_id"], "since": d["updated_at"],
                        "why": f"PENDING since {d['updated_at']:%Y-%m-%d %H:%M:%S}, longer than the "
                               f"{s.max_pending_s:g} s limit"})
    out += never_picked_up(q, [d for d in active if d["status"] == "REGISTERED"], s, now)
    running = [d for d in active if d["status"] == "RUNNING" and d["started_at"] is not None
               and d["invocation_id"] not in orphaned]  # a gone runner is the news, not the duration
    out += _slow(q, running, s, now)
    out += _failure_spikes(q, s, now)
    out += _silent_runners(live, s)
    out += _silent_scheduler(q, live, s, now)
    for a in out:  # the state word of the runner an anomaly names, as every page says it
        ctx = live.runners.get((a["app_id"], a.get("runner_id")))
        if ctx is not None:
            a["runner_state"] = live.state(ctx)
    out.sort(key=lambda a: a["since"] or now, reverse=True)
    return out


def _orphaned(active: list[dict], live: Liveness, s: AnomalySettings) -> list[dict]:
    """RUNNING on a context that stopped after it started, or is not alive (Liveness)."""
    out = []
    for d in active:
        ctx = live.runners.get((d["app_id"], d["ctx"])) if d["ctx"] else None
        if d["status"] != "RUNNING" or ctx is None:
            continue
        parent = live.parent(ctx)
        stopped_at = ctx["stopped_at"] or (parent["stopped_at"] if parent else None)  # it, or its process's runner
        gone = stopped_at is not None and stopped_at >= d["updated_at"]
        if not gone and live.alive(ctx):
            continue
        last = ctx["last_activity"]
        why = (f"RUNNING since {d['updated_at']:%Y-%m-%d %H:%M:%S} on {d['ctx']}, which stopped at "
               f"{stopped_at:%H:%M:%S}" if gone
               else f"RUNNING since {d['updated_at']:%Y-%m-%d %H:%M:%S} on {d['ctx']}, "
                    + (f"whose heartbeats stopped at {last:%H:%M:%S}" if ctx["heartbeats"]
                       else f"silent since {last:%H:%M:%S}, with nothing from its parent or its process")
                    + f" (dead after {s.runner_dead_after_s:g} s)")
        out.append({"kind": "orphaned", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                    "task_id": d["task_id"], "runner_id": d["ctx"], "since": d["updated_at"], "why": why})
    return out


def _slow(q, running: list[dict], s: AnomalySettings, now: datetime) -> list[dict]:
    """RUNNING longer than `slow_factor` × its task's p99 over its finished runs of the baseline window
    (read only for the tasks running: the cost follows that window)."""
    tasks = sorted({r["task_id"] for r in running if r["task_id"] is not None})
    if not tasks:
        return []
    p99 = {(app, task): (value, count) for app, task, value, count in q("""
        SELECT app_id, task_id,
               quantile_cont(epoch(updated_at) - epoch(coalesce(started_at, created_at)), 0.99), count(*)
        FROM invocation_state
        WHERE updated_at >= $b AND status IN ('SUCCESS', 'FAILED')
          AND task_id IN (SELECT unnest($t::VARCHAR[]))
        GROUP BY ALL HAVING count(*) >= $n""",
        {"b": now - timedelta(seconds=s.slow_baseline_s), "t": tasks, "n": s.min_samples}).rows}
    out = []
    for d in running:
        if (d["app_id"], d["task_id"]) not in p99:
            continue
        value, count = p99[(d["app_id"], d["task_id"])]
        ran = (now - d["started_at"]).total_seconds()
        if ran > s.slow_factor * max(value, 0.001):
            out.append({"kind": "slow", "app_id": d["app_id"], "invocation_id": d["invocation_id"],
                        "task_id": d["task_id"], "since": d["started_at"],
                        "why": f"RUNNING for {ran:.0f} s, over {s.slow_factor:g} × its task's p99 of {value:.2f} s "
                               f"({count} finished)"})
    return out


def _failure_spikes(q, s: AnomalySettings, now: datetime) -> list[dict]:
    """A task failing over `spike_factor` × its baseline rate in the last `spike_window_s`. One grouped
    count per task, window and outcome; the failures of a spiking task (usually none) are read afterwards:
    an ordered list aggregate in the count cost every dashboard 1.9 ms on B9's 10k store (6.2 -> 4.3 ms),
    whether or not a task failed in the window."""
    w = now - timedelta(seconds=s.spike_window_s)
    counts: dict = {}
    for app, task, recent, failed, n, first in q("""
            SELECT app_id, task_id, updated_at >= $w, status = 'FAILED', count(*), min(updated_at)
            FROM invocation_state WHERE updated_at >= $b AND status IN ('SUCCESS', 'FAILED') GROUP BY ALL""",
            {"w": w, "b": now - timedelta(seconds=s.spike_window_s + s.spike_baseline_s)}).rows:
        d = counts.setdefault((app, task), {"fw": 0, "nw": 0, "fb": 0, "nb": 0, "first_failed": None})
        d["nw" if recent else "nb"] += n
        if failed:
            d["fw" if recent else "fb"] += n
            if recent:
                d["first_failed"] = first
    out = []
    for (app, task), d in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] is None, kv[0][1] or "")):
        rate = d["fw"] / d["nw"] if d["nw"] else 0.0
        base = max(d["fb"] / d["nb"] if d["nb"] else 0.0, 0.01)
        if d["fw"] >= s.spike_min_failures and rate >= s.spike_factor * base:
            out.append({"kind": "failure_spike", "app_id": app, "task_id": task, "since": d["first_failed"],
                        "invocation_ids": _recent_failures(q, app, task, w),
                        "why": f"{d['fw']} of {d['nw']} failed in the last {s.spike_window_s / 60:g} min "
                               f"({rate:.0%}), against {base:.0%} before"})
    return out


def _recent_failures(q, app: str, task, since: datetime, limit: int = 20) -> list[str]:
    """The ids of a task's latest `limit` invocations that FAILED since `since`, latest first (equal times by id)."""
    task_is = "task_id = $task" if task is not None else "task_id IS NULL"
    return [i for (i,) in q(f"""SELECT invocation_id FROM invocation_state
                                WHERE app_id = $app AND {task_is} AND updated_at >= $w AND status = 'FAILED'
                                ORDER BY updated_at DESC, invocation_id LIMIT {int(limit)}""",
                            {"app": app, "w": since, **({"task": task} if task is not None else {})}).rows]


def _silent_runners(live: Liveness, s: AnomalySettings) -> list[dict]:
    out = []
    for d in live.runners.values():
        if d["first_seen"] is None:
            continue  # known only from transitions
        if live.state(d) == "dead":  # neither stopped (it or its runner) nor a client
            out.append({"kind": "runner_silent", "app_id": d["app_id"], "runner_id": d["runner_id"],
                        "since": d["last_activity"],
                        "why": f"no record from it, its parent or its process since "
                               f"{d['last_activity']:%Y-%m-%d %H:%M:%S} and no stop "
                               f"(dead after {s.runner_dead_after_s:g} s)"})
    return out


def _silent_scheduler(q, live: Liveness, s: AnomalySettings, now: datetime) -> list[dict]:
    """The atomic-service scheduler silent past `scheduler_factor` of its usual intervals, only while a
    runner that has run it keeps talking (within the silence limit): a runner gone quiet as long as its
    scheduler is the runner's news (runner_silent), not the scheduler's. The runners of a silent scheduler
    (usually none is) are read afterwards: their list in the rhythm's statement cost every dashboard 1.7 ms
    (B9 10k store, 26 fires: 4.3 -> 2.6 ms)."""
    out = []
    b = now - timedelta(seconds=s.spike_baseline_s)
    for d in q("""
        SELECT app_id, max(ts) AS last, count(*) AS n,
               (epoch(max(ts)) - epoch(min(ts))) / nullif(count(*) - 1, 0) AS every_s
        FROM (SELECT app_id, ts FROM atomic_decisions WHERE ts >= $b
              UNION ALL SELECT app_id, ts FROM atomic_executions WHERE ts >= $b) GROUP BY app_id""",
               {"b": b}).dicts():
        if d["n"] < 3 or not d["every_s"]:
            continue  # too few fires to know its rhythm
        limit = max(s.scheduler_factor * d["every_s"], s.scheduler_min_silence_s)
        if (now - d["last"]).total_seconds() <= limit:
            continue
        talking = [h for h in (live.runners.get((d["app_id"], r)) for r in _scheduler_runners(q, d["app_id"], b))
                   if h is not None and live.role(h) != "client" and h["stopped_at"] is None
                   and h["last_activity"] is not None and (now - h["last_activity"]).total_seconds() <= limit]
        if talking:
            out.append({"kind": "scheduler_silent", "app_id": d["app_id"], "since": d["last"],
                        "runner_id": talking[0]["runner_id"],
                        "why": f"the atomic-service scheduler last fired at {d['last']:%Y-%m-%d %H:%M:%S}; it "
                               f"fires every {d['every_s']:.1f} s, and {talking[0]['runner_id']}, which ran it, "
                               f"is still sending"})
    return out


def _scheduler_runners(q, app: str, since: datetime) -> list[str]:
    """The runners that made `app`'s atomic-service decisions or executions since `since`, by id."""
    return [r for (r,) in q("""
        SELECT DISTINCT runner_id FROM (SELECT runner_id FROM atomic_decisions WHERE app_id = $app AND ts >= $b
                                        UNION ALL SELECT runner_id FROM atomic_executions WHERE app_id = $app AND ts >= $b)
        WHERE runner_id IS NOT NULL ORDER BY runner_id""", {"app": app, "b": since}).rows]


def _link(a: dict) -> str:
    """What an anomaly is about, as a page: its invocation, runner or task; the atomic services for a silent
    scheduler; the app's FAILED invocations, latest failure first, for a failure spike of invocations with no task id."""
    if a["kind"] == "scheduler_silent":
        return "/atomic-services"
    for key, page in (("invocation_id", "invocations"), ("runner_id", "runners"), ("task_id", "tasks")):
        if a.get(key):
            return f"/{page}/{segment(a[key])}"
    return "/invocations?" + urlencode([("status", "FAILED"), ("app", a["app_id"] or ""), ("sort", "-updated_at")])


def listing(q, s: AnomalySettings, now: datetime, app: Optional[str] = None,
            runner_rows: Optional[list] = None) -> dict:
    """The anomalies of `app` (or all) as /anomalies shows them: each with a link to what it is about,
    counts by kind, the time judged and the thresholds (`runner_rows`: as `find`)."""
    items = [a for a in find(q, s, now, runner_rows) if not app or a["app_id"] == app]
    for a in items:
        a["since"] = iso(a["since"])
        a["link"] = _link(a)
    counts = {k: 0 for k in KINDS}
    for a in items:
        counts[a["kind"]] += 1
    return {"items": items, "counts": {k: v for k, v in counts.items() if v}, "now": iso(now),
            "thresholds": {"runner_dead_after_s": s.runner_dead_after_s, "max_pending_s": s.max_pending_s,
                           "slow_factor": s.slow_factor, "slow_min_samples": s.min_samples,
                           "spike_window_s": s.spike_window_s, "spike_factor": s.spike_factor}}
