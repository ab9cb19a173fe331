"""invocation_keys: where in invocation_state to look for an invocation (kind 0: by its id) or for the children
of a parent (kind 1: by the parent's id), as (kind, key_hash = hash(id), created_at of the state row); and where
in trigger_runs to look for the runs that created or read an invocation (kind 2: by its id, created_at = the
run's ts).

invocation_state is kept in creation order, so zone maps on its created_at narrow a read to a row group or two
once the created_at is known; an id's hash is random, so without this table a point lookup reads the id-hash
column of every row (cost grows with the store). This table is kept sorted by key_hash in runs, LSM-style:

- `invocation_keys_new`: the newest keys, appended by whoever writes invocation_state (`append`, in the same
  transaction: the writer's fold, a lake's refold, `rebuild`), in arrival order; small, read whole.
- `invocation_keys`: runs (`run` numbers them), each inserted in key_hash order, so each run's row groups hold
  a narrow hash range and a lookup reads about one row group per run. `maintain` (the store's writer between
  batches, or a lake's folder) moves the new keys into a run once there are `flush_rows` of them, and merges
  `fanout` runs of one size tier into one (tiered: a key is rewritten about log_fanout(N / flush_rows) times).

A key never goes stale in the unsafe direction: every write of a state row appends its keys, so the row's
current created_at is always among its id's keys; a key left behind by an update or a deletion only makes a
read look at one more row group (the read still filters on the id itself). Read (store/api.py BY_ID):
`(id_hash, created_at) IN (SELECT key_hash, created_at FROM invocation_keys_all WHERE ...)`; DuckDB pushes the
matches into the scan of invocation_state as a filter its zone maps use. A read model: `rebuild` recomputes it
from invocation_state (itself rebuilt from the log).
"""
from __future__ import annotations

from typing import Callable, Optional

from .transaction import in_transaction

FLUSH_ROWS = 100_000     # new keys moved into a run once this many have gathered
FANOUT = 4               # runs of one tier merged together
SLICE_ROWS = 2_000_000   # a run is written in hash slices of about this many rows (bounded sort memory)
_SPACE = 1 << 64

# The keys of the invocation_state rows in relation {src}: kind 0 by the row's id, kind 1 by its parent's.
_KEYS = """
    SELECT 0::UTINYINT AS kind, hash(invocation_id) AS key_hash, created_at FROM {src}
    UNION ALL
    SELECT 1::UTINYINT, hash(parent_invocation_id), created_at FROM {src} WHERE parent_invocation_id IS NOT NULL"""


# Kind 2: the trigger runs that created an invocation (triggered_invocation_id) or read it (source_invocation_ids),
# by that id, created_at holding the run's ts: trigger_runs is stored in arrival order, so zone maps on its ts
# narrow a read of an invocation's trigger runs to their row groups (query/events.py trigger_runs).
_TRIGGER_KEYS = """
    SELECT 2::UTINYINT AS kind, hash(triggered_invocation_id) AS key_hash, ts AS created_at FROM {src}
    WHERE triggered_invocation_id IS NOT NULL
    UNION ALL
    SELECT 2::UTINYINT, hash(id), ts FROM (SELECT unnest(source_invocation_ids) AS id, ts FROM {src})
    WHERE id IS NOT NULL"""


def append(con, src: str) -> None:
    """Append the keys of the invocation_state rows in relation `src` (a registered table or view with
    invocation_id, parent_invocation_id, created_at): call it with every write of those rows, in its transaction."""
    con.execute("INSERT INTO invocation_keys_new " + _KEYS.format(src=src))


def append_trigger_runs(con, src: str = "trigger_runs") -> None:
    """Append the kind-2 keys of the trigger_runs rows in relation `src` (a registered table or view with
    trigger_runs' columns): call it with every append of trigger runs, in its transaction (the writer; a lake's
    folder as it folds the rows its ingest nodes committed; `backfill_trigger_runs` over the stored ones)."""
    con.execute("INSERT INTO invocation_keys_new " + _TRIGGER_KEYS.format(src=src))


def backfill_trigger_runs(con) -> None:
    """The kind-2 keys of every stored trigger run, once (migration 0015: a store migrated from before 0013 got
    them from 0013's `rebuild` already)."""
    con.execute("DELETE FROM invocation_keys WHERE kind = 2")
    con.execute("DELETE FROM invocation_keys_new WHERE kind = 2")
    append_trigger_runs(con, "trigger_runs")


def _runs(con) -> list[tuple[int, int]]:
    """[(run, rows)] of invocation_keys, oldest first."""
    return [tuple(r) for r in con.execute("SELECT run, count(*) FROM invocation_keys GROUP BY run ORDER BY run").fetchall()]


def _tier(rows: int, flush_rows: int, fanout: int) -> int:
    """A run's size tier: 0 below fanout × flush_rows, then one more per factor of fanout."""
    t, size = 0, flush_rows * fanout
    while rows >= size:
        t, size = t + 1, size * fanout
    return t


def _write_run(con, run: int, source: str, rows: int) -> None:
    """Insert `source`'s distinct (kind, key_hash, created_at) as run `run`, in key_hash order, a hash slice at a time."""
    slices = max(1, -(-rows // SLICE_ROWS))
    step = -(-_SPACE // slices)
    for j in range(slices):
        lo, hi = j * step, min(_SPACE, (j + 1) * step)
        bound = f"key_hash >= {lo}::UBIGINT" + (f" AND key_hash < {hi}::UBIGINT" if hi < _SPACE else "")
        # DISTINCT: every write of a state row appends its keys again (the same key while its created_at stays).
        con.execute(f"INSERT INTO invocation_keys SELECT {int(run)}, kind, key_hash, created_at FROM "
                    f"(SELECT DISTINCT kind, key_hash, created_at FROM ({source}) WHERE {bound}) "
                    f"ORDER BY key_hash, kind, created_at")


def rebuild(con) -> int:
    """Recompute the keys from invocation_state and trigger_runs as one run (in the caller's transaction, if
    any); returns them."""
    con.execute("DELETE FROM invocation_keys_new")
    con.execute("DELETE FROM invocation_keys")
    src = _KEYS.format(src="invocation_state") + " UNION ALL " + _TRIGGER_KEYS.format(src="trigger_runs")
    n = con.execute(f"SELECT count(*) FROM ({src})").fetchone()[0]
    _write_run(con, 1, src, n)
    return n


def covers(con) -> bool:
    """False when the keys cannot cover invocation_state: fewer id keys than state rows (every row has one at
    least), as in a store that a version without keys wrote to after migration 0013. Counts, no join."""
    row = con.execute("""SELECT (SELECT count(*) FROM invocation_state),
                                (SELECT count(*) FROM invocation_keys WHERE kind = 0)
                                + (SELECT count(*) FROM invocation_keys_new WHERE kind = 0)""").fetchone()
    return row[1] >= row[0]


def rebuild_in_transaction(con) -> None:
    """`rebuild` in a transaction of its own: all of it or none."""
    in_transaction(con, lambda: rebuild(con))


def keep(con, stopped: Callable[[], bool]) -> None:
    """Flush and merge until nothing is due or `stopped()` (the upkeep of a store's writer, or a lake's folder):
    the first step only flushes, so a poll with nothing due costs one count of the new keys."""
    step = maintain(con, merges=False)
    while step and not stopped():
        step = maintain(con)


def maintain(con, flush_rows: Optional[int] = None, fanout: Optional[int] = None, merges: bool = True) -> Optional[str]:
    """One step of upkeep on `con` (the writer's connection, or a lake folder's): flush the new keys into a run
    when there are `flush_rows`, else merge `fanout` runs of the lowest full tier. Each step is one transaction
    (a store's other writers only append to invocation_keys_new, which never conflicts with these deletes).
    Returns what it did ("flush", "merge") or None. Defaults: FLUSH_ROWS, FANOUT; without `merges`, only a flush
    (merges fall due only after one: a poll then costs one count of the new keys, not a scan of the runs)."""
    flush_rows, fanout = flush_rows or FLUSH_ROWS, fanout or FANOUT
    new = con.execute("SELECT count(*) FROM invocation_keys_new").fetchone()[0]
    if new < flush_rows and not merges:
        return None
    runs = _runs(con)
    nxt = (runs[-1][0] if runs else 0) + 1
    if new >= flush_rows:
        def flush():
            # The rows this transaction sees are the ones moved and deleted; keys appended meanwhile stay new.
            con.execute("CREATE OR REPLACE TEMP TABLE tt_keys_moved AS SELECT * FROM invocation_keys_new")
            _write_run(con, nxt, "SELECT * FROM tt_keys_moved", new)
            con.execute("DELETE FROM invocation_keys_new")
        in_transaction(con, flush)
        con.execute("DROP TABLE IF EXISTS tt_keys_moved")
        return "flush"
    tiers: dict[int, list[tuple[int, int]]] = {}
    for run, rows in runs:
        tiers.setdefault(_tier(rows, flush_rows, fanout), []).append((run, rows))
    for _t, members in sorted(tiers.items()):
        if len(members) >= fanout:
            pick = members[:fanout]
            ids = ", ".join(str(r) for r, _ in pick)

            def merge():
                # Keys older than every state row (kind 2: every trigger run) point nowhere (retention removed
                # their rows): dropped here. Safe: a row written meanwhile comes with keys of its own in
                # invocation_keys_new.
                _write_run(con, nxt, f"SELECT kind, key_hash, created_at FROM invocation_keys WHERE run IN ({ids}) "
                           "AND created_at >= CASE WHEN kind = 2 "
                           "THEN (SELECT coalesce(min(ts), '-infinity') FROM trigger_runs) "
                           "ELSE (SELECT coalesce(min(created_at), '-infinity') FROM invocation_state) END",
                           sum(n for _, n in pick))
                con.execute(f"DELETE FROM invocation_keys WHERE run IN ({ids})")
            in_transaction(con, merge)
            return "merge"
    return None
