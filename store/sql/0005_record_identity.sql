-- 0005_record_identity: every record has an identity, so a record delivered twice counts once (at-least-once
-- delivery: collectors re-batch, exporters retry with new batches). record_id is the event id a runner sends
-- (tasktrail.record.id), else the record's content identity (ingest/map.py); spans are identified by
-- (trace_id, span_id) as Jaeger and Tempo do. seq is the sender's own order (tasktrail.seq).
-- invocation_state keeps the raw time range of an invocation's records (first_ts, last_ts) beside its
-- causally ordered times (created_at, updated_at): per-invocation reads are bounded by the raw range.
ALTER TABLE transitions ADD COLUMN seq BIGINT;
ALTER TABLE transitions ADD COLUMN record_id VARCHAR;
ALTER TABLE runner_events ADD COLUMN record_id VARCHAR;
ALTER TABLE atomic_decisions ADD COLUMN record_id VARCHAR;
ALTER TABLE atomic_executions ADD COLUMN record_id VARCHAR;
ALTER TABLE event_records ADD COLUMN record_id VARCHAR;
ALTER TABLE trigger_runs ADD COLUMN record_id VARCHAR;
ALTER TABLE log_records ADD COLUMN record_id VARCHAR;
ALTER TABLE invocation_state ADD COLUMN first_ts TIMESTAMP;
ALTER TABLE invocation_state ADD COLUMN last_ts TIMESTAMP;
