"""Queues: messages waiting per queue over a window and who consumes them, read from `queue_depths`
(tasktrail.queue.depth records: the pynenc exporter, rustvello's `App.queue_depths()` helper, tasktrail's
own `--celery-broker` poller) and the runners' heartbeats.

Per (app, queue): the latest depth reported in the window, its series over the window (at most
`MAX_POINTS` buckets: per bucket the last depth reported and the peak), and its consumers now:
- runners alive now (query/liveness.Liveness: the one rule) whose latest heartbeat lists the queue in its
  consumed queues (runner_events.consumed_queues), and
- runners a depth record names as consumers, from records younger than `runner_dead_after_s` (the
  reporter just saw them consume), unless that runner has stopped since, and
- runners alive now that started work from the queue since the liveness horizon (a RUNNING transition
  whose attributes name the queue: Celery's routing key, rustvello's queue), as the anomalies read it.
A queue with pending messages, no live consumer and no consumer counted by its broker is `unconsumed`:
"nobody consumes this queue". Every read is bounded by the window (zone maps on `ts` skip the rest), and
the heartbeat read by the liveness horizon, so the cost follows the window, not the store.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from .errors import BadRequest, NotFound
from .anomalies import _queue_sql
from .liveness import Liveness
from .params import iso
from .reader import where

MAX_POINTS = 240  # buckets of one queue's series, whatever the window


def _step_s(lo: datetime, hi: datetime) -> float:
    """The series' bucket width in seconds: the window over MAX_POINTS, at least one second."""
    return max(1.0, (hi - lo).total_seconds() / MAX_POINTS)


def _window_clauses(app: Optional[str], queue: Optional[str], lo, hi) -> tuple[list, dict]:
    clauses, args = [], {}
    for col, val, op in (("app_id", app, "="), ("queue", queue, "="), ("ts", lo, ">="), ("ts", hi, "<=")):
        if val is not None:
            key = f"p{len(args)}"
            clauses.append(f"{col} {op} ${key}")
            args[key] = val
    return clauses, args


def _latest(q, clauses: list, args: dict) -> list[dict]:
    return q(f"""SELECT app_id, queue, arg_max(depth, ts) AS depth, max(ts) AS at,
                        arg_max(runner_id, ts) AS reported_by, arg_max(consumer_count, ts) AS consumer_count,
                        arg_max(source, ts) AS source
                 FROM queue_depths {where(clauses)} GROUP BY ALL ORDER BY app_id, queue""", args).dicts()


def _series(q, clauses: list, args: dict, lo: datetime, step_s: float) -> dict:
    """{(app, queue): {"t": [...], "depth": [...], "peak": [...]}}: per bucket the last depth and the peak."""
    rows = q(f"""SELECT app_id, queue, floor((epoch(ts) - epoch($lo::TIMESTAMP)) / $step)::BIGINT AS b,
                        arg_max(depth, ts) AS last, max(depth) AS peak
                 FROM queue_depths {where(clauses)} GROUP BY ALL ORDER BY app_id, queue, b""",
             {**args, "lo": lo, "step": step_s}).rows
    out: dict = {}
    for app, queue, b, last, peak in rows:
        s = out.setdefault((app, queue), {"t": [], "depth": [], "peak": []})
        s["t"].append(iso(lo + timedelta(seconds=b * step_s)))
        s["depth"].append(last)
        s["peak"].append(peak)
    return out


def _consumers(q, live: Liveness, app: Optional[str], queue: Optional[str]) -> dict:
    """{(app, queue): {runner_id: reasons}} of the consumers alive now: "heartbeat" (its latest heartbeat since
    the liveness horizon lists the queue, and it is alive), "report" (a fresh depth record names it and it has
    not stopped since) and "work" (it is alive and started work from the queue since the horizon)."""
    out: dict = {}
    hb_clauses, args = ["kind = 'heartbeat'", "ts >= $dead", "consumed_queues IS NOT NULL"], {"dead": live.dead}
    rec_clauses = ["ts >= $dead", "consumers IS NOT NULL"]
    if app is not None:
        hb_clauses.append("app_id = $app")
        rec_clauses.append("app_id = $app")
        args["app"] = app
    for app_id, runner_id, queues in q(f"""
            SELECT app_id, runner_id, arg_max(consumed_queues, ts) FROM runner_events {where(hb_clauses)}
            GROUP BY ALL""", args).rows:
        d = live.runners.get((app_id, runner_id))
        if d is None or live.state(d) != "alive":
            continue
        for name in queues or ():
            if queue is None or name == queue:
                out.setdefault((app_id, name), {}).setdefault(runner_id, set()).add("heartbeat")
    if queue is not None:
        rec_clauses.append("queue = $queue")
        args["queue"] = queue
    for app_id, name, runner_id in q(f"""
            SELECT DISTINCT app_id, queue, unnest(consumers) FROM queue_depths {where(rec_clauses)}""", args).rows:
        d = live.runners.get((app_id, runner_id))
        if d is not None and live.state(d) == "stopped":  # a reporter's fresh word counts, a stop ends it
            continue
        out.setdefault((app_id, name), {}).setdefault(runner_id, set()).add("report")
    work = ["status = 'RUNNING'", "ts >= $dead", "attrs IS NOT NULL"] + (["app_id = $app"] if app is not None else [])
    for app_id, name, ctx in q(f"""
            SELECT DISTINCT app_id, {_queue_sql('attrs')} AS queue, coalesce(worker_id, runner_id) FROM transitions
            {where(work)}""", {k: v for k, v in args.items() if k != "queue"}).rows:
        d = live.runners.get((app_id, ctx))
        if name is None or ctx is None or d is None or live.state(d) != "alive" or queue not in (None, name):
            continue
        out.setdefault((app_id, name), {}).setdefault(ctx, set()).add("work")
    return out


def _item(app_id: str, queue: str, latest: Optional[dict], consumers: dict, series: Optional[dict]) -> dict:
    depth = latest["depth"] if latest else None
    count = latest["consumer_count"] if latest else None
    live = [{"runner_id": rid, "via": sorted(via)} for rid, via in sorted(consumers.items())]
    return {"app_id": app_id, "queue": queue, "depth": depth, "at": iso(latest["at"]) if latest else None,
            "reported_by": latest["reported_by"] if latest else None, "source": latest["source"] if latest else None,
            "consumer_count": count, "consumers": live,
            "unconsumed": bool(depth) and not live and not (count and count > 0),
            "series": series or {"t": [], "depth": [], "peak": []}}


def listing(q, live: Liveness, *, lo: Optional[datetime], hi: Optional[datetime], now: datetime,
            app: Optional[str] = None, queue: Optional[str] = None) -> dict:
    """`{since, until, step_s, queues: [{app_id, queue, depth, at, reported_by, source, consumer_count,
    consumers: [{runner_id, via}], unconsumed, series: {t, depth, peak}}], unconsumed: n}`: every queue
    reported in the window (`lo`–`hi`, naive UTC; None: unbounded) or consumed by a live runner, ordered by
    app and name; `depth` is None for a queue only the heartbeats name. `now` ends an open window."""
    clauses, args = _window_clauses(app, queue, lo, hi)
    latest = {(d["app_id"], d["queue"]): d for d in _latest(q, clauses, args)}
    start = lo
    if start is None:
        first = q(f"SELECT min(ts) FROM queue_depths {where(clauses)}", args).rows[0][0]
        start = first or (hi or now)
    step = _step_s(start, hi or now)
    series = _series(q, clauses, args, start, step)
    consumers = _consumers(q, live, app, queue)
    keys = sorted(set(latest) | set(consumers))
    items = [_item(a, name, latest.get((a, name)), consumers.get((a, name), {}), series.get((a, name)))
             for a, name in keys]
    return {"since": iso(lo), "until": iso(hi), "step_s": step, "queues": items,
            "unconsumed": sum(1 for i in items if i["unconsumed"])}


def one(out: dict, name: str) -> dict:
    """The item of queue `name` in a `listing` answer, with its since, until and step_s. Raises NotFound when
    no record in the window or live consumer names it, BadRequest when several apps have it (pass `app`)."""
    found = out["queues"]
    if not found:
        raise NotFound(f"queue {name} has no depth reported in this window and no live consumer")
    if len(found) > 1:
        raise BadRequest(f"queue {name} is in several apps ({', '.join(i['app_id'] for i in found)}): pass app=")
    return {**found[0], "since": out["since"], "until": out["until"], "step_s": out["step_s"]}
