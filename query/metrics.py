"""The log-derived figures behind /metrics (web/metrics.py turns them into Prometheus families).

They come from the stored log, so they survive restarts and agree with the API. Counters add what
retention removed (store/carry.py), so they never go down. Label cardinality stays bounded: apps, tasks,
statuses, anomaly kinds and signals are few; runner ids appear only where a runner is the news (its
heartbeat within the last day, an anomaly naming it, at most MAX_SUBJECTS per app and kind); invocation
ids never appear. A runner silent for more than a day is no longer named (it stays counted in
tasktrail_anomalies and listed on /anomalies): a worker killed without a stop is flagged until it comes
back, and its alert should not fire for ever.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from tasktrail.proto.status import FINAL_SQL, STATUSES
from tasktrail.store.api import CARRY_READ_SQL as CARRY_SQL, DURATION_BUCKETS, DURATION_SQL

from .anomalies import KINDS, AnomalySettings, find
from .liveness import STATES, Liveness

# Anomaly subjects (task, runner) exposed per app and kind, the most recent first; tasktrail_anomalies
# counts them all.
MAX_SUBJECTS = 50
# Runners whose last heartbeat (or, silent ones, last record) is older than this are not named (a fleet
# that restarts often would otherwise leave one series per process it ever ran); records from an app
# within it count for its last-record time beyond the invocation and runner caches.
RECENT_S = 86_400.0
# The one liveness vocabulary (anomalies.STATES) for runners; clients (contexts that only submit work) are
# counted apart as `client`, whatever their state, as every page shows them.
RUNNER_STATES = (*STATES, "client")


class _Carry:
    """What retention removed, by (figure, app, k1, k2): each key is added once (`plus`), the keys no
    current row has are listed after (`left`)."""

    def __init__(self, q: Callable) -> None:
        self.rows = {(figure, app, k1, k2): (n, total) for figure, app, k1, k2, n, total in q(CARRY_SQL).rows}

    def plus(self, figure: str, app: str, k1: str, k2: str) -> tuple:
        return self.rows.pop((figure, app, k1, k2), (0, 0.0))

    def left(self, figure: str) -> list[tuple]:
        """[(app, k1, k2, n, total)] of `figure` not added yet."""
        return [(app, k1, k2, n, total) for (fig, app, k1, k2), (n, total) in list(self.rows.items()) if fig == figure]


def snapshot(q: Callable, anomaly_settings: AnomalySettings, now: datetime) -> dict:
    """`q(sql, params)` runs a read and returns a Result; `now` is naive UTC. Returns a dict of lists of
    tuples, one per family (keys below), label values first and values last; times are Unix seconds."""
    carry = _Carry(q)
    recent = now - timedelta(seconds=RECENT_S)
    by_status, last_seen = _by_status(q, recent)
    finished, durations = _finished(q, carry)
    runners = _runners(q, anomaly_settings, now)
    found, subjects = _anomalies(q, anomaly_settings, now, recent)
    apps = sorted(set(last_seen) | {app for app, _ in runners} | {app for app, _ in found})
    return {
        "invocations_by_status": by_status,
        "app_last_record": sorted(last_seen.items()),
        "transitions": _transitions(q, carry),
        "finished": finished,
        "buckets": DURATION_BUCKETS,
        "durations": durations,
        "ingest": _ingest(q, carry),
        "heartbeats": q("""SELECT app_id, runner_id, epoch(last_heartbeat) FROM runner_state
                           WHERE last_heartbeat >= $r""", {"r": recent}).rows,
        "runners": [(app, state, runners.get((app, state), 0)) for app in apps for state in RUNNER_STATES],
        "anomalies": [(app, kind, found.get((app, kind), 0)) for app in apps for kind in KINDS],
        "anomaly_subjects": [(*s, n) for s, n in subjects.items()],
        "queue_depths": q("SELECT app_id, queue, arg_max(depth, ts) FROM queue_depths WHERE ts >= $r "
                          "GROUP BY ALL ORDER BY ALL", {"r": recent}).rows,
    }


def _by_status(q: Callable, recent: datetime) -> tuple[list, dict]:
    """(invocations by app and status, {app: its last record's time}): every status of every app with
    invocations, 0 included ("none RUNNING" is a value, not a gap). Counts from status_counts (a few rows)."""
    counts, last_seen = {}, {}
    for app, status, n, last in q("SELECT app_id, status, sum(n)::BIGINT, epoch(max(last_record)) FROM status_counts "
                                  "GROUP BY ALL").rows:   # fold-kept: store/status_counts.py
        counts[(app, status)] = n
        last_seen[app] = max(last_seen.get(app, 0.0), last or 0.0)
    by_status = [(app, status, counts.pop((app, status), 0)) for app in sorted({a for a, _ in counts})
                 for status in STATUSES]
    by_status += [(app, status, n) for (app, status), n in counts.items()]  # a status outside the model
    for app, last in q("""
            SELECT app_id, epoch(max(greatest(last_event, last_transition))) FROM runner_state GROUP BY ALL
            UNION ALL SELECT app_id, epoch(max(ts)) FROM log_records WHERE ts >= $r GROUP BY ALL
            UNION ALL SELECT app_id, epoch(max(ts)) FROM metric_points WHERE ts >= $r GROUP BY ALL
            UNION ALL SELECT app_id, epoch(max(coalesce(end_ts, start_ts))) FROM spans WHERE start_ts >= $r
                      GROUP BY ALL""", {"r": recent}).rows:
        if last is not None:
            last_seen[app] = max(last_seen.get(app, 0.0), last)
    return by_status, last_seen


def _transitions(q: Callable, carry: _Carry) -> list[tuple]:
    out = [(app, status, n + carry.plus("transitions", app, status, "")[0])
           for app, status, n in q("SELECT app_id, status, count(*) FROM transitions GROUP BY ALL").rows]
    return out + [(app, k1, n) for app, k1, _, n, _ in carry.left("transitions")]


def _finished(q: Callable, carry: _Carry) -> tuple[list, list]:
    """(finished invocations by app, task and status; duration histograms by app and task)."""
    cols = ", ".join(f"count(*) FILTER (WHERE d <= {b})" for b in DURATION_BUCKETS)
    finished, hist = [], {}
    for row in q(f"""SELECT app_id, coalesce(task_id, ''), status, {cols}, count(*), coalesce(sum(d), 0)::DOUBLE
                     FROM (SELECT app_id, task_id, status, {DURATION_SQL} AS d FROM invocation_state
                           WHERE status IN ({FINAL_SQL}))
                     GROUP BY ALL""").rows:
        app, task, status = row[0], row[1], row[2]
        counts, n, total = row[3:3 + len(DURATION_BUCKETS)], row[-2], row[-1]
        gone, gone_s = carry.plus("finished", app, task, status)
        finished.append((app, task, status, n + gone))
        h = hist.setdefault((app, task), [[0] * len(DURATION_BUCKETS), 0, 0.0])
        h[0] = [a + b for a, b in zip(h[0], counts)]
        h[1] += n + gone
        h[2] += total + gone_s
    for app, task, status, n, total in carry.left("finished"):
        finished.append((app, task, status, n))
        h = hist.setdefault((app, task), [[0] * len(DURATION_BUCKETS), 0, 0.0])
        h[1] += n
        h[2] += total
    for (app, task), h in hist.items():
        h[0] = [c + carry.plus("duration_le", app, task, str(b))[0] for c, b in zip(h[0], DURATION_BUCKETS)]
    return finished, [(app, task, h[0], h[1], h[2]) for (app, task), h in hist.items()]


def _ingest(q: Callable, carry: _Carry) -> list[tuple]:
    out = []
    for signal, transport, n, records in q("SELECT coalesce(signal, ''), coalesce(transport, ''), count(*), "
                                           "coalesce(sum(records), 0)::BIGINT FROM ingest_ledger GROUP BY ALL").rows:
        gone, gone_records = carry.plus("ingest", "", signal, transport)
        out.append((signal, transport, n + gone, records + int(gone_records)))
    return out + [(k1, k2, n, int(total)) for _, k1, k2, n, total in carry.left("ingest")]


def _runners(q: Callable, s: AnomalySettings, now: datetime) -> dict:
    """{(app, state): runner contexts}, state one of RUNNER_STATES."""
    live = Liveness(q, now - timedelta(seconds=s.runner_dead_after_s))
    runners: dict = {}
    for d in live.runners.values():
        state = "client" if live.role(d) == "client" else live.state(d)
        runners[(d["app_id"], state)] = runners.get((d["app_id"], state), 0) + 1
    return runners


def _anomalies(q: Callable, s: AnomalySettings, now: datetime, recent: datetime) -> tuple[dict, dict]:
    """({(app, kind): anomalies}, {(app, kind, task, runner): anomalies}), at most MAX_SUBJECTS subjects
    per app and kind, the most recent first; a runner silent since before `recent` is not named."""
    found: dict = {}
    subjects: dict = {}
    subjects_of: dict = {}  # (app, kind) -> its subjects exposed
    for a in find(q, s, now):  # most recent first
        key = (a["app_id"], a["kind"])
        found[key] = found.get(key, 0) + 1
        subject = (*key, a.get("task_id") or "", a.get("runner_id") or "")
        if a["kind"] == "runner_silent" and a["since"] is not None and a["since"] < recent:
            continue  # silent for over a day: still counted and listed, no longer named
        if subject in subjects or len(subjects_of.setdefault(key, set())) < MAX_SUBJECTS:
            subjects[subject] = subjects.get(subject, 0) + 1
            subjects_of[key].add(subject)
    return found, subjects
