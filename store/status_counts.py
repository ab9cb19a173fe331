"""status_counts and app_log_span (store/sql/0014_overview_models): invocations per (app, task, status), and each app's
first and last log record, kept by whoever writes invocation_state and log_records, in the same transaction,
so the overview, the apps list and /metrics read a few rows instead of every invocation and log record.

- `apply(con, came, gone)`: with every write of invocation_state rows: `came` the rows written (an Arrow table
  of STATE_SCHEMA), `gone` the (app_id, invocation_id, task_id, status) those rows had before (none for a new
  invocation). Counts move by ±1; the times only widen.
- `widen_logs(con, src)`: with every append of log records (a relation with app_id and ts).
- `rebuild(con)`: both tables from invocation_state and log_records (a migration's backfill, `tasktrail
  rebuild`, retention after it removes rows); `covers(con)` tells a store whose counts disagree with
  invocation_state's row count (written by a version that did not keep them): the store rebuilds them at open.

Rows whose count fell to 0 stay until the next rebuild: readers take n > 0.
"""
from __future__ import annotations

from typing import Iterable

import pyarrow as pa

from . import open_invocations

_MERGE_COUNTS = """
    MERGE INTO status_counts AS c USING (SELECT * FROM (VALUES {values}) AS v(app_id, task_id, status, d, f, u, r, l)) AS e
    ON c.app_id = e.app_id AND c.task_id IS NOT DISTINCT FROM e.task_id AND c.status = e.status
    WHEN MATCHED THEN UPDATE SET n = c.n + e.d, first_created = least(c.first_created, e.f),
                                 last_updated = greatest(c.last_updated, e.u), last_record = greatest(c.last_record, e.r),
                                 last_created = greatest(c.last_created, e.l)
    WHEN NOT MATCHED THEN INSERT (app_id, task_id, status, n, first_created, last_updated, last_record, last_created)
                          VALUES (e.app_id, e.task_id, e.status, e.d, e.f, e.u, e.r, e.l)"""
_VALUE = "(?::VARCHAR, ?::VARCHAR, ?::VARCHAR, ?::BIGINT, ?::TIMESTAMP, ?::TIMESTAMP, ?::TIMESTAMP, ?::TIMESTAMP)"

_MERGE_LOGS = """
    MERGE INTO app_log_span AS s USING (SELECT app_id, min(ts) AS lo, max(ts) AS hi FROM {src} GROUP BY app_id) AS e
    ON s.app_id = e.app_id
    WHEN MATCHED THEN UPDATE SET first_ts = least(s.first_ts, e.lo), last_ts = greatest(s.last_ts, e.hi)
    WHEN NOT MATCHED THEN INSERT (app_id, first_ts, last_ts) VALUES (e.app_id, e.lo, e.hi)"""


def apply(con, came: pa.Table, gone: Iterable[tuple] = ()) -> None:
    """Count the invocation_state rows of `came` (just written: an Arrow table of STATE_SCHEMA) and uncount `gone`,
    the (app_id, invocation_id, task_id, status) the updated rows had before, in the caller's transaction;
    open_invocations follows them. The deltas are summed here and merged as one statement of a few rows
    (a MERGE over the registered rows cost 10-14 ms a batch, this 2)."""
    gone = list(gone)
    deltas: dict[tuple, list] = {}
    per = came.group_by(["app_id", "task_id", "status"], use_threads=False).aggregate(
        [("invocation_id", "count"), ("created_at", "min"), ("updated_at", "max"), ("last_ts", "max"),
         ("created_at", "max")]).to_pydict()
    for a, t, st, n, f, u, r, lc in zip(per["app_id"], per["task_id"], per["status"], per["invocation_id_count"],
                                        per["created_at_min"], per["updated_at_max"], per["last_ts_max"],
                                        per["created_at_max"]):
        deltas[(a, t, st)] = [n, f, u, r, lc]
    for a, _, t, st in gone:
        deltas.setdefault((a, t, st), [0, None, None, None, None])[0] -= 1
    rows = [(*key, *d) for key, d in deltas.items() if d[0] or d[1] is not None]
    if rows:
        con.execute(_MERGE_COUNTS.format(values=", ".join([_VALUE] * len(rows))), [x for row in rows for x in row])
    open_invocations.apply(con, came, gone)


def widen_logs(con, src: str) -> None:
    """Widen each app's log span to the log records of relation `src` (app_id, ts), in the caller's transaction."""
    con.execute(_MERGE_LOGS.format(src=src))


def rebuild(con) -> int:
    """Recompute both tables (in the caller's transaction, if any); returns the invocations counted."""
    con.execute("DELETE FROM status_counts")
    con.execute("""INSERT INTO status_counts SELECT app_id, task_id, status, count(*), min(created_at), max(updated_at),
                   max(last_ts), max(created_at) FROM invocation_state GROUP BY ALL""")
    con.execute("DELETE FROM app_log_span")
    con.execute("INSERT INTO app_log_span SELECT app_id, min(ts), max(ts) FROM log_records GROUP BY app_id")
    open_invocations.rebuild(con)
    return con.execute("SELECT coalesce(sum(n), 0) FROM status_counts").fetchone()[0]


def covers(con) -> bool:
    """Whether the counts add up to invocation_state's rows, and open_invocations to the counts of statuses not
    final (metadata counts and a few rows: no scan)."""
    row = con.execute("SELECT (SELECT count(*) FROM invocation_state), "
                      "(SELECT coalesce(sum(n), 0) FROM status_counts)").fetchone()
    held, counted = open_invocations.open_counted(con)
    return row[0] == row[1] and held == counted


def rebuild_in_transaction(con) -> None:
    """`rebuild` in a transaction of its own: all of it or none."""
    con.begin()
    try:
        rebuild(con)
        con.commit()
    except Exception:
        con.rollback()
        raise
