"""The counters /metrics derives from the log, and what retention removed from them (`metric_carry`).

/metrics computes its counters (status transitions, finished invocations, the task duration histogram,
stored OTLP requests and records) from the stored log, so they survive restarts. Retention removes whole
old days; without a carry those counters would drop, and Prometheus reads any decrease as a counter reset
(rate() would count the whole remaining total again). Before it deletes, retention adds what it removes
here, in the same transaction; /metrics adds the carry back.

Figures (`figure`, then what `k1` and `k2` hold):
- `transitions`: status, '' — transitions removed.
- `finished`: task id, final status — invocations removed that had reached that status; `total` holds
  the sum of their durations in seconds.
- `duration_le`: task id, a bucket bound of DURATION_BUCKETS as str() prints it — removed finished
  invocations whose duration was at most that bound.
- `ingest`: signal, transport (app_id '') — OTLP requests removed from the ingest ledger; `total` holds
  their records.
"""
from __future__ import annotations

from tasktrail.proto.status import FINAL_SQL

# Upper bounds (seconds) of the task duration histogram's buckets.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)

# An invocation's duration in seconds, over invocation_state: from its first RUNNING (else its creation)
# to its final status.
DURATION_SQL = "epoch(updated_at) - epoch(coalesce(started_at, created_at))"


def carry_statements(gone: str, ledger_gone: str) -> list[str]:
    """SQL that adds to metric_carry what a retention pass is about to delete: `gone` is a SQL condition
    on invocation_id (the invocations removed), `ledger_gone` one on ingest_ledger rows. The last
    statements fold the table back to one row per figure and key. Run them before the deletes, in the
    same transaction."""
    buckets = " UNION ALL ".join(f"SELECT '{b}' AS le, {b}::DOUBLE AS bound" for b in DURATION_BUCKETS)
    return [
        f"""INSERT INTO metric_carry SELECT 'transitions', app_id, status, '', count(*), 0
            FROM transitions WHERE {gone} GROUP BY ALL""",
        f"""INSERT INTO metric_carry SELECT 'finished', app_id, coalesce(task_id, ''), status, count(*),
                   coalesce(sum({DURATION_SQL}), 0)
            FROM invocation_state WHERE {gone} AND status IN ({FINAL_SQL}) GROUP BY ALL""",
        f"""INSERT INTO metric_carry SELECT 'duration_le', s.app_id, coalesce(s.task_id, ''), b.le,
                   count(*) FILTER (WHERE {DURATION_SQL} <= b.bound), 0
            FROM invocation_state s CROSS JOIN ({buckets}) b
            WHERE {gone} AND s.status IN ({FINAL_SQL}) GROUP BY ALL""",
        f"""INSERT INTO metric_carry SELECT 'ingest', '', signal, transport, count(*), coalesce(sum(records), 0)
            FROM ingest_ledger WHERE {ledger_gone} GROUP BY ALL""",
        """CREATE OR REPLACE TEMP TABLE _tt_carry AS
           SELECT figure, app_id, k1, k2, sum(n)::BIGINT AS n, sum(total) AS total FROM metric_carry GROUP BY ALL""",
        "DELETE FROM metric_carry",
        "INSERT INTO metric_carry SELECT * FROM _tt_carry",
        "DROP TABLE _tt_carry",
    ]


READ_SQL = "SELECT figure, app_id, k1, k2, n, total FROM metric_carry"
