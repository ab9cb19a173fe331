"""The write-ahead journal (ingest/journal.py, ingest/journaled.py): acknowledged once fsynced, applied
behind, replayed exactly once, bounded, reported in /metrics, and what a read sees."""
import asyncio
from concurrent import futures
import hashlib
import os
import shutil
import signal
import sqlite3
import time

import duckdb
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tasktrail.ingest.journal import Journal, JournalEntry, JournalFull, JournalUnavailable
from tasktrail.ingest.pipeline import Ingestor
from tasktrail.store.duckdb import DuckDBStore

from .delivery import line, logs_request
from .helpers import PB, fixture_requests, start_server, wait_until


def _entry(i: int, size: int = 100) -> JournalEntry:
    body = bytes([i % 256]) * size
    return JournalEntry(hashlib.md5(body + str(i).encode()).hexdigest(), "logs", "protobuf", "http", i, body)


def test_the_journal_keeps_what_it_acknowledged_until_forgotten(tmp_path):
    path = str(tmp_path / "j.sqlite")
    j = Journal(path)
    entries = [_entry(i) for i in range(50)]
    futures = [j.append(e) for e in entries]
    for f in futures:
        assert f.result(timeout=10) is None
    assert j.pending_requests() == 50 and j.pending_bytes() == 5000
    for e in entries[:20]:
        j.forget(e.request_hash)
    j.close()                     # writes the forgets it still holds
    j = Journal(path)             # as at the next start
    try:
        kept = list(j.all_entries())
        assert kept == entries[20:]   # oldest first, bodies intact
        assert j.pending_requests() == 30 and j.pending_bytes() == 3000
        assert j.entry(entries[25].request_hash) == entries[25]
        assert j.entry(entries[5].request_hash) is None
        assert j.size_bytes() >= 3000
    finally:
        j.close()


def test_the_journal_is_bounded_and_refuses_past_it(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"), max_bytes=1 << 20)
    try:
        big = [_entry(i, 300_000) for i in range(3)]
        for e in big:
            j.append(e).result(timeout=10)
        with pytest.raises(JournalFull, match="not yet applied"):
            j.append(_entry(9, 300_000))
        j.forget(big[0].request_hash)
        wait_until(lambda: j.pending_bytes() == 600_000, message="the forget to be written")
        j.append(_entry(9, 300_000)).result(timeout=10)   # room again once applied
    finally:
        j.close()


def test_what_was_applied_leaves_the_count_when_the_file_is_gone(tmp_path):
    """Forgets that meet the commit noticing a removed file still leave the count: else the journal would
    look full for good and refuse with 429."""
    path = str(tmp_path / "j.sqlite")
    j = Journal(path)
    try:
        first, second, third = _entry(1), _entry(2), _entry(3)
        j.append(first).result(timeout=10)
        with j._con_lock:            # park the journal's thread inside the next commit, past its file check
            blocked = j.append(second)
            wait_until(lambda: j._queue.empty(), message="the thread to take the request")
            time.sleep(0.3)
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
            j.forget(first.request_hash)
            j.forget(second.request_hash)
            try:                     # queued with both forgets: one commit, which finds the file gone
                late = j.append(third)
            except JournalUnavailable:
                late = None          # the thread noticed first: refused at once
        futures.wait([blocked], timeout=10)
        if late is not None:
            with pytest.raises(JournalUnavailable, match="removed"):
                late.result(timeout=10)
        wait_until(lambda: j.pending_bytes() == 0 and j.pending_requests() == 0, message="the count to empty")
    finally:
        j.close()


def _store_and_journal(tmp_path):
    store = DuckDBStore(str(tmp_path / "tt.duckdb"))
    journal = Journal(str(tmp_path / "tt.duckdb.journal"))
    store.commit_interval_s = 5.0   # the writer gathers for 5 s: the journal answers first
    store.read_after_ack = True
    return store, journal, Ingestor(store, journal=journal)


def _count(store, table="transitions") -> int:
    return store.query(f"select count(*) from {table}").rows[0][0]


def test_a_request_is_acknowledged_from_the_journal_and_a_read_waits_for_its_commit(tmp_path):
    store, journal, ing = _store_and_journal(tmp_path)
    reqs = fixture_requests()
    try:
        for sig, body in reqs:
            accepted = asyncio.run(ing.export(sig, body, "protobuf", "test"))
            assert accepted.ack.batch == 0 and not accepted.ack.duplicate   # answered before the commit
        assert store.stats().batches == 0    # every one acknowledged while the writer still gathered
        assert journal.pending_requests() > 0
        assert _count(store) == 24          # a read waits for what was acknowledged before it
        assert _count(store, "ingest_ledger") == len(reqs)
        wait_until(lambda: journal.pending_requests() == 0, message="the journal to forget what was committed")
    finally:
        ing.close()
        store.close()
        ing.close_journal()


def test_replay_applies_what_the_store_lacks_exactly_once(tmp_path):
    reqs = fixture_requests()
    store, journal, ing = _store_and_journal(tmp_path)
    # Half of the requests went through (committed); the other half is only journaled, as if the server
    # had been killed between the journal's fsync and the store's commit.
    for sig, body in reqs[: len(reqs) // 2]:
        asyncio.run(ing.export(sig, body, "protobuf", "test"))
    assert _count(store, "ingest_ledger") == len(reqs) // 2
    wait_until(lambda: journal.pending_requests() == 0, message="the journal to forget what was committed")
    for sig, body in reqs:   # every request journaled again (the first half is then in both)
        h = Ingestor._hash(sig, body)
        journal.append(JournalEntry(h, sig, "protobuf", "test", 1, body)).result(timeout=10)
    ing.close()
    store.close()
    ing.close_journal()
    for start in range(2):   # a second start finds nothing more to do
        store, journal, ing = _store_and_journal(tmp_path)
        try:
            got = ing.replay()
            if start == 0:
                assert (got.applied, got.already_stored) == (len(reqs) - len(reqs) // 2, len(reqs) // 2)
            else:
                assert got == (0, 0, 0)
            assert _count(store, "ingest_ledger") == len(reqs)
            assert _count(store) == 24
            wait_until(lambda: journal.pending_requests() == 0, message="the journal to empty")
        finally:
            ing.close()
            store.close()
            ing.close_journal()


def test_a_request_refused_as_bad_data_leaves_the_journal(tmp_path):
    """The body is journaled as it arrives (its fsync overlaps the mapping); a request then refused as bad
    data is taken out again, and nothing of it is stored."""
    from tasktrail.ingest.decode import DecodeError
    store, journal, ing = _store_and_journal(tmp_path)
    try:
        with pytest.raises(DecodeError):
            asyncio.run(ing.export("logs", b"\xff\xff not protobuf", "protobuf", "test"))
        wait_until(lambda: journal.pending_requests() == 0 and not list(journal.all_entries()),
                   message="the refused request to leave the journal")
        assert journal.pending_bytes() == 0
        assert _count(store, "ingest_ledger") == 0
    finally:
        ing.close()
        store.close()
        ing.close_journal()


def test_dropping_a_refused_copy_keeps_the_other_copy_of_the_same_request(tmp_path):
    j = Journal(str(tmp_path / "j.sqlite"))
    try:
        e = _entry(1)
        j.append(e).result(timeout=10)    # acknowledged from the journal
        j.append(e).result(timeout=10)    # the same request again, refused after it was journaled
        j.drop(e.request_hash, len(e.body))
        wait_until(lambda: len(list(j.all_entries())) == 1, message="one copy to be dropped")
        assert list(j.all_entries()) == [e]
        assert (j.pending_requests(), j.pending_bytes()) == (1, len(e.body))
    finally:
        j.close()


def test_a_refused_request_whose_journal_append_failed_leaves_the_acknowledged_copy(tmp_path):
    """A retry of an acknowledged request (same hash) whose own append failed and which was then refused
    must not delete the acknowledged copy: nothing else would apply it again."""
    from tasktrail.ingest.journaled import JournaledApply
    store = DuckDBStore(str(tmp_path / "tt.duckdb"))
    j = Journal(str(tmp_path / "j.sqlite"))
    applier = JournaledApply(store, j, map_here=None)
    try:
        e = _entry(1)
        j.append(e).result(timeout=10)    # the first copy: acknowledged from the journal
        failed = futures.Future()
        failed.set_exception(JournalUnavailable("disk error"))   # the retry's own append failed
        applier.refused(e, failed)
        ok = j.append(_entry(2))          # a later commit, which would carry a queued drop
        ok.result(timeout=10)
        time.sleep(0.7)                   # drops also go out after 0.5 s of quiet
        assert e in list(j.all_entries())
        assert j.pending_requests() == 2
    finally:
        applier.close()
        j.close()
        store.close()


def test_replay_drops_a_journaled_request_that_does_not_decode(tmp_path):
    """A crash between a bad request's journaling and its drop leaves it journaled: the replay drops it
    (its client was answered INVALID_ARGUMENT) and applies the rest."""
    reqs = fixture_requests()
    store, journal, ing = _store_and_journal(tmp_path)
    journal.append(JournalEntry("bad", "logs", "protobuf", "test", 1, b"\xff\xff not protobuf")).result(timeout=10)
    sig, body = reqs[0]
    journal.append(JournalEntry(Ingestor._hash(sig, body), sig, "protobuf", "test", 2, body)).result(timeout=10)
    ing.close()
    store.close()
    ing.close_journal()
    store, journal, ing = _store_and_journal(tmp_path)
    try:
        got = ing.replay()
        assert (got.applied, got.already_stored) == (1, 0)
        assert _count(store, "ingest_ledger") == 1
        wait_until(lambda: journal.pending_requests() == 0, message="the journal to empty")
    finally:
        ing.close()
        store.close()
        ing.close_journal()


def _metric(srv, name: str) -> float:
    text = httpx.get(srv.web + "/metrics", timeout=10).text
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                return s.value
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.slow
def test_kill_9_between_the_journals_fsync_and_the_stores_commit_loses_nothing(tmp_path, record):
    """The writer gathers for 10 s and nothing reads, so every acknowledgement comes from the journal
    alone; kill -9, then the next start replays them into the store, each once."""
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--apply-interval", "10", "--ingest-workers", "0")
    reqs = fixture_requests()
    try:
        t0 = time.monotonic()
        for sig, body in reqs:
            r = httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB, timeout=30)
            assert r.status_code == 200 and "X-Tasktrail-Batch" not in r.headers   # not committed yet
        acked_in = time.monotonic() - t0
    finally:
        srv.stop(signal.SIGKILL)
    # What the killed server left: every request in the journal, none in the store.
    with sqlite3.connect(db + ".journal") as con:
        assert con.execute("select count(*) from requests").fetchone() == (len(reqs),)
    con = duckdb.connect(db)
    assert con.execute("select count(*) from ingest_ledger").fetchone() == (0,)
    con.close()
    srv = start_server(db)
    try:
        rows = httpx.post(srv.api + "/sql", json={"sql": "select (select count(*) from transitions), "
                          "(select count(*) from spans), (select count(*) from ingest_ledger)"}).json()["rows"]
        assert rows == [[24, 8, len(reqs)]]
        wait_until(lambda: _metric(srv, "tasktrail_journal_pending_requests") == 0, message="the journal to empty")
        assert _metric(srv, "tasktrail_journal_size_bytes") > 0
        for sig, body in reqs:   # the clients' retries after the restart: acknowledged, not stored twice
            assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
        rows2 = httpx.post(srv.api + "/sql", json={"sql": "select count(*) from ingest_ledger"}).json()["rows"]
        assert rows2 == [[len(reqs)]]
    finally:
        srv.stop()
    record("Faults and load", "kill -9 after the journal's fsync and before the store's commit (--apply-interval 10)", 1,
           f"{len(reqs)} requests acknowledged in {acked_in * 1000:.0f} ms, none committed (the journal held all "
           f"{len(reqs)}, the ledger none); after the restart all stored once (24 transitions, 8 spans), the "
           f"journal empty, the clients' retries not stored twice")


def test_a_record_is_committed_without_any_read(tmp_path):
    """The writer applies the journal on its own cadence (--apply-interval, 0.2 s), not only when a read
    asks for it: nothing here reads (no HTTP read, no /metrics, which reads the ledger), the DuckDB WAL grows."""
    srv = start_server(str(tmp_path / "tt.duckdb"))
    wal = srv.db + ".wal"
    try:
        before = os.path.getsize(wal) if os.path.exists(wal) else 0
        sig, body = fixture_requests()[0]
        assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
        wait_until(lambda: os.path.exists(wal) and os.path.getsize(wal) > before, timeout=10, interval=0.02,
                   message="the apply")
        assert os.path.exists(srv.db + ".journal")
    finally:
        srv.stop()


def test_journal_off_acknowledges_at_the_commit(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--journal", "off")
    try:
        sig, body = fixture_requests()[0]
        r = httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB)
        assert r.status_code == 200 and int(r.headers["X-Tasktrail-Batch"]) >= 1
        assert not os.path.exists(srv.db + ".journal")
        assert "tasktrail_journal_size_bytes" not in httpx.get(srv.web + "/metrics").text
    finally:
        srv.stop()


def test_a_damaged_journal_stops_the_start_with_a_clear_error(tmp_path):
    db = tmp_path / "tt.duckdb"
    (tmp_path / "tt.duckdb.journal").write_bytes(b"this is not a SQLite file" * 100)
    with pytest.raises(AssertionError) as err:
        start_server(str(db))
    assert "cannot open the write-ahead journal" in str(err.value) and "move it away" in str(err.value)
    assert "Traceback" not in str(err.value)


def _big_request(k: int, size: int = 300_000) -> bytes:
    return logs_request(line(f"{k}:" + "x" * size, time.time_ns())).SerializeToString()


def test_past_journal_max_bytes_ingest_answers_429(tmp_path):
    """The store applies every 5 s here, so the journal fills: past --journal-max-bytes a request is refused
    with 429 and Retry-After (nothing of it kept), as for a full write queue."""
    srv = start_server(str(tmp_path / "tt.duckdb"), "--journal-max-bytes", "1048576", "--apply-interval", "5",
                       "--ingest-workers", "0")
    try:
        codes = [httpx.post(f"{srv.otlp_http}/v1/logs", content=_big_request(k), headers=PB, timeout=30)
                 for k in range(6)]
        assert [r.status_code for r in codes[:3]] == [200] * 3
        refused = [r for r in codes if r.status_code == 429]
        assert refused and refused[0].headers.get("Retry-After")
        assert "--journal-max-bytes" in refused[0].content.decode("utf-8", "replace")   # the Status message
        stored = httpx.post(srv.api + "/sql", json={"sql": "select count(*) from log_records"}).json()["rows"]
        assert stored == [[len(codes) - len(refused)]]
    finally:
        srv.stop()


def test_a_removed_journal_is_noticed_and_nothing_acknowledged_is_lost(tmp_path):
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--apply-interval", "1", "--ingest-workers", "0")
    try:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + ".journal" + suffix):
                os.remove(db + ".journal" + suffix)
        acked = [k for k in range(5) if httpx.post(f"{srv.otlp_http}/v1/logs", content=_big_request(k, 100),
                                                   headers=PB, timeout=30).status_code == 200]
        assert acked == list(range(5))
    finally:
        srv.stop(signal.SIGKILL)
    assert any("removed or replaced while in use" in line for line in srv.output)
    srv = start_server(db)
    try:
        rows = httpx.post(srv.api + "/sql", json={"sql": "select count(*) from log_records"}).json()["rows"]
        assert rows == [[5]]   # acknowledged at the store's commit once the journal was gone
    finally:
        srv.stop()


def test_a_journal_of_another_store_is_refused(tmp_path):
    a, b = str(tmp_path / "a.duckdb"), str(tmp_path / "b.duckdb")
    srv = start_server(a, "--apply-interval", "10", "--ingest-workers", "0")
    try:
        assert httpx.post(f"{srv.otlp_http}/v1/logs", content=_big_request(1, 100), headers=PB).status_code == 200
    finally:
        srv.stop(signal.SIGKILL)   # a's journal keeps the request
    start_server(b).stop()         # b exists, with its own (empty) journal
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(a + ".journal" + suffix):
            shutil.copy(a + ".journal" + suffix, b + ".journal" + suffix)
    with pytest.raises(AssertionError) as err:
        start_server(b)
    assert "holds requests of another store" in str(err.value) and "Traceback" not in str(err.value)
    srv = start_server(a)          # its own store takes it
    try:
        rows = httpx.post(srv.api + "/sql", json={"sql": "select count(*) from log_records"}).json()["rows"]
        assert rows == [[1]]
    finally:
        srv.stop()


def test_a_journal_path_that_is_a_directory_says_so(tmp_path):
    with pytest.raises(AssertionError) as err:
        start_server(str(tmp_path / "tt.duckdb"), "--journal", str(tmp_path))
    assert "is a directory" in str(err.value)
