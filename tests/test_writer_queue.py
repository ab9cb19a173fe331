"""Work on the writer's connection runs on the writer's thread (store/writer_queue.py `on_writer`).

The writer keeps invocation_keys merged between batches on its own connection (store/duckdb.py `_upkeep`).
`tasktrail rebuild` used to run on the caller's thread over that same connection: a rebuild longer than the
writer's idle second then shared it with the upkeep, and the rebuild read another statement's result
(a 1M-invocation rebuild failed with KeyError: 'ts').
"""
from __future__ import annotations

import threading

import pytest

from tasktrail.store import state
from tasktrail.store.api import StoreClosed
from tasktrail.store.duckdb import DuckDBStore

from .test_store import _entry, _hold_commits, _rows


def test_rebuild_and_jobs_run_on_the_writers_thread(tmp_path, monkeypatch):
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    seen = []
    real = state.rebuild

    def rebuild(con, **kw):
        seen.append(threading.current_thread())
        return real(con, **kw)

    monkeypatch.setattr(state, "rebuild", rebuild)
    try:
        assert store.rebuild_state() == 0
        assert seen == [store._writer]
        assert store.on_writer(lambda con: (threading.current_thread(), con.execute("SELECT 41 + 1").fetchone()[0])) \
            == (store._writer, 42)
        with pytest.raises(ZeroDivisionError):      # what the job raised, raised to its caller
            store.on_writer(lambda con: 1 / 0)
        assert store.on_writer(lambda con: con.execute("SELECT 1").fetchone()[0]) == 1   # the writer goes on
    finally:
        store.close()
    with pytest.raises(StoreClosed):
        store.on_writer(lambda con: None)
    reader = DuckDBStore(str(tmp_path / "s.duckdb"), read_only=True)   # no writer thread: it runs here
    try:
        assert reader.on_writer(lambda con: (threading.current_thread(), con.execute("SELECT 1").fetchone()[0])) \
            == (threading.current_thread(), 1)
    finally:
        reader.close()


def test_a_job_queued_behind_requests_sees_them_committed(tmp_path):
    """A job waits for the requests submitted before it: their batch is committed when it runs."""
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    gate = _hold_commits(store)
    rows, n = _rows()
    try:
        ack = store.submit(rows, n, _entry("first"))
        got = []
        job = threading.Thread(target=lambda: got.append(store.on_writer(
            lambda con: con.execute("SELECT count(*) FROM ingest_ledger").fetchone()[0])))
        job.start()
        job.join(0.3)
        assert job.is_alive() and not got   # behind the held batch
        gate.set()
        job.join(10)
        assert got == [1] and not ack.result(10).duplicate
    finally:
        gate.set()
        store.close()
