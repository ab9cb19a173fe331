"""The DuckDB log on its own: backpressure, dedupe, schema pinning, read limits."""
import threading
import time

import pytest

from tasktrail.ingest.decode import decode
from tasktrail.ingest.map import Mapper
from tasktrail.proto.model import TABLES
from tasktrail.store.api import LedgerEntry, QueryError, QueryTimeout, QueueFull, StoreClosed
from tasktrail.store.duckdb import DuckDBStore

from .helpers import fixture_requests


def _entry(h, n=1):
    return LedgerEntry(h, int(time.time() * 1e6), "test", "logs", n)


def _rows():
    m = Mapper()
    sig, body = next((s, b) for s, b in fixture_requests() if s == "logs")
    out = m.map(sig, decode(sig, body, "protobuf"))
    return out.rows, out.records


def test_queue_full_then_drains(tmp_path):
    store = DuckDBStore(str(tmp_path / "s.duckdb"), queue_records=3)
    gate = threading.Event()
    real_commit = store._commit

    def slow_commit(items):
        gate.wait(10)
        real_commit(items)

    store._commit = slow_commit
    rows, n = _rows()
    first = store.submit(rows, 2, _entry("a"))
    second = store.submit(rows, 1, _entry("b"))
    with pytest.raises(QueueFull) as full:
        store.submit(rows, 1, _entry("c"))
    assert full.value.retry_after_s > 0 and "queue is full" in str(full.value)
    gate.set()
    assert not first.result(10).duplicate and not second.result(10).duplicate
    # Once drained, it takes more again.
    assert store.submit(rows, 1, _entry("c")).result(10)
    assert store.stats().rejected_full == 1
    store.close()


def test_identical_requests_are_stored_once(tmp_path):
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    rows, n = _rows()
    acks = [store.submit(rows, n, _entry("same")) for _ in range(3)]
    results = [a.result(10) for a in acks]
    assert [r.duplicate for r in results] == [False, True, True]
    assert store.is_duplicate("same")
    count = store.query("select count(*) from ingest_ledger").rows[0][0]
    assert count == 1
    store.close()
    with pytest.raises(StoreClosed):
        store.submit(rows, n, _entry("late"))
    store.close()  # idempotent


def test_schema_matches_row_types_and_views_exist(tmp_path):
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    for table, row in TABLES.items():
        cols = [r[0] for r in store.query(f"describe {table}").rows]
        assert cols == ["batch", *row._fields]
    views = {r[0] for r in store.query("select view_name from duckdb_views() where not internal").rows}
    assert {"invocations", "status_transitions", "runners", "logs", "atomic_service_executions"} <= views
    assert store.schema_version() == "0001_log"
    store.close()


def test_reads_have_time_limit_and_row_cap(tmp_path):
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    r = store.query("select * from range(100)", max_rows=10)
    assert len(r.rows) == 10 and r.truncated
    with pytest.raises(QueryTimeout):
        store.query("select count(*) from range(100000000000) a", timeout_s=0.3)
    with pytest.raises(QueryError):
        store.query("select * from no_such_table")
    with pytest.raises(QueryError):
        store.query("select * from read_csv('/etc/passwd')")
    store.close()
