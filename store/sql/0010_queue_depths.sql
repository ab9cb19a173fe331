-- 0010_queue_depths: messages waiting per queue over time, as each broker counted them
-- (tasktrail.queue.depth: the pynenc exporter, rustvello's App.queue_depths() helper, tasktrail's own
-- --celery-broker poller), with the consumers the reporter names (query/queues.py reads it).
CREATE TABLE queue_depths (
    batch BIGINT NOT NULL, ts TIMESTAMP NOT NULL, app_id VARCHAR NOT NULL, queue VARCHAR NOT NULL,
    depth BIGINT NOT NULL, consumers VARCHAR[], consumer_count BIGINT, runner_id VARCHAR, source VARCHAR,
    record_id VARCHAR
);
