"""Retention: remove what is older than the window, whole invocations at a time, on a connection of
its own so the writer keeps committing meanwhile (appends never conflict with these deletes).

- An invocation goes when its last transition is older than `cutoff`, with its spans and log lines;
  failed ones stay until `failed_cutoff`. Other records (runner events, decisions, executions, events,
  trigger runs, metric points, unlinked spans and logs, the ingest ledger) go by their own time.
- Nothing goes before the window has passed since it was *received* as well: a row is removed only
  when its own time is older than the cutoff AND the batch that stored it was committed before the
  cutoff (the ingest ledger's `received_at`). A record acknowledged today with an old but plausible
  time (a backfill, a replay, a clock set to 2003) is kept for the whole window, never removed by the
  next pass at start. Batch numbers only grow (one more per commit on a file; time-based on a lake),
  so "committed before the cutoff" is `batch < the first batch received after it`.
- Cutoffs are whole UTC days, so the log loses one day at a time, never a part of one.
- Each invocation keeps at most `max_logs_per_invocation` log lines (the first ones); the rest are
  removed and one marker line (`event_name = 'tasktrail.truncated'`) says how many and why.
- What goes is first added to `metric_carry` (store/carry.py), so the counters /metrics derives from the
  log never go down.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from . import status_counts
from .carry import carry_statements
from .transaction import rollback

TRUNCATED = "tasktrail.truncated"


@dataclass(frozen=True)
class RetentionPolicy:
    retention_days: float = 90
    keep_failed_days: float = 180
    max_logs_per_invocation: int = 10_000

    def cutoffs(self, now: datetime) -> tuple[datetime, datetime]:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return (day - timedelta(days=self.retention_days), day - timedelta(days=max(self.keep_failed_days,
                                                                                      self.retention_days)))


@dataclass
class RetentionReport:
    cutoff: datetime
    failed_cutoff: datetime
    invocations: int = 0
    rows: int = 0
    truncated_invocations: int = 0

    @property
    def removed(self) -> bool:
        """Whether the pass removed or truncated anything (else the counts need no recount)."""
        return bool(self.invocations or self.rows or self.truncated_invocations)


def apply(con, policy: RetentionPolicy, now: datetime, recount: bool = True) -> RetentionReport:
    """Run one retention pass on `con` (a cursor of the store) in one transaction; returns what it removed.
    `recount`: recompute status_counts in that transaction too (else the caller does it where the writer is
    not writing them at the same time: store/duckdb.py retain)."""
    cutoff, failed_cutoff = policy.cutoffs(now)
    rep = RetentionReport(cutoff, failed_cutoff)
    con.begin()
    try:
        # The first batch received after the cutoff: rows of it or of any later batch stay.
        young = con.execute("SELECT min(batch) FROM ingest_ledger WHERE received_at >= $cutoff",
                            {"cutoff": cutoff}).fetchone()[0]
        young = young if young is not None else 2**62
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _tt_gone AS
            SELECT invocation_id FROM transitions GROUP BY invocation_id
            HAVING max(ts) < $cutoff AND max(batch) < $young
               AND NOT (arg_max(status, status_order(ts, status)) = 'FAILED' AND max(ts) >= $failed)""",
                    {"cutoff": cutoff, "failed": failed_cutoff, "young": young})
        rep.invocations = con.execute("SELECT count(*) FROM _tt_gone").fetchone()[0]
        linked = "invocation_id IN (SELECT invocation_id FROM _tt_gone)"
        kept = "invocation_id IS NOT NULL AND invocation_id NOT IN (SELECT invocation_id FROM _tt_gone)"
        for sql in carry_statements(linked, "received_at < $cutoff"):
            con.execute(sql, {"cutoff": cutoff} if "$cutoff" in sql else None)
        statements = [
            f"DELETE FROM transitions WHERE {linked}",
            f"DELETE FROM invocation_state WHERE {linked}",
            f"DELETE FROM invocation_calls WHERE {linked}",
            f"DELETE FROM spans WHERE start_ts < $cutoff AND batch < $young AND NOT ({kept})",
            f"DELETE FROM log_records WHERE ts < $cutoff AND batch < $young AND NOT ({kept})",
            "DELETE FROM runner_events WHERE ts < $cutoff AND batch < $young AND kind <> 'context'",
            "DELETE FROM atomic_decisions WHERE ts < $cutoff AND batch < $young",
            "DELETE FROM atomic_executions WHERE ts < $cutoff AND batch < $young",
            "DELETE FROM event_records WHERE ts < $cutoff AND batch < $young",
            "DELETE FROM trigger_runs WHERE ts < $cutoff AND batch < $young",
            "DELETE FROM metric_points WHERE ts < $cutoff AND batch < $young",
            # a definition's latest report holds whatever its age; older reports of it go with the window
            """DELETE FROM definitions WHERE ts < $cutoff AND batch < $young AND EXISTS (
                   SELECT 1 FROM definitions AS later WHERE later.app_id = definitions.app_id
                   AND later.kind = definitions.kind AND later.subject_id = definitions.subject_id
                   AND later.ts > definitions.ts)""",
            "DELETE FROM queue_depths WHERE ts < $cutoff AND batch < $young",
            # issue 19: whole commands, once their last record is past the window
            "DELETE FROM command_records WHERE command_id IN (SELECT command_id FROM command_records GROUP BY "
            "command_id HAVING max(ts) < $cutoff AND max(batch) < $young)",
            "DELETE FROM ingest_ledger WHERE received_at < $cutoff",
        ]
        for sql in statements:
            params = {k: v for k, v in (("cutoff", cutoff), ("young", young)) if f"${k}" in sql}
            rep.rows += con.execute(sql, params).fetchone()[0]
        rep.truncated_invocations = _cap_logs(con, policy.max_logs_per_invocation)
        if recount and rep.removed:
            status_counts.rebuild(con)   # what was removed is uncounted (one GROUP BY, as rare as retention)
        con.execute("DROP TABLE _tt_gone")
        con.commit()
    except Exception:
        rollback(con)
        raise
    return rep


def _cap_logs(con, cap: int) -> int:
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _tt_over AS
        SELECT invocation_id, rowid AS rid, ts FROM (
            SELECT invocation_id, rowid, ts,
                   row_number() OVER (PARTITION BY invocation_id ORDER BY ts, rowid) AS n
            FROM log_records WHERE invocation_id IS NOT NULL AND coalesce(event_name, '') <> '{TRUNCATED}'
              AND invocation_id IN (SELECT invocation_id FROM log_records WHERE invocation_id IS NOT NULL
                                    GROUP BY invocation_id HAVING count(*) > $cap))
        WHERE n > $cap""", {"cap": cap})
    n = con.execute("SELECT count(DISTINCT invocation_id) FROM _tt_over").fetchone()[0]
    if n:
        con.execute(f"""
            INSERT INTO log_records (batch, ts, observed_ts, app_id, resource_id, severity_number, severity_text, body,
                                     event_name, trace_id, span_id, scope_name, runner_id, worker_id, invocation_id,
                                     task_id, attributes)
            SELECT 0, min(o.ts), NULL, any_value(l.app_id), NULL, 13, 'WARN',
                   '[tasktrail] ' || count(*) || ' log lines of this invocation were removed: it keeps its first '
                   || $cap || ' (--max-logs-per-invocation)', '{TRUNCATED}', NULL, NULL, 'tasktrail', NULL, NULL,
                   o.invocation_id, any_value(l.task_id), NULL
            FROM _tt_over o JOIN log_records l ON l.rowid = o.rid GROUP BY o.invocation_id""", {"cap": cap})
        con.execute("DELETE FROM log_records WHERE rowid IN (SELECT rid FROM _tt_over)")
    con.execute("DROP TABLE _tt_over")
    return n
