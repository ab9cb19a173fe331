-- 0008_definitions: definitions a runner reports about itself and its app (tasktrail.app.config,
-- tasktrail.runner.config, tasktrail.task.definition): an app's component classes and settings, a runner's
-- settings, a task's options. Sent at start and when a value changes, so the table stays small; the latest
-- row per (app_id, kind, subject_id) is what holds (query/definitions.py). body is JSON.
CREATE TABLE definitions (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, kind VARCHAR NOT NULL,
    subject_id VARCHAR NOT NULL, runner_id VARCHAR, body VARCHAR NOT NULL, source VARCHAR, record_id VARCHAR
);
