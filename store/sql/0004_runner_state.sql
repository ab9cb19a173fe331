-- 0004_runner_state: one row per runner context, kept current by the writer in the transaction that
-- appends its runner events and transitions (store/state.py). A cache of the log like invocation_state:
-- the runners view, /ops and /metrics read a few hundred rows instead of every heartbeat ever sent.
CREATE TABLE runner_state (
    app_id VARCHAR NOT NULL, runner_id VARCHAR NOT NULL, runner_class VARCHAR, parent_runner_id VARCHAR,
    hostname VARCHAR, pid BIGINT, first_seen TIMESTAMP, last_lifecycle TIMESTAMP, last_heartbeat TIMESTAMP,
    stopped_at TIMESTAMP, started_at TIMESTAMP, last_event TIMESTAMP, last_transition TIMESTAMP,
    first_heartbeat TIMESTAMP, heartbeats BIGINT
);
