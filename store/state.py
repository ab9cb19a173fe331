"""The invocation_state cache (store/sql/0002_invocation_state.sql): folded in by the writer per batch,
rebuilt from the log on demand. Only this module writes it."""
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
           (count(*) FILTER (WHERE status = 'RUNNING'))::INTEGER AS attempts
    FROM (SELECT *, {_KEY} AS k FROM transitions WHERE {{where}}) GROUP BY app_id, invocation_id"""

# Later transitions win the status and runner; first-seen facts keep their first value; times widen.
_MERGE = """
    MERGE INTO invocation_state AS s USING ({aggregate}) AS e
    ON s.app_id = e.app_id AND s.invocation_id = e.invocation_id
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


def fold_batch(con, batch: int) -> None:
    """Fold one batch's transitions into the cache, in the transaction that appends them."""
    con.execute(_MERGE.format(aggregate=_AGGREGATE.format(where=f"batch = {int(batch)}")))


def rebuild(con) -> int:
    """Drop and recompute the cache from the log; returns the invocations it holds."""
    con.begin()
    try:
        con.execute("DELETE FROM invocation_state")
        con.execute("INSERT INTO invocation_state " + _AGGREGATE.format(where="true"))
        n = con.execute("SELECT count(*) FROM invocation_state").fetchone()[0]
        con.commit()
    except Exception:
        con.rollback()
        raise
    return n
