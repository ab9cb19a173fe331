"""The caches of the log: invocation_state (store/sql/0002, 0003) and runner_state (0004, 0005). The writer
folds each batch into them in the batch's own transaction; `rebuild` recomputes them from the log.
Only this module writes them."""
from __future__ import annotations

# = the status_order macro of views.sql, spelled out: the migration's backfill runs before the views exist.
_KEY = ("epoch_us(ts) * 4 + CASE status WHEN 'REGISTERED' THEN 0 WHEN 'PENDING' THEN 1 "
        "WHEN 'RUNNING' THEN 2 ELSE 3 END")

_AGGREGATE = f"""
    SELECT app_id, invocation_id, any_value(task_id) FILTER (WHERE task_id IS NOT NULL) AS task_id,
           arg_max(status, k) AS status, max(k) AS status_key, min(ts) AS created_at, max(ts) AS updated_at,
           min(ts) FILTER (WHERE status = 'RUNNING') AS started_at,
           any_value(parent_invocation_id) FILTER (WHERE parent_invocation_id IS NOT NULL) AS parent_invocation_id,
           any_value(parent_event_id) FILTER (WHERE parent_event_id IS NOT NULL) AS parent_event_id,
           any_value(workflow_id) FILTER (WHERE workflow_id IS NOT NULL) AS workflow_id,
           any_value(workflow_type) FILTER (WHERE workflow_type IS NOT NULL) AS workflow_type,
           arg_max(runner_id, k) AS runner_id, arg_max(worker_id, k) AS worker_id,
           (count(*) FILTER (WHERE status = 'RUNNING'))::INTEGER AS attempts,
           hash(invocation_id) AS id_hash
    FROM (SELECT *, {_KEY} AS k FROM {{transitions}} WHERE {{where}}) GROUP BY app_id, invocation_id"""

# Later transitions win the status and runner; first-seen facts keep their first value; times widen.
_MERGE = """
    MERGE INTO invocation_state AS s USING ({aggregate}) AS e
    ON s.id_hash = e.id_hash AND s.app_id = e.app_id AND s.invocation_id = e.invocation_id
    WHEN MATCHED THEN UPDATE SET
        task_id = coalesce(s.task_id, e.task_id),
        status = CASE WHEN e.status_key >= s.status_key THEN e.status ELSE s.status END,
        runner_id = CASE WHEN e.status_key >= s.status_key THEN e.runner_id ELSE s.runner_id END,
        worker_id = CASE WHEN e.status_key >= s.status_key THEN e.worker_id ELSE s.worker_id END,
        status_key = greatest(s.status_key, e.status_key),
        created_at = least(s.created_at, e.created_at),
        updated_at = greatest(s.updated_at, e.updated_at),
        started_at = coalesce(least(s.started_at, e.started_at), s.started_at, e.started_at),
        parent_invocation_id = coalesce(s.parent_invocation_id, e.parent_invocation_id),
        parent_event_id = coalesce(s.parent_event_id, e.parent_event_id),
        workflow_id = coalesce(s.workflow_id, e.workflow_id),
        workflow_type = coalesce(s.workflow_type, e.workflow_type),
        attempts = s.attempts + e.attempts
    WHEN NOT MATCHED THEN INSERT BY NAME"""


# One row per runner context from runner events and the transitions it (or its worker) stamped.
# Each descriptive field (class, parent, host, pid) keeps its most specific report, whatever the order
# reports arrive in: a NULL says nothing; a placeholder (what a process sends for a context it does not
# hold: pynenc's `Runner`, an empty host, pid 0) loses against any real value; between reports of the same
# kind the latest (by ts) wins, and the larger value breaks a tie of the same ts. The order is one BIGINT
# key per report (`_key`), kept beside the value (`<field>_key`), so a fold compares two integers and a
# rebuild takes the max of {key, value}: the two agree.
_PLACEHOLDERS = ("", "unknown", "none", "null", "?")
_PLACEHOLDER_CLASSES = ("runner", "baserunner")
_FIELDS = (("runner_class", "class_key"), ("parent_runner_id", "parent_key"), ("hostname", "hostname_key"),
           ("pid", "pid_key"))
# Transitions that say their context does the work (picked it up, ran it, or reported its outcome), not
# only submitted or cancelled it: `last_work` tells a runner from a client (query/anomalies.py).
_WORK = "('PENDING', 'PENDING_RECOVERY', 'RUNNING', 'RUNNING_RECOVERY', 'PAUSED', 'RETRY', 'SUCCESS', 'FAILED')"


def _key(col: str) -> str:
    """SQL: the order of one report of `col` at `ts`, a BIGINT: 2^62 for a real value (0 for a
    placeholder) plus its time in micros since 1970 (clamped to 0 .. 2^62 - 1: the log's times fit)."""
    if col == "pid":
        real = f"({col} > 0)"
    else:
        generic = _PLACEHOLDERS + (_PLACEHOLDER_CLASSES if col == "runner_class" else ())
        # list_contains, not `… IN (…)`: DuckDB plans the IN form inside an expression some ten times
        # slower (~10 ms a field), which the writer would pay on every batch.
        real = f"NOT list_contains([{', '.join(repr(p) for p in generic)}], lower(trim({col})))"
    return f"(({real})::BIGINT * 4611686018427387904 + least(greatest(epoch_us(ts), 0), 4611686018427387903))"


def _literal(sql: str) -> str:
    """`sql` inside a template that is str.format-ed later (its STRUCT braces doubled)."""
    return sql.replace("{", "{{").replace("}", "}}")


_RUNNERS = """
    SELECT app_id, runner_id, """ + ", ".join(f"{c}_best.v AS {c}, {c}_best.k AS {k}" for c, k in _FIELDS) + """,
           first_seen, last_lifecycle, last_heartbeat, stopped_at, started_at, last_event, last_transition,
           first_heartbeat, heartbeats, last_work
    FROM (
    SELECT app_id, runner_id, """ + _literal(", ".join(
        f"max({{'k': {_key(c)}, 'v': {c}}}) FILTER (WHERE {c} IS NOT NULL) AS {c}_best" for c, _ in _FIELDS)) + """,
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
    FROM (SELECT app_id, runner_id, runner_class, parent_runner_id, hostname, pid, ts, kind, NULL AS status
          FROM {runner_events} WHERE {where}
          UNION ALL
          SELECT app_id, coalesce(worker_id, runner_id), NULL, NULL, NULL, NULL, ts, NULL, status
          FROM {transitions} WHERE {where} AND runner_id IS NOT NULL)
    GROUP BY app_id, runner_id)"""


def best_of(col: str) -> str:
    """SQL aggregate over runner_state rows (e.g. one runner id across apps): the most specific kept value
    of field `col` (runner_class, parent_runner_id, hostname or pid), by the fold's own order."""
    key = dict(_FIELDS)[col]
    return f"struct_extract(max({{'k': {key}, 'v': {col}}}) FILTER (WHERE {col} IS NOT NULL), 'v')"


# A batch's report replaces the kept one when its key is greater (or equal, with a greater value: the
# order of max({key, value}) in _RUNNERS).
_MERGE_RUNNERS = """
    MERGE INTO runner_state AS s USING ({aggregate}) AS e
    ON s.app_id = e.app_id AND s.runner_id = e.runner_id
    WHEN MATCHED THEN UPDATE SET
        """ + ",\n        ".join(
    f"{c} = CASE WHEN e.{k} > s.{k} OR s.{k} IS NULL OR (e.{k} = s.{k} AND e.{c} > s.{c}) THEN e.{c} "
    f"ELSE s.{c} END, {k} = greatest(e.{k}, s.{k})" for c, k in _FIELDS) + """,
        first_seen = least(s.first_seen, e.first_seen), last_lifecycle = greatest(s.last_lifecycle, e.last_lifecycle),
        last_heartbeat = greatest(s.last_heartbeat, e.last_heartbeat),
        stopped_at = greatest(s.stopped_at, e.stopped_at), started_at = greatest(s.started_at, e.started_at),
        last_event = greatest(s.last_event, e.last_event),
        last_transition = greatest(s.last_transition, e.last_transition),
        first_heartbeat = least(s.first_heartbeat, e.first_heartbeat),
        heartbeats = coalesce(s.heartbeats, 0) + e.heartbeats,
        last_work = greatest(s.last_work, e.last_work)
    WHEN NOT MATCHED THEN INSERT BY NAME"""


def fold_batch(con, batch: int, tables: set) -> None:
    """Fold one batch into the caches, in the transaction that appends it; `tables` are the log
    tables the batch wrote to."""
    where = f"batch = {int(batch)}"
    if "transitions" in tables:
        con.execute(_MERGE.format(aggregate=_AGGREGATE.format(transitions="transitions", where=where)))
    if "transitions" in tables or "runner_events" in tables:
        con.execute(_MERGE_RUNNERS.format(aggregate=_RUNNERS.format(
            transitions="transitions", runner_events="runner_events", where=where)))


def fold_changes(con, catalog: str, start: int, end: int) -> None:
    """Fold the rows DuckLake snapshots start..end inserted into the caches (store/ducklake.py: the
    lake's writers only append; one folder keeps the caches)."""
    def changes(table):
        return (f"(SELECT * EXCLUDE (snapshot_id, rowid, change_type) FROM ducklake_table_changes("
                f"'{catalog}', 'main', '{table}', {int(start)}, {int(end)}) WHERE change_type = 'insert')")
    con.execute(_MERGE.format(aggregate=_AGGREGATE.format(transitions=changes("transitions"), where="true")))
    con.execute(_MERGE_RUNNERS.format(aggregate=_RUNNERS.format(
        transitions=changes("transitions"), runner_events=changes("runner_events"), where="true")))


# Migrations that create or reshape the cache: the store rebuilds it once they are applied.
REBUILT_BY = ("0002_invocation_state", "0003_state_id_hash", "0004_runner_state", "0005_runner_fields")

# A point lookup by id: `hash(?)` folds to a constant, compared with id_hash before the string.
BY_ID = "id_hash = hash(?::VARCHAR) AND invocation_id = ?"


def hash_is_current(con) -> bool:
    """False when stored id hashes disagree with this DuckDB's hash() (a new hash function)."""
    row = con.execute("SELECT bool_and(id_hash = hash(invocation_id)) FROM "
                      "(SELECT id_hash, invocation_id FROM invocation_state LIMIT 100)").fetchone()
    return row[0] is not False


def rebuild(con, *, also=None, checkpoint: bool = True) -> int:
    """Drop and recompute the caches from the log; returns the invocations it holds. `also(con)` runs in
    the same transaction (a lake records the snapshot the caches reflect)."""
    con.begin()
    try:
        con.execute("DELETE FROM invocation_state")
        # In creation order, as the writer's folds leave it: zone maps on created_at then let the newest
        # page of a list skip every older row group.
        con.execute("INSERT INTO invocation_state BY NAME SELECT * FROM ("
                    + _AGGREGATE.format(transitions="transitions", where="true") + ") ORDER BY created_at")
        con.execute("DELETE FROM runner_state")
        con.execute("INSERT INTO runner_state BY NAME " + _RUNNERS.format(transitions="transitions",
                                                                        runner_events="runner_events", where="true"))
        n = con.execute("SELECT count(*) FROM invocation_state").fetchone()[0]
        if also is not None:
            also(con)
        con.commit()
    except Exception:
        con.rollback()
        raise
    if checkpoint:
        con.execute("CHECKPOINT")  # the deleted rows' space goes back to the file now, not at some later checkpoint
    return n
