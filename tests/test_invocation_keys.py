"""invocation_keys (store/invocation_keys.py), where reads find an invocation or a parent's children in
invocation_state: kept by the writer's fold, flushed and merged into sorted runs, rebuilt from the log."""
from __future__ import annotations

import time

import duckdb

from tasktrail.proto.model import Transition
from tasktrail.store import invocation_keys
from tasktrail.store.api import BY_ID, LedgerEntry, children_of
from tasktrail.store.duckdb import DuckDBStore

T0 = 1_790_000_000_000_000  # micros
STEPS = ("REGISTERED", "RUNNING", "SUCCESS")


def _t(ts: int, inv: str, status: str, parent=None, rid=None) -> Transition:
    none = dict.fromkeys(Transition._fields)
    return Transition(**{**none, "ts": T0 + ts, "app_id": "app", "invocation_id": inv, "task_id": "task",
                         "status": status, "runner_id": "r", "attempt": 0, "source": "tasktrail.v1",
                         "parent_invocation_id": parent, "record_id": rid})


def _submit(store: DuckDBStore, rows: list, tag: str) -> None:
    entry = LedgerEntry(tag, int(time.time() * 1e6), "test", "logs", len(rows))
    store.submit({"transitions": rows}, len(rows), entry).result(10)


def _parent(i: int):
    return f"inv-{i - 1}" if i % 3 == 0 and i else None


def _fill(store: DuckDBStore, upkeep) -> None:
    """60 invocations in 12 batches, each batch's steps split over two batches (so most are updated by MERGE),
    a record sent twice, and one late registration that moves an invocation's created_at earlier."""
    for b in range(12):
        rows = []
        for i in range(b * 5, b * 5 + 5):
            for k, st in enumerate(STEPS):
                rows.append(_t(i * 1000 + k, f"inv-{i}", st, _parent(i), f"rec-{i}-{k}"))
        _submit(store, rows[:7], f"b{b}a")
        _submit(store, rows[7:], f"b{b}b")
        if b == 6:
            _submit(store, [_t(3 * 1000 + 2, "inv-3", "SUCCESS", _parent(3), "rec-3-2")], "dup")   # re-delivered
            _submit(store, [_t(-50_000, "inv-7", "REGISTERED", None, "rec-7-early")], "early")    # created earlier
        upkeep()


def _expected_keys(store: DuckDBStore) -> set:
    return set(store.query("""SELECT 0, hash(invocation_id), created_at FROM invocation_state UNION ALL
                              SELECT 1, hash(parent_invocation_id), created_at FROM invocation_state
                              WHERE parent_invocation_id IS NOT NULL""").rows)


def _keys(store: DuckDBStore) -> set:
    return set(store.query("SELECT kind, key_hash, created_at FROM invocation_keys_all").rows)


def _check_lookups(store: DuckDBStore, n: int = 60) -> None:
    """Every invocation (n of them) found by BY_ID as it is stored, every parent's children by children_of."""
    rows = store.query("SELECT * EXCLUDE (id_hash) FROM invocation_state ORDER BY invocation_id").dicts()
    assert len(rows) == n
    for want in rows:
        got = store.query(f"SELECT * EXCLUDE (id_hash) FROM invocation_state WHERE {BY_ID}",
                          [want["invocation_id"]] * 2).dicts()
        assert got == [want]
    parents = sorted({r["parent_invocation_id"] for r in rows if r["parent_invocation_id"]})
    for p in parents:
        kids = {r["invocation_id"] for r in rows if r["parent_invocation_id"] == p}
        got = store.query(f"SELECT invocation_id FROM invocation_state WHERE {children_of(1)}", [p, p]).rows
        assert {g[0] for g in got} == kids
    both = parents[-2:]
    got = store.query(f"SELECT invocation_id FROM invocation_state WHERE {children_of(len(both))}", both + both).rows
    assert {g[0] for g in got} == {r["invocation_id"] for r in rows if r["parent_invocation_id"] in both}


def _runs_sorted(store: DuckDBStore) -> int:
    runs = [r[0] for r in store.query("SELECT DISTINCT run FROM invocation_keys").rows]
    for run in runs:
        hashes = [r[0] for r in store.query("SELECT key_hash FROM invocation_keys WHERE run = ? ORDER BY rowid",
                                            [run]).rows]
        assert hashes == sorted(hashes)
    return len(runs)


def test_lookups_through_flushed_and_merged_runs_and_after_a_rebuild(tmp_path):
    store = DuckDBStore(str(tmp_path / "k.duckdb"), keys_every_s=3600)   # upkeep by hand below
    con = store._read_root.cursor()
    done, runs = [], []

    def upkeep():
        while (step := invocation_keys.maintain(con, flush_rows=8, fanout=2)) is not None:
            done.append(step)
            runs.append(_runs_sorted(store))
        _check_lookups(store, store.query("SELECT count(*) FROM invocation_state").rows[0][0])

    try:
        _fill(store, upkeep)
        assert "flush" in done and "merge" in done
        assert max(runs) >= 2                         # lookups were checked across several runs
        # Every write of a state row appended its keys again; runs hold each key once.
        dup = store.query("SELECT count(*) - count(DISTINCT (run, kind, key_hash, created_at)) FROM invocation_keys")
        assert dup.rows[0][0] == 0
        live_state = store.query("SELECT * FROM invocation_state ORDER BY invocation_id").rows
        created = dict(store.query("SELECT invocation_id, created_at FROM invocation_state").rows)
        assert created["inv-7"] < created["inv-6"]    # the late registration moved it: found all the same
        assert _keys(store) >= _expected_keys(store)  # stale keys (of a moved created_at) may stay, never missing
        store.rebuild_state()
        assert store.query("SELECT * FROM invocation_state ORDER BY invocation_id").rows == live_state
        assert _keys(store) == _expected_keys(store)  # the read model rebuilt from the log: exactly its keys
        assert _runs_sorted(store) == 1
        _check_lookups(store)
    finally:
        con.close()
        store.close()


def _edit_then_reopen(path: str, *statements: str) -> None:
    """Change the closed store at `path` behind tasktrail's back, then open it: its keys must be whole again."""
    con = duckdb.connect(path)
    for sql in statements:
        con.execute(sql)
    con.close()
    store = DuckDBStore(path, keys_every_s=3600)
    try:
        assert _keys(store) == _expected_keys(store)
        _check_lookups(store)
    finally:
        store.close()


def test_migration_backfills_keys_of_a_store_made_before_it(tmp_path):
    path = str(tmp_path / "old.duckdb")
    store = DuckDBStore(path, keys_every_s=3600)
    _fill(store, lambda: None)
    store.close()
    # As a store of the previous schema: no keys, migration 0013 not applied.
    _edit_then_reopen(path, "DROP VIEW invocation_keys_all", "DROP TABLE invocation_keys",
                      "DROP TABLE invocation_keys_new",
                      "DELETE FROM schema_migrations WHERE name = '0013_invocation_keys'")
    # Migrated, then written to by a version without keys: fewer keys than rows.
    _edit_then_reopen(path, "DELETE FROM invocation_keys WHERE key_hash % 2 = 0",
                      "DELETE FROM invocation_keys_new WHERE key_hash % 2 = 0")


def test_the_background_upkeep_merges_while_the_writer_appends(tmp_path):
    store = DuckDBStore(str(tmp_path / "bg.duckdb"), keys_every_s=0.01)
    old = invocation_keys.FLUSH_ROWS
    invocation_keys.FLUSH_ROWS = 4
    try:
        _fill(store, lambda: None)
        deadline = time.monotonic() + 10
        while store.query("SELECT count(*) FROM invocation_keys_new").rows[0][0] >= 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.query("SELECT count(*) FROM invocation_keys").rows[0][0] > 0
        _check_lookups(store)
        assert _keys(store) >= _expected_keys(store)
    finally:
        invocation_keys.FLUSH_ROWS = old
        store.close()


def test_a_lake_keeps_and_merges_the_keys_in_its_folder(tmp_path):
    from tasktrail.store.ducklake import DuckLakeStore

    store = DuckLakeStore(str(tmp_path / "catalog.ducklake"), str(tmp_path / "data"), fold=False,
                          commit_interval_s=0.0)
    done = []

    def upkeep():
        store.fold_once()
        while (step := invocation_keys.maintain(store._con, flush_rows=8, fanout=2)) is not None:
            done.append(step)

    try:
        _fill(store, upkeep)
        assert "flush" in done and "merge" in done
        _check_lookups(store)
        assert _keys(store) >= _expected_keys(store)
    finally:
        store.close()
