"""The runner_state cache (store/sql/0004, 0006) in SQL: one row per runner context, as `rebuild` and a
lake's folder compute it from the log (the writer folds the same order in Python: store/runner_fold.py).
"""
from __future__ import annotations

# One row per runner context from runner events and the transitions it (or its worker) stamped.
# Each descriptive field (class, parent, host, pid) keeps its most specific report, whatever the order
# reports arrive in: a NULL says nothing; a placeholder (what a process sends for a context it does not
# hold: pynenc's `Runner`, an empty host, pid 0) loses against any real value; between reports of the same
# kind the latest (by ts) wins, and the larger value breaks a tie of the same ts. The order is one BIGINT
# key per report (`_key`), kept beside the value (`<field>_key`), so a fold compares two integers and a
# rebuild takes the max of {key, value}: the two agree.
PLACEHOLDERS = ("", "unknown", "none", "null", "?")
PLACEHOLDER_CLASSES = ("runner", "baserunner")
FIELDS = (("runner_class", "class_key"), ("parent_runner_id", "parent_key"), ("hostname", "hostname_key"),
          ("pid", "pid_key"))
FIELDS += (("thread_id", "thread_key"),)  # store/sql/0009
# Fields whose placeholder is a number not above 0 (the rest are text).
NUMBERS = ("pid", "thread_id")
# Transitions that say their context does the work (picked it up, ran it, or reported its outcome), not
# only submitted or cancelled it: `last_work` tells a runner from a client (query/anomalies.py).
WORK_STATUSES = ("PENDING", "PENDING_RECOVERY", "RUNNING", "RUNNING_RECOVERY", "PAUSED", "RETRY", "SUCCESS", "FAILED")
_WORK = "(" + ", ".join(f"'{s}'" for s in WORK_STATUSES) + ")"


def _key(col: str) -> str:
    """SQL: the order of one report of `col` at `ts`, a BIGINT: 2^62 for a real value (0 for a
    placeholder) plus its time in micros since 1970 (clamped to 0 .. 2^62 - 1: the log's times fit)."""
    if col in NUMBERS:
        real = f"({col} > 0)"
    else:
        generic = PLACEHOLDERS + (PLACEHOLDER_CLASSES if col == "runner_class" else ())
        # list_contains, not `… IN (…)`: DuckDB plans the IN form inside an expression some ten times
        # slower (~10 ms a field), which the writer would pay on every batch.
        real = f"NOT list_contains([{', '.join(repr(p) for p in generic)}], lower(trim({col})))"
    return f"(({real})::BIGINT * 4611686018427387904 + least(greatest(epoch_us(ts), 0), 4611686018427387903))"


def _literal(sql: str) -> str:
    """`sql` inside a template that is str.format-ed later (its STRUCT braces doubled)."""
    return sql.replace("{", "{{").replace("}", "}}")


RUNNERS = """
    SELECT app_id, runner_id, """ + ", ".join(f"{c}_best.v AS {c}, {c}_best.k AS {k}" for c, k in FIELDS) + """,
           first_seen, last_lifecycle, last_heartbeat, stopped_at, started_at, last_event, last_transition,
           first_heartbeat, heartbeats, last_work
    FROM (
    SELECT app_id, runner_id, """ + _literal(", ".join(
        f"max({{'k': {_key(c)}, 'v': {c}}}) FILTER (WHERE {c} IS NOT NULL) AS {c}_best" for c, _ in FIELDS)) + """,
           min(ts) FILTER (WHERE kind IS NOT NULL) AS first_seen,
           max(ts) FILTER (WHERE kind IS NOT NULL AND kind <> 'context') AS last_lifecycle,
           max(ts) FILTER (WHERE kind = 'heartbeat') AS last_heartbeat,
           max(ts) FILTER (WHERE kind = 'stopped') AS stopped_at,
           max(ts) FILTER (WHERE kind = 'started') AS started_at,
           max(ts) FILTER (WHERE kind IS NOT NULL) AS last_event,
           max(ts) FILTER (WHERE kind IS NULL) AS last_transition,
           min(ts) FILTER (WHERE kind = 'heartbeat') AS first_heartbeat,
           count(*) FILTER (WHERE kind = 'heartbeat') AS heartbeats,
           max(ts) FILTER (WHERE kind IS NULL AND status IN """ + _WORK + """) AS last_work
    FROM (SELECT app_id, runner_id, runner_class, parent_runner_id, hostname, pid, thread_id, ts, kind,
                 NULL AS status
          FROM {runner_events} WHERE {where}
          UNION ALL
          SELECT app_id, coalesce(worker_id, runner_id), NULL, NULL, NULL, NULL, NULL, ts, NULL, status
          FROM {transitions} WHERE {where} AND runner_id IS NOT NULL)
    GROUP BY app_id, runner_id)"""


def best_of(col: str) -> str:
    """SQL aggregate over runner_state rows (e.g. one runner id across apps): the most specific kept value
    of field `col` (runner_class, parent_runner_id, hostname, pid or thread_id), by the fold's own order."""
    key = dict(FIELDS)[col]
    return f"struct_extract(max({{'k': {key}, 'v': {col}}}) FILTER (WHERE {col} IS NOT NULL), 'v')"


# A batch's report replaces the kept one when its key is greater (or equal, with a greater value: the
# order of max({key, value}) in RUNNERS).
MERGE_RUNNERS = """
    MERGE INTO runner_state AS s USING ({aggregate}) AS e
    ON s.app_id = e.app_id AND s.runner_id = e.runner_id
    WHEN MATCHED THEN UPDATE SET
        """ + ",\n        ".join(
    f"{c} = CASE WHEN e.{k} > s.{k} OR s.{k} IS NULL OR (e.{k} = s.{k} AND e.{c} > s.{c}) THEN e.{c} "
    f"ELSE s.{c} END, {k} = greatest(e.{k}, s.{k})" for c, k in FIELDS) + """,
        first_seen = least(s.first_seen, e.first_seen), last_lifecycle = greatest(s.last_lifecycle, e.last_lifecycle),
        last_heartbeat = greatest(s.last_heartbeat, e.last_heartbeat),
        stopped_at = greatest(s.stopped_at, e.stopped_at), started_at = greatest(s.started_at, e.started_at),
        last_event = greatest(s.last_event, e.last_event),
        last_transition = greatest(s.last_transition, e.last_transition),
        first_heartbeat = least(s.first_heartbeat, e.first_heartbeat),
        heartbeats = coalesce(s.heartbeats, 0) + e.heartbeats,
        last_work = greatest(s.last_work, e.last_work)
    WHEN NOT MATCHED THEN INSERT BY NAME"""
