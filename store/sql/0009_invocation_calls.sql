-- 0009_invocation_calls: the call each invocation is of (proto/model.py InvocationCall), one row per status
-- record that names it (tasktrail.call.id, sent on REGISTERED): the /calls pages read this small table, never
-- the transitions. And the thread of each runner context, kept in runner_state like its host and pid
-- (store/runner_state.py), so an invocation's history shows class, host, pid and thread from one read.
CREATE TABLE invocation_calls (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, call_id VARCHAR NOT NULL,
    invocation_id VARCHAR NOT NULL, task_id VARCHAR, arguments VARCHAR, source VARCHAR, record_id VARCHAR
);
ALTER TABLE runner_state ADD COLUMN thread_id BIGINT;
ALTER TABLE runner_state ADD COLUMN thread_key BIGINT;
