-- 0014_overview_models: read models of invocation_state and log_records that the overview, the apps list, /metrics,
-- the runners' running work and the anomaly checks read instead of every invocation, kept by whoever writes those
-- tables, in the same transaction (store/status_counts.py, store/open_invocations.py); `rebuild` recomputes them.
-- status_counts: invocations per (app, task, status) (at 10M invocations the GROUP BY it replaces cost 110-190 ms); a
-- row is gone when its count falls to 0. first_record and last_record: the least first_ts and greatest last_ts of the
-- invocations counted there (an invocation's raw record range only widens, so over an app's rows they are exact);
-- last_created: the greatest created_at any invocation had while counted there (at least the greatest it holds now: a
-- hint that readers check, query/tasks.py task_runs). `rebuild` and retention recompute them exactly.
CREATE TABLE status_counts (
    app_id VARCHAR NOT NULL, task_id VARCHAR, status VARCHAR NOT NULL, n BIGINT NOT NULL,
    first_record TIMESTAMP, last_record TIMESTAMP, last_created TIMESTAMP
);
-- The first and last time each app's log records were stamped with, widened by the writer as it appends them:
-- the overview's apps list read min/max(ts) of every log record (100 ms at 10M invocations).
CREATE TABLE app_log_span (app_id VARCHAR NOT NULL, first_ts TIMESTAMP, last_ts TIMESTAMP);
-- The invocation_state rows whose status is not final (store/open_invocations.py), kept beside status_counts with
-- the same columns: runners' running work, the anomaly checks, /ops and lists filtered by a status not final read
-- these rows instead of filtering every invocation by status.
CREATE TABLE open_invocations AS SELECT * EXCLUDE (id_hash) FROM invocation_state LIMIT 0;
