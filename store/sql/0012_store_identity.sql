-- Who this store is: a random id made once, so a write-ahead journal (ingest/journal.py) can tell its own
-- store from another one's (a journal copied beside another DuckDB file is refused, not applied).
CREATE TABLE IF NOT EXISTS store_identity (store_id VARCHAR);
INSERT INTO store_identity SELECT uuid()::VARCHAR WHERE NOT EXISTS (SELECT 1 FROM store_identity);
