"""The write side of the DuckDB store (store/api.py LogWriter): a bounded queue and one writer thread.

`submit` admits a request's rows into a bounded queue (counted in records) and returns a Future. The
writer thread drains whatever is queued into one batch, appends each table as an Arrow table inside one
transaction together with the ingest-ledger rows, folds the batch into the caches, commits, and only then
resolves the futures (ack = durable). Retried identical requests (same content hash) are acknowledged
without appending. After a fatal DuckDB error (disk full, I/O error) it fails what is queued and reopens
the database until it works.

`BatchWriter` is a part of DuckDBStore (store/duckdb.py), which holds the state it uses: the connection
`_con`, `_lock`, the queue and its counts, the request hashes of the dedupe window (`_hashes`), the
record window (`_window`, store/record_window.py), the caches' folds (`_runners`, `_known`, `_recent`)
and `_reopen`.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import Future
from typing import NamedTuple

import duckdb
import pyarrow as pa

from tasktrail.proto.model import TABLES

from . import invocation_keys, status_counts
from .api import Ack, LedgerEntry, QueueFull, StoreClosed, StoreUnavailable
from .invocation_fold import fold_transitions
from .rows import to_arrow
from .writer_queue import FLUSH, STOP, WriterQueue, Job

log = logging.getLogger("tasktrail.store")
_LEDGER_COLUMNS = ("received_at", "request_hash", "transport", "signal", "body_bytes", "records", "rows")


class _Item(NamedTuple):
    rows: dict
    records: int
    entry: LedgerEntry
    future: Future


class BatchWriter(WriterQueue):
    """submit, arrow_schemas and is_duplicate (store/api.py LogWriter), and the writer thread (`_run`)."""

    # Fold each batch into the caches in its own transaction (store/state.py). A lake folds apart.
    fold_in_writer = True
    # Seconds the writer gathers requests before a commit (0: commit whatever is queued now).
    commit_interval_s = 0.0
    # Reads wait for what was submitted before them (acknowledgements come before the commit: a journal).
    read_after_ack = False
    # How long a read waits for that, at most, in seconds.
    read_wait_s = 1.0

    def arrow_schemas(self) -> dict:
        return dict(self._schemas)

    def is_duplicate(self, request_hash: str) -> bool:
        return request_hash in self._hashes

    def stored_requests(self, hashes: list[str]) -> set[str]:
        got = {h for h in hashes if h in self._hashes}
        rest = [h for h in hashes if h not in got]
        if rest:
            res = self.query("SELECT DISTINCT request_hash FROM ingest_ledger "
                             "WHERE request_hash IN (SELECT unnest(?::VARCHAR[]))", [rest], max_rows=len(rest) + 1)
            got |= {r[0] for r in res.rows}
        return got

    def store_id(self) -> str:
        """This store's id (a UUID made once by migration 0012), for its journal to check it belongs here."""
        return self.query("SELECT min(store_id) FROM store_identity").rows[0][0]

    def submit(self, rows: dict[str, list], records: int, entry: LedgerEntry) -> Future:
        fut: Future = Future()
        with self._lock:
            if self._closed:
                raise StoreClosed("the store is closed")
            if self._broken:
                raise StoreUnavailable(f"the store cannot write now ({self._broken}); retry later")
            if self._pending and self._pending + records > self._capacity:
                self._stats.rejected_full += 1
                self._ask_flush()
                raise QueueFull(f"ingest queue is full ({self._pending} of {self._capacity} records queued)",
                                retry_after_s=1.0)
            self._pending += records
            with self._applied:
                self._submitted += 1
                self._queue.put(_Item(rows, records, entry, fut))
        return fut

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                item = self._queue.get(timeout=1.0)
            except queue.Empty:
                if self._broken:  # a read found the database invalidated: reopen it
                    self._recover()
                else:
                    self._upkeep()
                continue
            if item is STOP:
                break
            if item is FLUSH:
                self._flush_taken()
                continue
            if isinstance(item, Job):
                self._run_job(item)
                if self._broken:   # a fatal error in the job: reopen before the next batch
                    self._recover()
                continue
            items, job = [item], None
            n = item.records
            deadline = time.monotonic() + self.commit_interval_s
            # Gather until the batch is full or holds half of what the queue admits (past it, clients
            # would be refused while the writer waits).
            while n < min(self._max_batch, self._capacity // 2):
                try:
                    wait = deadline - time.monotonic()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is STOP:
                    stop = True
                    break
                if nxt is FLUSH:
                    self._flush_taken()
                    break
                if isinstance(nxt, Job):
                    job = nxt
                    break
                items.append(nxt)
                n += nxt.records
            self._commit(items)
            if job is not None:
                self._run_job(job)
            if self._broken:
                self._recover()
                continue
            self._upkeep()
            if self._queue.empty():
                self._checkpoint_if_due()

    def _upkeep(self) -> None:
        """Work the writer does between batches on its own connection, where no transaction of another thread
        can stop a checkpoint (a store's read models kept in runs: DuckDBStore); nothing here."""

    def _recover(self) -> None:
        """Fail what is queued (its clients retry) and reopen the database until it works."""
        delay = 0.2
        while True:
            self._fail_queued()
            if self._reopen():
                return
            with self._lock:
                if self._shut:
                    return
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _fail_queued(self) -> None:
        why = f"the store cannot write now ({self._broken}); retry later"
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is STOP:
                self._queue.put(STOP)
                return
            if item is FLUSH:
                self._flush_taken()
                continue
            if not isinstance(item, Job):
                with self._lock:
                    self._pending -= item.records
                self._mark_done(1)
            item.future.set_exception(StoreUnavailable(why))

    def _fatal(self, exc: Exception) -> None:
        """Note a fatal DuckDB error (found by a write or a read): the database is invalidated until reopened."""
        if isinstance(exc, duckdb.FatalException) or "invalidated" in str(exc):
            with self._lock:
                self._broken = str(exc).split("\n")[0][:300]

    def _checkpoint_if_due(self) -> None:
        """Fold the WAL into the file while nothing waits, so commits under load rarely pay for it."""
        try:
            if os.path.getsize(self._wal) < self._idle_checkpoint_bytes:
                return
        except OSError:
            return
        t0 = time.perf_counter()
        try:
            self._con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.warning("idle checkpoint failed: %s", exc)
            self._fatal(exc)
            if self._broken:
                self._recover()
            return
        with self._lock:
            self._stats.checkpoints += 1
            self._stats.checkpoint_seconds_sum += time.perf_counter() - t0

    def _take_batch_id(self) -> int:
        """The number of the next batch (here: one more than the last)."""
        return self._next_batch

    def _stored_elsewhere(self, hashes: list[str]) -> set[str]:
        """Hashes of these requests that are already in the ledger though not in this process's window
        (another node stored them: see store/ducklake.py). One node: none."""
        return set()

    def _commit(self, items: list[_Item]) -> None:
        batch = self._take_batch_id()
        fresh, dupes, in_batch = self._split_repeats(items)
        error = None
        t0 = time.perf_counter()
        noted: set[int] = set()
        if fresh:
            try:
                noted = self._append(batch, fresh)
            except Exception as exc:  # disk full, unwritable file, I/O error: nothing of the batch stays
                log.error("commit of batch %d failed: %s", batch, exc)
                self._fatal(exc)
                error = StoreUnavailable(f"the store could not commit: {str(exc).splitlines()[0][:300]}")
        elapsed = time.perf_counter() - t0
        with self._lock:
            self._pending -= sum(it.records for it in items)
            if error is None:
                if fresh:
                    self._committed(batch, fresh, noted, elapsed)
                self._stats.duplicates += len(dupes)
            else:
                self._stats.failed_batches += 1
        self._mark_done(len(items))
        for it in fresh:
            if error is None:
                it.future.set_result(Ack(batch, False))
            else:
                it.future.set_exception(error)
        for it in dupes:
            if error is not None and it.entry.request_hash in in_batch:
                it.future.set_exception(error)
            else:
                it.future.set_result(Ack(self._hashes.get(it.entry.request_hash, batch), True))

    def _split_repeats(self, items: list[_Item]) -> tuple[list[_Item], list[_Item], set[str]]:
        """(fresh, repeats, hashes of the fresh): a request already stored (here or, for a lake, by another
        node) or earlier in this batch is a repeat, acknowledged without appending."""
        fresh: list[_Item] = []
        dupes: list[_Item] = []
        in_batch: set[str] = set()
        try:
            elsewhere = self._stored_elsewhere([it.entry.request_hash for it in items
                                                if it.entry.request_hash not in self._hashes])
        except duckdb.Error as exc:
            log.warning("ledger lookup failed, deduplicating by this node's window only: %s", exc)
            elsewhere = set()
        for it in items:
            h = it.entry.request_hash
            if h in self._hashes or h in in_batch or h in elsewhere:
                dupes.append(it)
            else:
                in_batch.add(h)
                fresh.append(it)
        return fresh, dupes, in_batch

    def _committed(self, batch: int, fresh: list[_Item], noted: set[int], elapsed: float) -> None:
        """Batch `batch` committed (called under `_lock`): keep what it changed and count it."""
        self._next_batch = batch + 1
        self._window.remember(noted)
        self._runners.apply(self._runner_changes)
        self._recent.apply(self._recent_updates)
        self._log_spans.update(self._log_span_updates)
        for it in fresh:
            self._hashes[it.entry.request_hash] = batch
        while len(self._hashes) > self._dedupe_window:
            self._hashes.popitem(last=False)
        st = self._stats
        st.batches += 1
        st.committed_requests += len(fresh)
        st.committed_records += sum(it.records for it in fresh)
        st.last_commit_at = time.time()
        st.last_commit_seconds = elapsed
        st.commit_seconds_sum += elapsed
        for k, bound in enumerate(st.commit_bounds):
            if elapsed <= bound:
                st.commit_bucket_counts[k] += 1

    def _append(self, batch: int, items: list[_Item]) -> set[int]:
        """Append one batch in one transaction; returns the record identities it holds (to remember once
        committed)."""
        con = self._con
        new_resources: set[str] = set()
        noted: set[int] = set()
        appended: dict = {}
        self._runner_changes = {}
        self._recent_updates = {}
        self._log_span_updates = {}
        con.begin()
        try:
            for table in TABLES:
                tbl = self._batch_table(table, items, new_resources)
                if tbl is None:
                    continue
                tbl = self._window.drop_seen(table, tbl, noted)
                if table == "transitions" and self.fold_in_writer:
                    # exact: against each invocation's records
                    tbl, self._recent_updates = fold_transitions(con, tbl, self._known, self._recent)
                if tbl.num_rows:
                    self._insert(con, table, batch, tbl)
                    appended[table] = tbl
                    if table == "log_records" and self.fold_in_writer:
                        self._log_span_updates = status_counts.widen_log_spans(con, tbl, self._log_spans)
                    if table == "trigger_runs" and self.fold_in_writer:
                        _trigger_keys(con, tbl)
            self._insert(con, "ingest_ledger", batch, _ledger_table(items))
            if self.fold_in_writer:
                self._runner_changes = self._runners.fold(con, appended.get("transitions"),
                                                          appended.get("runner_events"))
            con.commit()
        except Exception:
            try:
                con.rollback()
            except duckdb.Error:
                pass
            raise
        self._resource_ids |= new_resources
        return noted

    def _batch_table(self, table: str, items: list[_Item], new_resources: set[str]):
        """The batch's rows of `table` as one Arrow table (None when it has none); resources the store
        holds, or that came earlier in the batch, are left out (their ids are added to `new_resources`)."""
        rows: list = []
        parts: list = []  # already columnar (mapped by an ingest worker)
        for it in items:
            got = it.rows.get(table, ())
            if isinstance(got, pa.Table):
                parts.append(got)
            else:
                rows.extend(got)
        if table == "resources":
            keep = []
            for r in rows:
                if r.resource_id not in self._resource_ids and r.resource_id not in new_resources:
                    new_resources.add(r.resource_id)
                    keep.append(r)
            rows = keep
        if rows:
            parts.append(to_arrow(rows, self._schemas[table]))
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _insert(self, con, table: str, batch: int, tbl) -> None:
        """Append an Arrow table to `table`. A relation over the Arrow table costs less per statement
        than registering it as a view (~1.9 vs ~2.7 ms), which counts for the many small tables of a
        small batch; columns are projected in the table's own order (insert_into is positional)."""
        names = self._schemas[table].names if table in self._schemas else _LEDGER_COLUMNS
        cols = ", ".join(f'"{c}"' for c in names)
        con.from_arrow(tbl).project(f"{int(batch)}::BIGINT AS batch, {cols}").insert_into(table)


def _trigger_keys(con, tbl: pa.Table) -> None:
    """Append the invocation keys of these trigger_runs rows (store/invocation_keys.py, kind 2)."""
    con.register("tt_trigger_runs_in", tbl)
    try:
        invocation_keys.append_trigger_runs(con, "tt_trigger_runs_in")
    finally:
        con.unregister("tt_trigger_runs_in")


def _ledger_table(items: list[_Item]) -> pa.Table:
    """The ingest ledger's rows of a batch's requests, as an Arrow table."""
    ledger = [(it.entry.received_at, it.entry.request_hash, it.entry.transport, it.entry.signal,
               it.entry.body_bytes, it.records, sum(len(v) for v in it.rows.values())) for it in items]
    cols = list(zip(*ledger))
    return pa.table({
        "received_at": pa.array(cols[0], pa.timestamp("us")), "request_hash": pa.array(cols[1], pa.string()),
        "transport": pa.array(cols[2], pa.string()), "signal": pa.array(cols[3], pa.string()),
        "body_bytes": pa.array(cols[4], pa.int64()), "records": pa.array(cols[5], pa.int64()),
        "rows": pa.array(cols[6], pa.int64())})
