"""status_counts and app_log_span (store/sql/0014_overview_models): invocations per (app, task, status), and each app's
first and last log record, kept by whoever writes invocation_state and log_records, in the same transaction,
so the overview, the apps list and /metrics read a few rows instead of every invocation and log record.

- `apply(con, came, gone)`: with every write of invocation_state rows: `came` the rows written (an Arrow table
  of STATE_SCHEMA), `gone` the (app_id, invocation_id, task_id, status) those rows had before (none for a new
  invocation). Counts move by ±1 (a row at 0 is deleted); the times only widen.
- `widen_log_spans(con, tbl, known)`: with every append of log records by the writer; `widen_logs(con, src)` the
  same for a lake's folder (a relation with app_id and ts).
- `rebuild(con)`: both tables from invocation_state and log_records (a migration's backfill, `tasktrail
  rebuild`, retention after it removes rows); `covers(con)` tells a store whose counts disagree with
  invocation_state's row count (written by a version that did not keep them): the store rebuilds them at open.
"""
from __future__ import annotations

from typing import Iterable

import pyarrow as pa

from . import open_invocations
from .transaction import in_transaction

# The deltas of one write, summed per (app, task, status): a few rows, bound as VALUES parameters (2 ms a batch),
# or past _BOUND_ROWS registered as Arrow (binding costs ~0.2-0.4 ms a row: thousands of distinct tasks in a batch
# would take seconds). A row whose count falls to 0 is deleted after (DuckLake's MERGE takes one UPDATE or DELETE
# action): the invocations it counted are counted elsewhere, with raw ranges at least as wide and their current
# created_at, so no reader loses a bound.
_MERGE_COUNTS = """
    MERGE INTO status_counts AS c USING ({source}) AS e
    ON c.app_id = e.app_id AND c.task_id IS NOT DISTINCT FROM e.task_id AND c.status = e.status
    WHEN MATCHED THEN UPDATE SET n = c.n + e.d, first_record = least(c.first_record, e.f),
                                 last_record = greatest(c.last_record, e.r),
                                 last_created = greatest(c.last_created, e.l)
    WHEN NOT MATCHED THEN INSERT (app_id, task_id, status, n, first_record, last_record, last_created)
                          VALUES (e.app_id, e.task_id, e.status, e.d, e.f, e.r, e.l)"""
_NAMES = ("app_id", "task_id", "status", "d", "f", "r", "l")
_VALUES = "SELECT * FROM (VALUES {values}) AS v(" + ", ".join(_NAMES) + ")"
_VALUE = "(?::VARCHAR, ?::VARCHAR, ?::VARCHAR, ?::BIGINT, ?::TIMESTAMP, ?::TIMESTAMP, ?::TIMESTAMP)"
_BOUND_ROWS = 64
_DELTA_SCHEMA = pa.schema([("app_id", pa.string()), ("task_id", pa.string()), ("status", pa.string()),
                           ("d", pa.int64()), ("f", pa.timestamp("us")), ("r", pa.timestamp("us")),
                           ("l", pa.timestamp("us"))])

_MERGE_LOGS = """
    MERGE INTO app_log_span AS s USING (SELECT app_id, min(ts) AS lo, max(ts) AS hi FROM {src} GROUP BY app_id) AS e
    ON s.app_id = e.app_id
    WHEN MATCHED THEN UPDATE SET first_ts = least(s.first_ts, e.lo), last_ts = greatest(s.last_ts, e.hi)
    WHEN NOT MATCHED THEN INSERT (app_id, first_ts, last_ts) VALUES (e.app_id, e.lo, e.hi)"""


def apply(con, came: pa.Table, gone: Iterable[tuple] = ()) -> None:
    """Count the invocation_state rows of `came` (just written: an Arrow table of STATE_SCHEMA) and uncount `gone`,
    the (app_id, invocation_id, task_id, status) the updated rows had before, in the caller's transaction;
    open_invocations follows them. The deltas are summed here and merged as one statement (a MERGE grouping
    the registered rows in SQL cost 10-14 ms a batch, this 2)."""
    gone = list(gone)
    rows = _deltas(came, gone)
    if not rows:
        return
    if len(rows) <= _BOUND_ROWS:
        con.execute(_MERGE_COUNTS.format(source=_VALUES.format(values=", ".join([_VALUE] * len(rows)))),
                    [x for row in rows for x in row])
    else:
        con.register("tt_count_deltas", pa.Table.from_arrays(
            [pa.array(col, type=f.type) for col, f in zip(zip(*rows), _DELTA_SCHEMA)], schema=_DELTA_SCHEMA))
        try:
            con.execute(_MERGE_COUNTS.format(source="SELECT * FROM tt_count_deltas"))
        finally:
            con.unregister("tt_count_deltas")
    if any(row[3] < 0 for row in rows):
        con.execute("DELETE FROM status_counts WHERE n = 0")
    open_invocations.apply(con, came, gone)


def _deltas(came: pa.Table, gone: list) -> list[tuple]:
    """(app_id, task_id, status, ±count, least first_ts, greatest last_ts, greatest created_at) per key that
    this write moves."""
    deltas: dict[tuple, list] = {}
    per = came.group_by(["app_id", "task_id", "status"], use_threads=False).aggregate(
        [("invocation_id", "count"), ("first_ts", "min"), ("last_ts", "max"), ("created_at", "max")]).to_pydict()
    for a, t, st, n, f, r, lc in zip(per["app_id"], per["task_id"], per["status"], per["invocation_id_count"],
                                     per["first_ts_min"], per["last_ts_max"], per["created_at_max"]):
        deltas[(a, t, st)] = [n, f, r, lc]
    for a, _, t, st in gone:
        deltas.setdefault((a, t, st), [0, None, None, None])[0] -= 1
    return [(*key, *d) for key, d in deltas.items() if d[0] or d[1] is not None]


def widen_logs(con, src: str) -> None:
    """Widen each app's log span to the log records of relation `src` (app_id, ts), in the caller's transaction
    (a lake's folder: the records its snapshots inserted)."""
    con.execute(_MERGE_LOGS.format(src=src))


def widen_log_spans(con, tbl: pa.Table, known: dict) -> dict:
    """Widen each app's log span to the log records of `tbl` (an Arrow table with app_id and ts), in the caller's
    transaction (the writer's batch). `known`: {app: (first, last)} as stored, the writer's memory: an app whose
    records lie inside it is not written; the others by one UPDATE each (0.7 ms; a MERGE over the registered rows
    cost 2 ms a batch). Returns {app: (first, last)} as now written, for `known` once the batch commits (clear
    `known` whenever the spans are rebuilt)."""
    per = tbl.group_by("app_id", use_threads=False).aggregate([("ts", "min"), ("ts", "max")]).to_pydict()
    written = {}
    for app, lo, hi in zip(per["app_id"], per["ts_min"], per["ts_max"]):
        held = known.get(app)
        if held is not None and held[0] <= lo and hi <= held[1]:
            continue
        span = {"app": app, "lo": lo, "hi": hi}
        row = con.execute("UPDATE app_log_span SET first_ts = least(first_ts, $lo), last_ts = greatest(last_ts, $hi) "
                          "WHERE app_id = $app RETURNING first_ts, last_ts", span).fetchone()
        if row is None:
            con.execute("INSERT INTO app_log_span VALUES ($app, $lo, $hi)", span)
            row = (lo, hi)
        written[app] = tuple(row)
    return written


def rebuild(con) -> int:
    """Recompute both tables (in the caller's transaction, if any); returns the invocations counted."""
    con.execute("DELETE FROM status_counts")
    con.execute("""INSERT INTO status_counts SELECT app_id, task_id, status, count(*), min(first_ts), max(last_ts),
                   max(created_at) FROM invocation_state GROUP BY ALL""")
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
    in_transaction(con, lambda: rebuild(con))
