-- 0006_runner_fields: the order key of each runner field's kept report, so the fold keeps the most
-- specific value whatever the arrival order (store/state.py): a placeholder class such as `Runner` loses
-- against any real class, a real value is never replaced by NULL, between two real values the latest
-- reported wins. last_work: the last transition the context stamped as the one doing the work (PENDING,
-- RUNNING or an outcome), which tells a runner from a context that only submits (query/anomalies.py).
ALTER TABLE runner_state ADD COLUMN class_key BIGINT;
ALTER TABLE runner_state ADD COLUMN hostname_key BIGINT;
ALTER TABLE runner_state ADD COLUMN pid_key BIGINT;
ALTER TABLE runner_state ADD COLUMN parent_key BIGINT;
ALTER TABLE runner_state ADD COLUMN last_work TIMESTAMP;
