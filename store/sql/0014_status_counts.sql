-- 0014_status_counts: invocations per (app, task, status), kept by whoever writes invocation_state, in the same
-- transaction (store/status_counts.py): the overview, the apps list and /metrics read these few rows instead of
-- grouping every invocation (at 10M invocations that GROUP BY cost 110-190 ms). first_created, last_updated and
-- last_record are the least created_at, greatest updated_at and greatest last_ts any invocation had while counted
-- here (they only widen; `rebuild` and retention recompute them exactly). A read model of invocation_state.
CREATE TABLE status_counts (
    app_id VARCHAR NOT NULL, task_id VARCHAR, status VARCHAR NOT NULL, n BIGINT NOT NULL,
    first_created TIMESTAMP, last_updated TIMESTAMP, last_record TIMESTAMP
);
-- The first and last time each app's log records were stamped with, widened by the writer as it appends them:
-- the overview's apps list read min/max(ts) of every log record (100 ms at 10M invocations).
CREATE TABLE app_log_span (app_id VARCHAR NOT NULL, first_ts TIMESTAMP, last_ts TIMESTAMP);
