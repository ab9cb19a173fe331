"""Dashboards: the apps seen, the overview (counts by status, runners, anomalies, last ingest) and the
technical dashboard (/ops: work in flight, last failures, heartbeats, the atomic-service scheduler,
ingest health). The /metrics figures are query/metrics.py's."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Optional

from tasktrail.proto.status import ACTIVE_STATUSES, STATUSES

from . import invocations
from .anomalies import KINDS
from .liveness import STATES
from .params import iso


def apps(q) -> list[dict]:
    """Every app with invocations, runners or log lines: first and last seen (the times of its first and last
    records), invocations (from the fold-kept status_counts and app_log_span: a few rows however large the
    store)."""
    r = q("""
        WITH a AS (SELECT app_id, min(first_record) AS first_seen, max(last_record) AS last_seen,
                          sum(n) AS invocations FROM status_counts GROUP BY app_id),
             b AS (SELECT app_id, min(first_seen) AS first_seen, max(last_event) AS last_seen
                   FROM runner_state GROUP BY app_id),
             c AS (SELECT app_id, first_ts AS first_seen, last_ts AS last_seen FROM app_log_span)
        SELECT app_id, min(first_seen), max(last_seen), coalesce(max(invocations), 0)
        FROM (SELECT app_id, first_seen, last_seen, invocations FROM a
              UNION ALL SELECT app_id, first_seen, last_seen, NULL FROM b
              UNION ALL SELECT app_id, first_seen, last_seen, NULL FROM c)
        GROUP BY app_id ORDER BY app_id""")
    return [{"app_id": a, "first_seen": iso(f), "last_seen": iso(l), "invocations": int(n)} for a, f, l, n in r.rows]


def last_ingest(q, now: datetime) -> Optional[datetime]:
    """When the newest request the ingest ledger holds was received (None for an empty ledger). The ledger
    gains a row per request and is stored in arrival order, so the last hour before `now` is read first (its
    zone maps skip every older row group); only a ledger silent for that hour is read whole."""
    recent = q("SELECT max(received_at) FROM ingest_ledger WHERE received_at >= ?",
               [now - timedelta(hours=1)]).rows[0][0]
    return recent if recent is not None else q("SELECT max(received_at) FROM ingest_ledger").rows[0][0]


def _figures(q, app: Optional[str], now: datetime) -> tuple[dict, list[dict], Optional[datetime]]:
    """({status: invocations} of `app` (or all), `apps(q)`, `last_ingest(q, now)`) in one read of a few rows:
    status_counts by app and status gives both the counts and the apps' invocation figures, app_log_span the
    apps' log lines (both fold-kept: store/status_counts.py). The whole ledger is read only when its last hour
    is empty (as last_ingest)."""
    rows = q("""
        SELECT 'i' AS part, app_id, status, sum(n) AS n, min(first_record) AS first, max(last_record) AS last
        FROM status_counts GROUP BY app_id, status
        UNION ALL SELECT 'r', app_id, NULL, NULL, min(first_seen), max(last_event) FROM runner_state GROUP BY app_id
        UNION ALL SELECT 'l', app_id, NULL, NULL, first_ts, last_ts FROM app_log_span
        UNION ALL SELECT 'g', NULL, NULL, NULL, NULL, max(received_at) FROM ingest_ledger WHERE received_at >= $h""",
             {"h": now - timedelta(hours=1)}).rows
    counts: dict = {}
    seen: dict = {}   # app -> [first, last, invocations]
    last = None
    for part, app_id, status, n, first, latest in rows:
        if part == "g":
            last = latest
            continue
        if part == "i" and (not app or app_id == app):
            counts[status] = counts.get(status, 0) + int(n)
        a = seen.setdefault(app_id, [None, None, 0])
        a[0] = first if a[0] is None or (first is not None and first < a[0]) else a[0]
        a[1] = latest if a[1] is None or (latest is not None and latest > a[1]) else a[1]
        a[2] += int(n or 0)
    if last is None:
        last = q("SELECT max(received_at) FROM ingest_ledger").rows[0][0]
    apps_seen = [{"app_id": a, "first_seen": iso(f), "last_seen": iso(l), "invocations": n}
                 for a, (f, l, n) in sorted(seen.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))]
    return counts, apps_seen, last


def overview(q, app: Optional[str], runners: list[dict], anomalies: dict, now: datetime) -> dict:
    """The overview of `app` (or all), given its runners and anomalies as /runners and /anomalies show them."""
    counts, apps_seen, last = _figures(q, app, now)
    return {
        "anomalies": {k: anomalies["counts"].get(k, 0) for k in KINDS},
        "anomaly_items": anomalies["items"][:20],
        "counts_by_status": {s: int(counts.get(s, 0)) for s in STATUSES},
        "in_flight": sum(int(counts.get(s, 0)) for s in ACTIVE_STATUSES),
        "runners": {**{state: sum(1 for r in runners if r["state"] == state and r["role"] != "client")
                       for state in STATES},
                    "clients": sum(1 for r in runners if r["role"] == "client")},
        "last_ingest_at": iso(last),
        "apps": apps_seen,
    }


def _rhythm(last: Optional[datetime], every_s: Optional[float], now: datetime) -> dict:
    """When the next of something sent every `every_s` is due, and whether it is late (two intervals)."""
    return {"next_expected": iso(last + timedelta(seconds=every_s)) if every_s else None,
            "late": bool(every_s and now > last + timedelta(seconds=2 * every_s))}


def _interval(every_s: Optional[float]) -> Optional[float]:
    """An interval worth showing: None when unknown or under a millisecond (never "0 s")."""
    return every_s if every_s is not None and every_s >= 0.001 else None


def _heartbeats(q, app: Optional[str], now: datetime, live=None) -> list[dict]:
    """Each heartbeating runner's last beat and rhythm, with its state (`live`: query/liveness.Liveness): a
    runner that stopped (or whose runner did) is never late."""
    cond, params = ("AND app_id = ?", [app]) if app else ("", [])
    rows = q(f"""SELECT app_id, runner_id, max(last_heartbeat) AS last, sum(heartbeats) AS n,
                        (epoch(max(last_heartbeat)) - epoch(min(first_heartbeat)))
                            / nullif(sum(heartbeats) - 1, 0) AS every_s
                 FROM runner_state WHERE heartbeats > 0 {cond} GROUP BY ALL ORDER BY last DESC, runner_id""",
             params).dicts()
    out = []
    for d in rows:
        ctx = live.runners.get((d["app_id"], d["runner_id"])) if live is not None else None
        state = live.state(ctx) if ctx is not None else None
        every = _interval(d["every_s"])
        rhythm = _rhythm(d["last"], every, now)
        rhythm["late"] = rhythm["late"] and state != "stopped"
        out.append({"runner_id": d["runner_id"], "last": iso(d["last"]), "every_s": every, "state": state, **rhythm})
    return out


def _scheduler(q, app: Optional[str], now: datetime) -> dict:
    cond, params = ("AND app_id = ?", [app]) if app else ("", [])
    d = q(f"""SELECT max(ts) AS last, count(*) AS n, (epoch(max(ts)) - epoch(min(ts))) / nullif(count(*) - 1, 0) AS every_s
              FROM (SELECT ts FROM atomic_decisions WHERE true {cond}
                    UNION ALL SELECT ts FROM atomic_executions WHERE true {cond})""", params * 2).dicts()[0]
    every = _interval(d["every_s"])
    return {"last_fire": iso(d["last"]), "every_s": every, **_rhythm(d["last"], every, now)}


def _ingest(q, now: datetime, writer) -> dict:
    led = q("""SELECT count(*) FILTER (WHERE received_at >= ?) AS req_1m,
                      coalesce(sum(records) FILTER (WHERE received_at >= ?), 0)::BIGINT AS rec_1m,
                      max(received_at) AS last, max(batch) AS last_batch FROM ingest_ledger""",
            [now - timedelta(minutes=1)] * 2).dicts()[0]
    ingest = {"records_per_s_1m": led["rec_1m"] / 60.0, "requests_1m": led["req_1m"],
              "last_request_at": iso(led["last"]), "last_batch": led["last_batch"]}
    if writer is not None:
        st = writer.stats()
        ingest.update({"queue_records": st.queue_records, "queue_capacity": st.queue_capacity,
                       "rejected_full": st.rejected_full, "failed_batches": st.failed_batches,
                       "last_commit_seconds": st.last_commit_seconds})
    return ingest


def ops(q, now: datetime, app: Optional[str] = None, writer=None, live=None) -> dict:
    """What operators check first: in flight, last failures, heartbeats, the atomic-service
    scheduler, ingest health (`writer`: the store's writer stats, when it has them)."""
    in_flight = []
    for d in invocations.select(q, app=app, statuses=sorted(ACTIVE_STATUSES), limit=100, sort="created_at")[:100]:
        in_flight.append({**invocations.summary(d), "elapsed_s": (now - d["created_at"]).total_seconds()})
    failures = invocations.listing(q, app=app, statuses=["FAILED"], limit=20, sort="-updated_at")["items"]
    return {"now": iso(now), "in_flight": in_flight, "recent_failures": failures,
            "heartbeats": _heartbeats(q, app, now, live), "scheduler": _scheduler(q, app, now),
            "ingest": _ingest(q, now, writer)}
