"""The caches of the log as a whole: invocation_state (store/invocation_state.py, folded by
store/invocation_fold.py) and runner_state (store/runner_state.py, folded by store/runner_fold.py). The
writer folds each batch into them in the batch's own transaction; a lake's folder folds what its
snapshots inserted (`fold_changes`); `rebuild` recomputes them from the log. Only these modules write them.
"""
from __future__ import annotations

from . import invocation_keys, status_counts
from .invocation_fold import refold
from .invocation_state import HISTORY_COLUMNS, HISTORY_SELECT, state_of, state_table
from .runner_state import MERGE_RUNNERS, RUNNERS

# Migrations that create or reshape the cache: the store rebuilds it once they are applied.
REBUILT_BY = ("0002_invocation_state", "0003_state_id_hash", "0004_runner_state", "0005_record_identity",
              "0006_runner_fields")
REBUILT_BY += ("0009_invocation_calls",)  # runner_state's thread_id
# Migrations that add a read model of invocation_state: filled from it once applied (no refold of the log).
BACKFILLED_BY = {"0013_invocation_keys": invocation_keys.rebuild, "0014_overview_models": status_counts.rebuild,
                 "0015_trigger_keys": invocation_keys.backfill_trigger_runs}


def fold_changes(con, catalog: str, start: int, end: int) -> None:
    """Fold the rows DuckLake snapshots start..end inserted into the caches and their read models (store/ducklake.py:
    the lake's writers only append; one folder keeps the caches)."""
    def changes(table):
        return (f"(SELECT * EXCLUDE (snapshot_id, rowid, change_type) FROM ducklake_table_changes("
                f"'{catalog}', 'main', '{table}', {int(start)}, {int(end)}) WHERE change_type = 'insert')")
    ranges = con.execute(f"SELECT app_id, invocation_id, epoch_us(min(ts)), epoch_us(max(ts)) "
                         f"FROM {changes('transitions')} GROUP BY ALL").fetchall()
    refold(con, {(a, i): (lo, hi) for a, i, lo, hi in ranges})
    status_counts.widen_logs(con, changes("log_records"))
    invocation_keys.append_trigger_runs(con, changes("trigger_runs"))
    con.execute(MERGE_RUNNERS.format(aggregate=RUNNERS.format(
        transitions=changes("transitions"), runner_events=changes("runner_events"), where="true")))


def mend_read_models(con) -> list[str]:
    """Rebuild each read model of invocation_state that does not cover it (written by a version that did not keep
    it: fewer keys than rows, counts that do not add up), each in a transaction of its own; returns their names."""
    mended = []
    for name, model in (("invocation_keys", invocation_keys), ("status_counts", status_counts)):
        if not model.covers(con):
            model.rebuild_in_transaction(con)
            mended.append(name)
    return mended


def hash_is_current(con) -> bool:
    """False when stored id hashes disagree with this DuckDB's hash() (a new hash function)."""
    row = con.execute("SELECT bool_and(id_hash = hash(invocation_id)) FROM "
                      "(SELECT id_hash, invocation_id FROM invocation_state LIMIT 100)").fetchone()
    return row[0] is not False


def _rebuild_invocations(con, part_rows: int = 500_000) -> None:
    """Every invocation's state from its records (the same fold as the writer's), read in parts by id hash
    so memory stays bounded, inserted in creation order as the writer's folds leave it: zone maps on
    created_at then let the newest page of a list skip every older row group."""
    total = con.execute("SELECT count(*) FROM transitions").fetchone()[0]
    parts = max(1, -(-total // part_rows))
    con.execute("CREATE OR REPLACE TEMP TABLE tt_rebuild AS SELECT * EXCLUDE (id_hash) FROM invocation_state LIMIT 0")
    names = list(HISTORY_COLUMNS)
    for part in range(parts):
        cols = con.execute(f"SELECT {HISTORY_SELECT} FROM transitions WHERE hash(invocation_id) % {parts} = {part} "
                           "ORDER BY app_id, invocation_id, batch, rowid").to_arrow_table().to_pydict()
        states: list[tuple] = []
        key, rows = None, []
        for i in range(len(cols["ts"])):
            d = {c: cols[c][i] for c in names}
            k = (d["app_id"], d["invocation_id"])
            if k != key:
                if rows:
                    states.append(state_of(rows))
                key, rows = k, []
            rows.append(d)
        if rows:
            states.append(state_of(rows))
        states = [st for st in states if st is not None]
        if states:
            con.register("tt_state_in", state_table(states))
            con.execute("INSERT INTO tt_rebuild BY NAME SELECT * FROM tt_state_in")
            con.unregister("tt_state_in")
    con.execute("INSERT INTO invocation_state BY NAME SELECT *, hash(invocation_id) AS id_hash FROM tt_rebuild "
                "ORDER BY created_at")
    con.execute("DROP TABLE tt_rebuild")


def rebuild(con, *, also=None, checkpoint: bool = True) -> int:
    """Drop and recompute the caches from the log; returns the invocations it holds. `also(con)` runs in
    the same transaction (a lake records the snapshot the caches reflect)."""
    con.begin()
    try:
        con.execute("DELETE FROM invocation_state")
        _rebuild_invocations(con)
        invocation_keys.rebuild(con)
        status_counts.rebuild(con)
        con.execute("DELETE FROM runner_state")
        con.execute("INSERT INTO runner_state BY NAME " + RUNNERS.format(transitions="transitions",
                                                                        runner_events="runner_events", where="true"))
        n = con.execute("SELECT count(*) FROM invocation_state").fetchone()[0]
        if also is not None:
            also(con)
        con.commit()
    except Exception:
        con.rollback()
        raise
    if checkpoint:
        con.execute("CHECKPOINT")  # the deleted rows' space goes back to the file now, not at some later checkpoint
    return n
