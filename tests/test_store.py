"""The DuckDB log on its own: backpressure, dedupe, schema pinning, read limits."""
import threading
import time

import pytest

from tasktrail.ingest.decode import decode
from tasktrail.ingest.map import Mapper
from tasktrail.proto.model import TABLES
from tasktrail.store.api import LedgerEntry, QueryError, QueryTimeout, QueueFull, StoreClosed
from tasktrail.store.duckdb import DuckDBStore, migration_files

from .helpers import fixture_requests


def _entry(h, n=1):
    return LedgerEntry(h, int(time.time() * 1e6), "test", "logs", n)


def _rows():
    m = Mapper()
    sig, body = next((s, b) for s, b in fixture_requests() if s == "logs")
    out = m.map(sig, decode(sig, body, "protobuf"))
    return out.rows, out.records


def _hold_commits(store) -> threading.Event:
    """Make the store's writer wait before each commit until the returned event is set."""
    gate = threading.Event()
    real_commit = store._commit

    def held_commit(items):
        gate.wait(10)
        real_commit(items)

    store._commit = held_commit
    return gate


def test_queue_full_then_drains(tmp_path):
    store = DuckDBStore(str(tmp_path / "s.duckdb"), queue_records=3)
    gate = _hold_commits(store)
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
    assert {"invocations", "status_transitions", "runners", "logs", "atomic_service_executions", "commands"} <= views
    assert store.schema_version() == migration_files()[-1][0] >= "0011_commands"
    store.close()


def test_reads_have_time_limit_and_row_cap(tmp_path):
    store = DuckDBStore(str(tmp_path / "s.duckdb"))
    r = store.query("select range as a, range * 2 as b from range(100)", max_rows=10)
    assert len(r.rows) == 10 and r.truncated
    assert r.columns == ["a", "b"] and r.dicts()[3] == {"a": 3, "b": 6}   # a cut read keeps its column names
    with pytest.raises(QueryTimeout):
        store.query("select count(*) from range(100000000000) a", timeout_s=0.3)
    with pytest.raises(QueryError):
        store.query("select * from no_such_table")
    with pytest.raises(QueryError):
        store.query("select * from read_csv('/etc/passwd')")
    store.close()


def test_caches_equal_the_log_in_any_arrival_order(tmp_path):
    """The writer-maintained caches give what the history rule gives over the whole log (proto/history.py,
    the rule the API's history uses), however requests interleave, and `tasktrail rebuild` recomputes them."""
    import random
    import subprocess
    import sys

    from tasktrail.ingest.pipeline import Ingestor
    from tasktrail.store.state import HISTORY_COLUMNS, state_of

    reqs = fixture_requests()
    cols = ("invocation_id, task_id, status, parent_invocation_id, workflow_id, workflow_type, runner_id, "
            "worker_id, epoch_us(created_at), epoch_us(updated_at), attempts")
    from_cache = f"SELECT {cols} FROM invocation_state ORDER BY 1"

    def from_log(store):
        """Each invocation's records, read back in arrival order, through the rule."""
        sel = ", ".join("epoch_us(ts) AS ts" if c == "ts" else c for c in HISTORY_COLUMNS)
        got: dict = {}
        for d in store.query(f"SELECT {sel} FROM transitions ORDER BY batch, rowid").dicts():
            got.setdefault(d["invocation_id"], []).append(d)
        out = []
        for inv in sorted(got):
            st = state_of(got[inv])
            out.append((st[1], st[2], st[3], st[8], st[10], st[11], st[12], st[13], st[5], st[6], st[14]))
        return out
    for seed in range(3):
        db = str(tmp_path / f"s{seed}.duckdb")
        store = DuckDBStore(db)
        ing = Ingestor(store)
        order = list(reqs)
        random.Random(seed).shuffle(order)
        for sig, body in order:
            rows, n, entry = ing.prepare(sig, body, "protobuf", "test")
            store.submit(rows, n, entry).result(10)
        expected = from_log(store)
        assert len(expected) == 6 and store.query(from_cache).rows == expected
        runners_folded = store.query("SELECT * FROM runner_state ORDER BY app_id, runner_id").rows
        assert len(runners_folded) >= 5 and all(r[6] is not None for r in runners_folded)  # first_seen
        store._con.execute("DELETE FROM invocation_state WHERE status = 'SUCCESS'")
        store._con.execute("DELETE FROM runner_state")
        assert store.query(from_cache).rows != expected
        store.close()
        out = subprocess.run([sys.executable, "-m", "tasktrail", "rebuild", "--db", db], capture_output=True,
                             text=True, timeout=60)
        assert out.returncode == 0 and "6 invocations" in out.stdout, out.stderr
        store = DuckDBStore(db)
        assert store.query(from_cache).rows == expected
        assert store.query("SELECT * FROM runner_state ORDER BY app_id, runner_id").rows == runners_folded
        store.close()
