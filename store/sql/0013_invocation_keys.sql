-- 0013_invocation_keys: where to look in invocation_state for an invocation by id (kind 0) or for the children
-- of a parent (kind 1): key_hash = hash(the id), created_at = the state row's (its zone maps then narrow the read
-- to a row group). Sorted runs plus the newest keys in arrival order (store/invocation_keys.py); a read model
-- of invocation_state, rebuilt with it, backfilled from it when this migration is applied.
CREATE TABLE invocation_keys (run BIGINT NOT NULL, kind UTINYINT NOT NULL, key_hash UBIGINT NOT NULL,
                              created_at TIMESTAMP NOT NULL);
CREATE TABLE invocation_keys_new (kind UTINYINT NOT NULL, key_hash UBIGINT NOT NULL, created_at TIMESTAMP NOT NULL);
