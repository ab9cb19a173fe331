-- 0011_commands: commands (abort, rerun) as records of the append-only log (docs/control.md). Each row is one
-- state of one command: requested (by the API), delivered (handed to one runner context), done, refused or
-- expired. The view `commands` (views.sql) shows each command's latest state; every state stays here.
CREATE TABLE command_records (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, command_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL, target VARCHAR NOT NULL, target_kind VARCHAR NOT NULL, state VARCHAR NOT NULL,
    requested_by VARCHAR, runner_id VARCHAR, reason VARCHAR, parameters VARCHAR, new_invocation_id VARCHAR,
    source VARCHAR, record_id VARCHAR
);
