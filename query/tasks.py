"""Per-task figures: counts by status, success rate, duration quantiles, throughput, a duration and
throughput series over time, and error types with their latest example.

All from the invocation_state cache, except error types, which read the log's FAILED and RETRY
transitions of the task inside its own time range (zone maps skip the rest).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from tasktrail.proto.status import FINAL_SQL as FINAL_IN

from .errors import NotFound
from .params import iso
from .values import cut, describe

DURATION = "epoch(updated_at) - epoch(coalesce(started_at, created_at))"
QUANTILES = (0.5, 0.95, 0.99)
MAX_POINTS = 60
# Series step sizes: the smallest that gives at most MAX_POINTS points over the window.
# Past a week: 30 days, 365 days and 10 years, so a window of centuries (a clamped `since`) is still ~60 points.
STEPS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800,
         2_592_000, 31_536_000, 315_360_000)


def _cond(app: Optional[str], since, until, task: Optional[str] = None) -> tuple[str, dict]:
    where, params = ["true"], {}
    if app:
        where.append("app_id = $app")
        params["app"] = app
    if task is not None:
        where.append("task_id = $task")
        params["task"] = task
    if since is not None:
        where.append("updated_at >= $since")
        params["since"] = since
    if until is not None:
        where.append("created_at < $until")
        params["until"] = until
    return " AND ".join(where), params


def _row(d: dict, window_s: float) -> dict:
    by = {k: int(v) for k, v in dict(d["by_status"] or {}).items()}
    ok, failed = by.get("SUCCESS", 0), by.get("FAILED", 0)
    q = d["q"] or [None] * len(QUANTILES)
    return {"app_id": d["app_id"], "task_id": d["task_id"], "invocations": int(d["n"]), "counts_by_status": by,
            "finished": int(d["finished"]), "success_rate": ok / (ok + failed) if ok + failed else None,
            "duration_s": {"p50": q[0], "p95": q[1], "p99": q[2], "mean": d["mean"], "max": d["dmax"]},
            "throughput_per_min": int(d["finished"]) / (window_s / 60) if window_s > 0 else None,
            "first_seen": iso(d["first"]), "last_seen": iso(d["last"])}


_STATS = f"""
    SELECT app_id, task_id, count(*) AS n, histogram(status) AS by_status,
           quantile_cont(d, [{', '.join(map(str, QUANTILES))}]) AS q, avg(d) AS mean, max(d) AS dmax,
           count(d) AS finished, min(created_at) AS first, max(updated_at) AS last, max(created_at) AS last_created
    FROM (SELECT app_id, task_id, status, created_at, updated_at,
                 CASE WHEN status IN ({FINAL_IN}) THEN {DURATION} END AS d
          FROM invocation_state WHERE {{where}})
    GROUP BY app_id, task_id"""


def task_list(q, now: datetime, *, app=None, since=None, until=None) -> dict:
    """One row per (app, task), busiest first, then the tasks idle in the window: the window's figures
    (_STATS, whose scan the window bounds) and the latest run of every task ever (`task_runs`: a few fold-kept
    rows, not the rows outside the window)."""
    where, params = _cond(app, since, until)
    rows = q(_STATS.format(where=where), params).dicts()
    # n DESC, then the task, then the app
    stats = sorted(rows, key=lambda d: (-d["n"], d["task_id"] is None, d["task_id"] or "", d["app_id"]))
    items = []
    for d in stats:  # throughput over the window asked for, else over the task's own active span
        lo = since or d["first"]
        hi = until or (now if since is not None or d["n"] > d["finished"] else d["last"])
        items.append(_row(d, (hi - lo).total_seconds()))
    return {"items": _with_idle(items, task_runs(q, app)), "since": iso(since), "until": iso(until)}


def task_runs(q, app=None, task: Optional[str] = None) -> dict:
    """{(app, task): created_at of its latest invocation ever} of every task with invocations (of `app`, or
    `task` only). status_counts (store/status_counts.py) holds for each task a time at least that late, exact
    unless a late record moved an invocation's created_at: each is checked by looking the time up in
    invocation_state (zone maps: a row group per time); the tasks whose time is no longer there come from
    `last_runs` (one grouped read of the cache)."""
    cond = " AND ".join(c for c, v in (("app_id = $app", app), ("task_id = $task", task)) if v) or "true"
    params = {k: v for k, v in (("app", app), ("task", task)) if v}
    rows = q(f"""
        WITH h AS (SELECT app_id, task_id, max(last_created) AS t FROM status_counts WHERE {cond} GROUP BY ALL),
             f AS (SELECT app_id, task_id, max(created_at) AS t FROM invocation_state
                   WHERE created_at IN (SELECT t FROM h) AND {cond} GROUP BY ALL)
        SELECT h.app_id, h.task_id, h.t, f.t FROM h LEFT JOIN f
        ON f.app_id = h.app_id AND f.task_id IS NOT DISTINCT FROM h.task_id""", params).rows
    found = {(a, k): t for a, k, hint, t in rows if t == hint}
    moved = [(a, k) for a, k, hint, t in rows if t != hint]
    if moved:   # a hint no row holds any more: those tasks from one grouped read of the cache
        whole = last_runs(q, "task_id", app, "task_id = $task" if task else "true", params)
        found.update({key: whole[key] for key in moved if key in whole})
    return found


def last_runs(q, key: str, app=None, where: str = "true", params: Optional[dict] = None) -> dict:
    """{(app, `key`): created_at of its latest invocation ever}: every known task (or workflow type) from
    the cache, one grouped read of three columns (no transition is read)."""
    cond, params = where, dict(params or {})
    if app:
        cond += " AND app_id = $app"
        params["app"] = app
    return {(a, k): t for a, k, t in q(f"SELECT app_id, {key}, max(created_at) FROM invocation_state "
                                        f"WHERE {cond} GROUP BY ALL", params).rows}


def _with_idle(items: list[dict], known: dict) -> list[dict]:
    """The window's rows with each one's last run, then every known task that did not run in it (zero
    counts, latest run first)."""
    for r in items:
        r["last_run"] = iso(known.get((r["app_id"], r["task_id"])))
    seen = {(r["app_id"], r["task_id"]) for r in items}
    idle = sorted((k for k in known if k not in seen), key=lambda k: (known[k], k[1] or ""), reverse=True)
    return items + [{"app_id": a, "task_id": t, "invocations": 0, "counts_by_status": {}, "finished": 0,
                     "success_rate": None, "duration_s": dict.fromkeys(("p50", "p95", "p99", "mean", "max")),
                     "throughput_per_min": None, "first_seen": None, "last_seen": None,
                     "last_run": iso(known[(a, t)])} for a, t in idle]


def _step(window_s: float) -> int:
    for s in STEPS:
        if window_s / s <= MAX_POINTS:
            return s
    return STEPS[-1]


def task_detail(q, now: datetime, task_id: str, *, app=None, since=None, until=None,
                message_bytes: int = 4096) -> dict:
    """One task: its figures, a series over the window, error types and where they were last seen (the
    latest message as a preview of at most `message_bytes`, described as query/values.py does)."""
    where, params = _cond(app, since, until, task_id)
    rows = q(_STATS.format(where=where), params).dicts()
    known = task_runs(q, app, task_id)
    last_run = iso(max(known.values())) if known else None
    if not rows:
        if not known:
            raise NotFound(f"task {task_id} is not in the log" + (f" of app {app}" if app else ""))
        return {"task_id": task_id, "app_id": app, "invocations": 0, "counts_by_status": {}, "finished": 0,
                "success_rate": None, "duration_s": None, "throughput_per_min": None, "series": None,
                "errors": [], "since": iso(since), "until": iso(until), "apps": [], "last_run": last_run}
    first = min(d["first"] for d in rows)
    last = max(d["last"] for d in rows)
    lo = since or first
    hi = until or max(last, now if any(d["n"] > d["finished"] for d in rows) else lo)
    window = max((hi - lo).total_seconds(), 1.0)
    per_app = [_row(d, window) for d in rows]
    total = _merge(per_app) if len(per_app) > 1 else dict(per_app[0])
    # The series spans the task's own data inside the window (2 minutes of it are not drawn in 30-minute steps).
    total["series"] = _series(q, where, params, max(lo, first), max(min(hi, last), lo, first))
    # Error types: from the log, bounded by the task's time range.
    total["errors"] = _errors(q, task_id, app, since or first, until or last, message_bytes)
    total["apps"] = [r["app_id"] for r in per_app]
    total["since"], total["until"] = iso(since), iso(until)
    total["last_run"] = last_run
    return total


def _series(q, where: str, params: dict, lo: datetime, hi: datetime) -> dict:
    """Finished, failed and duration quantiles per step from `lo` to `hi` (at most MAX_POINTS steps)."""
    step = _step(max((hi - lo).total_seconds(), 1.0))
    origin = lo.replace(microsecond=0)
    series = q(f"""
        SELECT floor((epoch(updated_at) - epoch($origin::TIMESTAMP)) / {step})::BIGINT AS b, count(*) AS n,
               count(*) FILTER (WHERE status = 'FAILED') AS failed,
               quantile_cont(d, [{', '.join(map(str, QUANTILES))}]) AS q
        FROM (SELECT status, updated_at, {DURATION} AS d FROM invocation_state
              WHERE {where} AND status IN ({FINAL_IN}))
        GROUP BY b ORDER BY b""", {**params, "origin": origin}).dicts()
    points = int((hi - origin).total_seconds() // step) + 1
    by_b = {int(d["b"]): d for d in series}
    return {
        "step_s": step, "since": iso(origin), "until": iso(origin + timedelta(seconds=step * points)),
        "t": [iso(origin + timedelta(seconds=step * i)) for i in range(points)],
        "finished": [int(by_b[i]["n"]) if i in by_b else 0 for i in range(points)],
        "failed": [int(by_b[i]["failed"]) if i in by_b else 0 for i in range(points)],
        **{f"p{int(qq * 100)}": [by_b[i]["q"][k] if i in by_b else None for i in range(points)]
           for k, qq in enumerate(QUANTILES)},
    }


# The FAILED and RETRY records of `where` as the history rule reads them (proto/history.py
# `retried_failures`): a FAILED that a RETRY of the same attempt follows (rustvello sends task.failed, with
# the error type, then task.retry_scheduled, without) is that RETRY, which takes the FAILED's error.
_SAME_ATTEMPT = "(attempt IS NULL OR {other} IS NULL OR attempt = {other})"
RETRIED_FAILURES = """
    e AS (SELECT ts, invocation_id, status, error_type, error_message, attempt,
                 lag(status) OVER w AS prev_status, lag(attempt) OVER w AS prev_attempt,
                 lag(error_type) OVER w AS prev_type, lag(error_message) OVER w AS prev_message,
                 lead(status) OVER w AS next_status, lead(attempt) OVER w AS next_attempt
          FROM transitions WHERE {where}
          WINDOW w AS (PARTITION BY app_id, invocation_id ORDER BY ts, batch, rowid)),
    r AS (SELECT ts, invocation_id, status,
                 CASE WHEN inherit THEN prev_type ELSE error_type END AS error_type,
                 CASE WHEN inherit THEN prev_message ELSE error_message END AS error_message
          FROM (SELECT *, status = 'RETRY' AND error_type IS NULL AND prev_status = 'FAILED'
                          AND """ + _SAME_ATTEMPT.format(other="prev_attempt") + """ AS inherit FROM e)
          WHERE NOT (status = 'FAILED' AND next_status IS NOT DISTINCT FROM 'RETRY'
                     AND """ + _SAME_ATTEMPT.format(other="next_attempt") + """))"""


def _errors(q, task_id: str, app, lo: datetime, hi: datetime, message_bytes: int) -> list[dict]:
    """Error types of the task's FAILED and RETRY transitions in [lo, hi], most frequent first."""
    eparams = {"task": task_id, "lo": lo, "hi": hi}
    # Runners that name the task only when it is registered leave it NULL on later transitions: find
    # those invocations of this task first (usually none), then count their errors with the named ones.
    base = "ts BETWEEN $lo AND $hi AND status IN ('FAILED', 'RETRY')" + (" AND app_id = $app" if app else "")
    if app:
        eparams["app"] = app
    unnamed = [i for (i,) in q(f"SELECT DISTINCT invocation_id FROM transitions WHERE {base} AND task_id IS NULL",
                               {k: v for k, v in eparams.items() if k != "task"}).rows]
    if unnamed:
        unnamed = [i for (i,) in q("""SELECT invocation_id FROM invocation_state
                                      WHERE task_id = $task AND invocation_id IN (SELECT unnest($ids::VARCHAR[]))""",
                                   {"task": task_id, "ids": unnamed}).rows]
    econd = base + " AND (task_id = $task" + (
        " OR (task_id IS NULL AND invocation_id IN (SELECT unnest($ids::VARCHAR[]))))" if unnamed else ")")
    if unnamed:
        eparams["ids"] = unnamed
    errors = q(f"""
        WITH {RETRIED_FAILURES.format(where=econd)}
        SELECT coalesce(error_type, '(no type)') AS error_type, count(*) AS n,
               count(*) FILTER (WHERE status = 'FAILED') AS failed, count(*) FILTER (WHERE status = 'RETRY') AS retried,
               count(DISTINCT invocation_id) AS invocations, max(ts) AS last_at,
               arg_max(invocation_id, ts) AS latest_invocation_id, arg_max(left(error_message, {int(message_bytes)}), {{'ts': ts, 'n': strlen(error_message)}}) AS latest_message,
               arg_max(strlen(error_message), {{'ts': ts, 'n': strlen(error_message)}}) AS latest_message_bytes,
               arg_max(status, ts) AS latest_status
        FROM r GROUP BY 1 ORDER BY n DESC, error_type""", eparams).dicts()
    return [{"error_type": e["error_type"], "count": int(e["n"]), "failed": int(e["failed"]),
             "retried": int(e["retried"]), "invocations": int(e["invocations"]),
             "latest": _latest_error(e, message_bytes)} for e in errors]


def _latest_error(e: dict, message_bytes: int) -> dict:
    """Where an error type was last seen; a long message as a preview, `values.message` saying so (its
    url is null: the invocation's page has the whole message)."""
    message = cut(e["latest_message"], message_bytes)
    described = {} if message is None else {"message": describe(message, e["latest_message_bytes"], None)}
    return {"invocation_id": e["latest_invocation_id"], "at": iso(e["last_at"]), "status": e["latest_status"],
            "message": message, "values": described}


def _merge(rows: list[dict]) -> dict:
    """A task seen in several apps: counts add up; quantiles are those of the busiest app (the API
    takes `app` for exact figures per app)."""
    out = dict(max(rows, key=lambda r: r["invocations"]))
    out["app_id"] = None
    out["counts_by_status"] = {}
    for r in rows:
        for k, v in r["counts_by_status"].items():
            out["counts_by_status"][k] = out["counts_by_status"].get(k, 0) + v
    out["invocations"] = sum(r["invocations"] for r in rows)
    out["finished"] = sum(r["finished"] for r in rows)
    ok, failed = out["counts_by_status"].get("SUCCESS", 0), out["counts_by_status"].get("FAILED", 0)
    out["success_rate"] = ok / (ok + failed) if ok + failed else None
    out["throughput_per_min"] = sum(r["throughput_per_min"] or 0 for r in rows)
    return out
