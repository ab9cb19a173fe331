"""open_invocations (store/sql/0014): a copy of the invocation_state rows whose status is not final (the work
registered, waiting, running, paused or retrying), kept by whoever writes invocation_state, in the same
transaction (store/invocation_state.py write_state), so runners' running work, the anomaly checks and /ops
read the few rows in flight instead of filtering every invocation by status. A read model of invocation_state:
`rebuild` recomputes it (with status_counts, which `covers` checks it against).
"""
from __future__ import annotations

from tasktrail.proto.status import FINAL_SQL

COLUMNS = "app_id, invocation_id, task_id, status, created_at, updated_at, started_at, runner_id, worker_id"


def apply(con, came: str, gone: str) -> None:
    """Drop the open rows of the invocations in relation `gone` (app_id, invocation_id, status: what they were
    before, only those not final are looked for) and copy those of relation `came` (state rows just written)
    whose status is not final, in the caller's transaction."""
    con.execute(f"""DELETE FROM open_invocations o WHERE EXISTS (
                        SELECT 1 FROM {gone} g WHERE g.status NOT IN ({FINAL_SQL})
                        AND g.app_id = o.app_id AND g.invocation_id = o.invocation_id)""")
    con.execute(f"INSERT INTO open_invocations SELECT {COLUMNS} FROM {came} WHERE status NOT IN ({FINAL_SQL})")


def rebuild(con) -> None:
    """Recompute the table from invocation_state (in the caller's transaction, if any)."""
    con.execute("DELETE FROM open_invocations")
    con.execute(f"INSERT INTO open_invocations SELECT {COLUMNS} FROM invocation_state WHERE status NOT IN ({FINAL_SQL})")


def open_counted(con) -> tuple[int, int]:
    """(rows held, invocations status_counts counts as not final): equal in a consistent store."""
    return con.execute(f"""SELECT (SELECT count(*) FROM open_invocations),
                                  (SELECT coalesce(sum(n), 0) FROM status_counts WHERE status NOT IN ({FINAL_SQL}))
                        """).fetchone()
