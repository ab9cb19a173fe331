"""The bounds on the server's memory under steady ingest (issue 20, B4): each part that grew with the run has a
limit a user can set, and the limit holds."""
from __future__ import annotations

import os
import random

import pytest

from benchmarks.workload import Workload, unique
from tasktrail.settings import Settings
from tasktrail.store.duckdb import DuckDBStore
from tasktrail.store.record_window import RecordWindow


def test_the_record_window_holds_its_size_and_forgets_the_oldest_batches():
    w = RecordWindow(10_000)
    rng = random.Random(7)
    batches = [[rng.getrandbits(62) for _ in range(1_000)] for _ in range(50)]
    for b in batches:
        w.remember(b)
        assert w._count == len(w._seen) <= 10_000 + 1_000   # at most one batch past its size
    assert len(w._seen) >= 10_000
    assert set(batches[-1]) <= w._seen          # the newest are remembered
    assert not (set(batches[0]) & w._seen)      # the oldest are forgotten
    w.remember(batches[-1])                     # a batch seen again changes nothing
    assert w._count == len(w._seen)


def _fill(store, requests: int) -> int:
    """Store `requests` distinct requests of the benchmark workload; the largest WAL seen, in bytes."""
    from tasktrail.ingest.pipeline import Ingestor
    ing = Ingestor(store)
    pool = Workload().requests(20_000)
    largest = 0
    for i in range(requests):
        sig, body = pool[i % len(pool)]
        rows, n, entry = ing.prepare(sig, unique(body, i, i // len(pool)), "protobuf", "test")
        store.submit(rows, n, entry).result(30)
        if os.path.exists(store._wal):
            largest = max(largest, os.path.getsize(store._wal))
    return largest


@pytest.mark.parametrize("capped_read", [False, True])
def test_duckdb_checkpoints_under_steady_load_even_after_a_capped_read(tmp_path, capped_read):
    # No idle checkpoint (the writer never waits): only DuckDB's threshold folds the WAL into the file. A read
    # that stopped at its row cap must not hold a transaction open, or DuckDB skips that checkpoint for good.
    store = DuckDBStore(str(tmp_path / "t.duckdb"), checkpoint_threshold="1MB", idle_checkpoint_bytes=1 << 40)
    try:
        if capped_read:
            got = store.query("SELECT * FROM range(200000)", max_rows=10)
            assert got.truncated and len(got.rows) == 10
        largest = _fill(store, 120)   # ~60k records: ~17 MB of WAL without a checkpoint
        assert store.query("SELECT count(*) FROM ingest_ledger").rows[0][0] == 120
        assert largest < 6 << 20, f"the WAL reached {largest >> 20} MB with a 1MB checkpoint threshold"
    finally:
        store.close()


def test_the_memory_settings_have_bounded_defaults():
    from tasktrail import memory_cap
    from tasktrail.settings import DEFAULT_INGEST_WORKERS
    assert memory_cap.parse_size(Settings().duckdb_checkpoint_threshold) <= 32 << 20
    # DuckDB keeps what it wrote loaded up to its limit: the limit is what an ingesting server grows to.
    assert memory_cap.parse_size(Settings().duckdb_memory_limit) <= 256 << 20
    cores = os.cpu_count() or 1
    assert DEFAULT_INGEST_WORKERS == max(0, min(4, cores - 2))   # two cores left to the server
    assert Settings().validate() == []
    bad = Settings(duckdb_checkpoint_threshold="lots").validate()
    assert any("duckdb_checkpoint_threshold" in p for p in bad)
