-- 0005_runner_fields: when each runner field's kept value was reported, so the fold keeps the most
-- specific value whatever the arrival order (store/state.py): a placeholder class such as `Runner` loses
-- against any real class, a real value is never replaced by NULL, between two real values the latest
-- reported wins. last_work: the last transition the context stamped as the one doing the work (PENDING,
-- RUNNING or an outcome), which tells a runner from a context that only submits (query/anomalies.py).
ALTER TABLE runner_state ADD COLUMN class_at TIMESTAMP;
ALTER TABLE runner_state ADD COLUMN hostname_at TIMESTAMP;
ALTER TABLE runner_state ADD COLUMN pid_at TIMESTAMP;
ALTER TABLE runner_state ADD COLUMN parent_at TIMESTAMP;
ALTER TABLE runner_state ADD COLUMN last_work TIMESTAMP;
