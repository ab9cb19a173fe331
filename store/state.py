"""The invocation_state cache (store/sql/0002_invocation_state.sql): folded in by the writer per batch,
rebuilt from the log on demand. Only this module writes it."""
from __future__ import annotations

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
    ON CONFLICT (app_id, invocation_id) DO UPDATE SET
        task_id = coalesce(invocation_state.task_id, excluded.task_id),
        status = CASE WHEN excluded.status_key >= invocation_state.status_key
                      THEN excluded.status ELSE invocation_state.status END,
        runner_id = CASE WHEN excluded.status_key >= invocation_state.status_key
                         THEN excluded.runner_id ELSE invocation_state.runner_id END,
        worker_id = CASE WHEN excluded.status_key >= invocation_state.status_key
                         THEN excluded.worker_id ELSE invocation_state.worker_id END,
        status_key = greatest(invocation_state.status_key, excluded.status_key),
        created_at = least(invocation_state.created_at, excluded.created_at),
        updated_at = greatest(invocation_state.updated_at, excluded.updated_at),
        started_at = coalesce(least(invocation_state.started_at, excluded.started_at),
                              invocation_state.started_at, excluded.started_at),
        parent_invocation_id = coalesce(invocation_state.parent_invocation_id, excluded.parent_invocation_id),
        parent_event_id = coalesce(invocation_state.parent_event_id, excluded.parent_event_id),
        workflow_id = coalesce(invocation_state.workflow_id, excluded.workflow_id),
        workflow_type = coalesce(invocation_state.workflow_type, excluded.workflow_type),
        attempts = invocation_state.attempts + excluded.attempts"""


def fold_batch(con, batch: int) -> None:
    """Fold one committed-to-be batch's transitions into the cache (same transaction as the append)."""
    con.execute("INSERT INTO invocation_state " + _AGGREGATE.format(where=f"batch = {int(batch)}") + _MERGE)


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
