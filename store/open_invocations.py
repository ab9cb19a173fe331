"""open_invocations (store/sql/0014): a copy of the invocation_state rows whose status is not final (the work
registered, waiting, running, paused or retrying; every column but id_hash), kept by whoever writes
invocation_state, in the same transaction (store/invocation_state.py write_state), so runners' running work, the
anomaly checks, /ops and lists filtered by statuses not final read the rows in flight instead of filtering every
invocation by status. A read model of invocation_state: `rebuild` recomputes it (with status_counts, which
`covers` checks it against).
"""
from __future__ import annotations

from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc

from tasktrail.proto.status import FINAL_SQL, FINAL_STATUSES

_FINAL = pa.array(sorted(FINAL_STATUSES), pa.string())


def apply(con, came: pa.Table, gone: Iterable[tuple]) -> None:
    """Drop the open rows of the invocations `gone` ((app_id, invocation_id, task_id, status) as they were before
    this write: only those not final are looked for) and copy the rows of `came` (state rows just written, an
    Arrow table of STATE_SCHEMA) whose status is not final, in the caller's transaction."""
    left = [(a, i) for a, i, _, st in gone if st not in FINAL_STATUSES]
    if left:
        con.register("tt_open_gone", pa.table({"app_id": pa.array([a for a, _ in left], pa.string()),
                                               "invocation_id": pa.array([i for _, i in left], pa.string())}))
        try:
            con.execute("DELETE FROM open_invocations o USING tt_open_gone g "
                        "WHERE o.invocation_id = g.invocation_id AND o.app_id = g.app_id")
        finally:
            con.unregister("tt_open_gone")
    opened = came.filter(pc.invert(pc.is_in(came.column("status"), value_set=_FINAL)))
    if opened.num_rows:
        con.register("tt_open_came", opened)
        try:
            con.execute("INSERT INTO open_invocations BY NAME SELECT * FROM tt_open_came")
        finally:
            con.unregister("tt_open_came")


def rebuild(con) -> None:
    """Recompute the table from invocation_state (in the caller's transaction, if any)."""
    con.execute("DELETE FROM open_invocations")
    con.execute("INSERT INTO open_invocations BY NAME SELECT * EXCLUDE (id_hash) FROM invocation_state "
                f"WHERE status NOT IN ({FINAL_SQL})")


def open_counted(con) -> tuple[int, int]:
    """(rows held, invocations status_counts counts as not final): equal in a consistent store."""
    return con.execute(f"""SELECT (SELECT count(*) FROM open_invocations),
                                  (SELECT coalesce(sum(n), 0) FROM status_counts WHERE status NOT IN ({FINAL_SQL}))
                        """).fetchone()
