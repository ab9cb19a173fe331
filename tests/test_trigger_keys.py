"""The trigger runs of an invocation found through its keys (store/invocation_keys.py kind 2; migration 0015):
kept by the writer and by a lake's folder, flushed and merged into runs, rebuilt, backfilled at migration, and
read by the invocation page (query/invocation_read.py), /trigger-runs?invocation= (query/events.py) and the
family's trigger parent (query/family.py) with the same answers as a read of every trigger run."""
from __future__ import annotations

import time

import duckdb

from tasktrail.proto.model import Transition, TriggerRun
from tasktrail.query.service import QueryService
from tasktrail.store import invocation_keys
from tasktrail.store.api import LedgerEntry
from tasktrail.store.duckdb import DuckDBStore

T0 = 1_790_000_000_000_000  # micros
N = 40


def _submit(store, rows: dict, tag: str) -> None:
    n = sum(len(v) for v in rows.values())
    store.submit(rows, n, LedgerEntry(tag, int(time.time() * 1e6), "test", "logs", n)).result(10)


def _t(ts: int, inv: str, status: str) -> Transition:
    none = dict.fromkeys(Transition._fields)
    return Transition(**{**none, "ts": T0 + ts, "app_id": "app", "invocation_id": inv, "task_id": "task",
                         "status": status, "runner_id": "r", "attempt": 0, "source": "tasktrail.v1",
                         "record_id": f"{inv}-{status}"})


def _run(i: int) -> TriggerRun:
    """Run i reads invocations i-1 and i-2 (none for the first two) and creates i+100 for every third run."""
    none = dict.fromkeys(TriggerRun._fields)
    return TriggerRun(**{**none, "ts": T0 + i * 1000 + 500, "app_id": "app", "trigger_run_id": f"tr-{i}",
                         "trigger_id": "trig", "condition_ids": (), "valid_condition_ids": (), "event_ids": (),
                         "source_invocation_ids": tuple(f"inv-{j}" for j in (i - 1, i - 2) if j >= 0),
                         "triggered_invocation_id": f"inv-{i + 100}" if i % 3 == 0 else None,
                         "source": "tasktrail.v1", "record_id": f"tr-{i}"})


def _fill(store, upkeep) -> None:
    for i in range(N):
        _submit(store, {"transitions": [_t(i * 1000, f"inv-{i}", "REGISTERED"), _t(i * 1000 + 1, f"inv-{i}", "SUCCESS")]},
                f"inv-{i}")
        made = [_t(i * 1000 + 600, f"inv-{i + 100}", "REGISTERED")] if i % 3 == 0 else []
        _submit(store, {"trigger_runs": [_run(i)], "transitions": made}, f"tr-{i}")
        if i % 5 == 4:
            upkeep()


def _expected(store) -> dict:
    """{invocation id: [trigger run ids, newest first]} from a read of every trigger run."""
    out: dict = {}
    for run, created, sources in store.query("SELECT trigger_run_id, triggered_invocation_id, source_invocation_ids "
                                              "FROM trigger_runs ORDER BY ts DESC").rows:
        for inv in {created, *sources} - {None}:
            out.setdefault(inv, []).append(run)
    return out


def _check(store) -> None:
    qs = QueryService(store)
    want = _expected(store)
    stored = [r[0] for r in store.query("SELECT invocation_id FROM invocation_state").rows]
    for inv in stored:
        assert [t["trigger_run_id"] for t in qs.trigger_runs(invocation=inv)] == want.get(inv, [])
        assert [t["trigger_run_id"] for t in qs.invocation_page(inv, parts=False)["trigger_runs"]] == want.get(inv, [])
    # A trigger run that created an invocation makes its first source the invocation's family parent.
    if "inv-103" in stored:
        assert qs.family("inv-103")["root_id"] == "inv-2"
    assert qs.trigger_runs(invocation="inv-none") == []


def _trigger_keys(store) -> set:
    return set(store.query("SELECT key_hash, created_at FROM invocation_keys_all WHERE kind = 2").rows)


def _expected_keys(store) -> set:
    return set(store.query("""SELECT hash(triggered_invocation_id), ts FROM trigger_runs
                              WHERE triggered_invocation_id IS NOT NULL
                              UNION SELECT hash(unnest(source_invocation_ids)), ts FROM trigger_runs""").rows)


def test_trigger_runs_found_through_flushed_merged_and_rebuilt_keys(tmp_path):
    store = DuckDBStore(str(tmp_path / "t.duckdb"), keys_every_s=3600)   # upkeep by hand below
    con = store._read_root.cursor()
    done = []

    def upkeep():
        while (step := invocation_keys.maintain(con, flush_rows=8, fanout=2)) is not None:
            done.append(step)
        _check(store)

    try:
        _fill(store, upkeep)
        assert "flush" in done and "merge" in done
        assert len(_expected(store)) == (N - 1) + len(range(0, N, 3))   # sources inv-0..38, the created ones
        assert _trigger_keys(store) == _expected_keys(store)
        store.rebuild_state()
        assert _trigger_keys(store) == _expected_keys(store)
        _check(store)
    finally:
        con.close()
        store.close()


def test_the_detail_reads_no_trigger_run_of_an_invocation_that_has_none(tmp_path):
    store = DuckDBStore(str(tmp_path / "d.duckdb"))
    try:
        _fill(store, lambda: None)
        sql: list[str] = []
        read = store._read
        store._read = lambda s, *a: (sql.append(s), read(s, *a))[1]
        page = QueryService(store).invocation_page("inv-39", parts=False)   # in no trigger run
        assert page["trigger_runs"] == [] and not any("FROM trigger_runs" in s for s in sql)
    finally:
        store.close()


def _filled_then_edited(path: str, *statements: str) -> DuckDBStore:
    """A store filled (`_fill`), closed, changed behind tasktrail's back by `statements`, then opened again
    (its migrations applied): the caller closes it."""
    store = DuckDBStore(path, keys_every_s=3600)
    _fill(store, lambda: None)
    store.close()
    con = duckdb.connect(path)
    for sql in statements:
        con.execute(sql)
    con.close()
    return DuckDBStore(path, keys_every_s=3600)


def test_migration_backfills_the_keys_of_stored_trigger_runs(tmp_path):
    # As a store of the previous schema: no kind-2 keys, 0015 not applied.
    store = _filled_then_edited(str(tmp_path / "old.duckdb"), "DELETE FROM invocation_keys WHERE kind = 2",
                                "DELETE FROM invocation_keys_new WHERE kind = 2",
                                "DELETE FROM schema_migrations WHERE name = '0015_trigger_keys'")
    try:
        assert _trigger_keys(store) == _expected_keys(store)
        _check(store)
    finally:
        store.close()


def test_a_lake_folder_keeps_the_keys_of_the_trigger_runs_its_nodes_append(tmp_path):
    from tasktrail.store.ducklake import DuckLakeStore

    store = DuckLakeStore(str(tmp_path / "catalog.ducklake"), str(tmp_path / "data"), fold=False,
                          commit_interval_s=0.0)
    try:
        _fill(store, store.fold_once)
        store.fold_once()
        assert _trigger_keys(store) == _expected_keys(store)
        _check(store)
    finally:
        store.close()


def _one_run(ts: int, run: str, sources: tuple, created=None) -> TriggerRun:
    none = dict.fromkeys(TriggerRun._fields)
    return TriggerRun(**{**none, "ts": T0 + ts, "app_id": "app", "trigger_run_id": run, "condition_ids": (),
                         "valid_condition_ids": (), "event_ids": (), "source_invocation_ids": sources,
                         "triggered_invocation_id": created, "source": "tasktrail.v1", "record_id": run})


def test_the_trigger_parent_is_the_source_of_the_first_stored_run_that_created_it(tmp_path):
    store = DuckDBStore(str(tmp_path / "p.duckdb"))
    try:
        _submit(store, {"transitions": [_t(0, "p1", "REGISTERED"), _t(1, "p2", "REGISTERED"),
                                        _t(500, "x", "REGISTERED")]}, "inv")
        _submit(store, {"trigger_runs": [_one_run(200, "r1", ("p1",), created="x")]}, "r1")   # stored first,
        _submit(store, {"trigger_runs": [_one_run(100, "r2", ("p2",), created="x")]}, "r2")   # stamped later
        assert QueryService(store).family("x")["root_id"] == "p1"
    finally:
        store.close()


def test_a_store_migrated_from_before_the_keys_holds_each_trigger_key_once(tmp_path):
    # As a store of migration 0012: no keys at all (0013's rebuild, then 0015).
    store = _filled_then_edited(str(tmp_path / "u.duckdb"), "DROP VIEW IF EXISTS invocation_keys_all",
                                "DROP TABLE invocation_keys", "DROP TABLE invocation_keys_new",
                                "DELETE FROM schema_migrations WHERE name IN ('0013_invocation_keys', "
                                "'0015_trigger_keys')")
    try:
        rows = store.query("SELECT count(*), count(DISTINCT (key_hash, created_at)) FROM invocation_keys_all "
                           "WHERE kind = 2").rows[0]
        assert rows[0] == rows[1] and _trigger_keys(store) == _expected_keys(store)
        _check(store)
    finally:
        store.close()


def test_tied_trigger_runs_page_by_id(tmp_path):
    store = DuckDBStore(str(tmp_path / "t.duckdb"))
    try:
        _submit(store, {"transitions": [_t(0, "inv-a", "REGISTERED")]}, "inv")
        _submit(store, {"trigger_runs": [_one_run(100, f"r-{i:02}", ("inv-a",)) for i in (5, 1, 9, 3, 7)]}, "runs")
        assert [t["trigger_run_id"] for t in QueryService(store).trigger_runs(invocation="inv-a", limit=3)] == \
            ["r-01", "r-03", "r-05"]
    finally:
        store.close()
