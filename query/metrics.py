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
from tasktrail.store.carry import DURATION_BUCKETS, DURATION_SQL, READ_SQL as CARRY_SQL

from .anomalies import KINDS, AnomalySettings, Liveness, find, stopped

# Anomaly subjects (task, runner) exposed per app and kind, the most recent first; tasktrail_anomalies
# counts them all.
MAX_SUBJECTS = 50
# Runners whose last heartbeat (or, silent ones, last record) is older than this are not named (a fleet
# that restarts often would otherwise leave one series per process it ever ran); records from an app
# within it count for its last-record time beyond the invocation and runner caches.
RECENT_S = 86_400.0
RUNNER_STATES = ("alive", "stopped", "silent", "client")


def snapshot(q: Callable, anomaly_settings: AnomalySettings, now: datetime) -> dict:
    """`q(sql, params)` runs a read and returns a Result; `now` is naive UTC. Returns a dict of lists of
    tuples, one per family (keys below), label values first and values last; times are Unix seconds."""
    carry: dict = {}
    for figure, app, k1, k2, n, total in q(CARRY_SQL).rows:
        carry[(figure, app, k1, k2)] = (n, total)

    def plus(figure: str, app: str, k1: str, k2: str) -> tuple:
        return carry.pop((figure, app, k1, k2), (0, 0.0))

    counts, last_seen = {}, {}
    for app, status, n, last in q("SELECT app_id, status, count(*), epoch(max(last_ts)) FROM invocation_state "
                                  "GROUP BY ALL").rows:
        counts[(app, status)] = n
        last_seen[app] = max(last_seen.get(app, 0.0), last or 0.0)
    # Every status of every app with invocations, 0 included: "none RUNNING" is a value, not a gap.
    by_status = [(app, status, counts.pop((app, status), 0)) for app in sorted({a for a, _ in counts})
                 for status in STATUSES]
    by_status += [(app, status, n) for (app, status), n in counts.items()]  # a status outside the model
    recent = now - timedelta(seconds=RECENT_S)
    for app, last in q("""
            SELECT app_id, epoch(max(greatest(last_event, last_transition))) FROM runner_state GROUP BY ALL
            UNION ALL SELECT app_id, epoch(max(ts)) FROM log_records WHERE ts >= $r GROUP BY ALL
            UNION ALL SELECT app_id, epoch(max(ts)) FROM metric_points WHERE ts >= $r GROUP BY ALL
            UNION ALL SELECT app_id, epoch(max(coalesce(end_ts, start_ts))) FROM spans WHERE start_ts >= $r
                      GROUP BY ALL""", {"r": recent}).rows:
        if last is not None:
            last_seen[app] = max(last_seen.get(app, 0.0), last)

    transitions = []
    for app, status, n in q("SELECT app_id, status, count(*) FROM transitions GROUP BY ALL").rows:
        transitions.append((app, status, n + plus("transitions", app, status, "")[0]))
    transitions += [(app, k1, n) for (fig, app, k1, _), (n, _) in list(carry.items()) if fig == "transitions"]

    cols = ", ".join(f"count(*) FILTER (WHERE d <= {b})" for b in DURATION_BUCKETS)
    finished, hist = [], {}
    for row in q(f"""SELECT app_id, coalesce(task_id, ''), status, {cols}, count(*), coalesce(sum(d), 0)::DOUBLE
                     FROM (SELECT app_id, task_id, status, {DURATION_SQL} AS d FROM invocation_state
                           WHERE status IN ({FINAL_SQL}))
                     GROUP BY ALL""").rows:
        app, task, status = row[0], row[1], row[2]
        counts, n, total = row[3:3 + len(DURATION_BUCKETS)], row[-2], row[-1]
        gone, gone_s = plus("finished", app, task, status)
        finished.append((app, task, status, n + gone))
        h = hist.setdefault((app, task), [[0] * len(DURATION_BUCKETS), 0, 0.0])
        h[0] = [a + b for a, b in zip(h[0], counts)]
        h[1] += n + gone
        h[2] += total + gone_s
    for (fig, app, task, status), (n, total) in list(carry.items()):
        if fig == "finished":
            finished.append((app, task, status, n))
            h = hist.setdefault((app, task), [[0] * len(DURATION_BUCKETS), 0, 0.0])
            h[1] += n
            h[2] += total
    for (app, task), h in hist.items():
        h[0] = [c + plus("duration_le", app, task, str(b))[0] for c, b in zip(h[0], DURATION_BUCKETS)]
    durations = [(app, task, h[0], h[1], h[2]) for (app, task), h in hist.items()]

    ingest = []
    for signal, transport, n, records in q("SELECT coalesce(signal, ''), coalesce(transport, ''), count(*), "
                                           "coalesce(sum(records), 0)::BIGINT FROM ingest_ledger GROUP BY ALL").rows:
        gone, gone_records = plus("ingest", "", signal, transport)
        ingest.append((signal, transport, n + gone, records + int(gone_records)))
    ingest += [(k1, k2, n, int(total)) for (fig, _, k1, k2), (n, total) in carry.items() if fig == "ingest"]

    heartbeats = q("""SELECT app_id, runner_id, epoch(last_heartbeat) FROM runner_state
                      WHERE last_heartbeat >= $r""", {"r": recent}).rows

    live = Liveness(q, now - timedelta(seconds=anomaly_settings.runner_dead_after_s))
    runners: dict = {}
    for d in live.runners.values():
        state = ("client" if live.role(d) == "client" else "alive" if live.alive(d)
                 else "stopped" if stopped(d) else "silent")
        runners[(d["app_id"], state)] = runners.get((d["app_id"], state), 0) + 1

    found: dict = {}      # (app, kind) -> anomalies
    subjects: dict = {}   # (app, kind, task, runner) -> anomalies
    subjects_of: dict = {}  # (app, kind) -> its subjects exposed
    for a in find(q, anomaly_settings, now):  # most recent first
        key = (a["app_id"], a["kind"])
        found[key] = found.get(key, 0) + 1
        subject = (*key, a.get("task_id") or "", a.get("runner_id") or "")
        if a["kind"] == "runner_silent" and a["since"] is not None and a["since"] < recent:
            continue  # silent for over a day: still counted and listed, no longer named
        if subject in subjects or len(subjects_of.setdefault(key, set())) < MAX_SUBJECTS:
            subjects[subject] = subjects.get(subject, 0) + 1
            subjects_of[key].add(subject)
    apps = sorted(set(last_seen) | {app for app, _ in runners} | {app for app, _ in found})
    return {
        "invocations_by_status": by_status,
        "app_last_record": sorted(last_seen.items()),
        "transitions": transitions,
        "finished": finished,
        "buckets": DURATION_BUCKETS,
        "durations": durations,
        "ingest": ingest,
        "heartbeats": heartbeats,
        "runners": [(app, state, runners.get((app, state), 0)) for app in apps for state in RUNNER_STATES],
        "anomalies": [(app, kind, found.get((app, kind), 0)) for app in apps for kind in KINDS],
        "anomaly_subjects": [(*s, n) for s, n in subjects.items()],
    }
