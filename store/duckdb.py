"""The embedded backend: one DuckDB file, one writer thread, cursors for readers.

Writes (store/writer.py): `submit` admits a request's rows into a bounded queue (counted in records)
and returns a Future. The writer thread drains whatever is queued into one batch, appends each table
as an Arrow table inside one transaction together with the ingest-ledger rows, commits, and only then
resolves the futures (ack = durable). Retried identical requests (same content hash) are acknowledged
without appending.

Reads (store/reads.py): each reading thread gets its own cursor; every read has a time limit
(interrupt) and a row cap, so a slow reader never holds the writer.

This module opens the database (migrations, views), holds the state both sides share, reopens the
database after a fatal error, and runs the maintenance the contract names (retention, rebuild, close).
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from typing import Optional

import duckdb

from tasktrail.proto.model import TABLES

from . import binding, invocation_keys, state, status_counts
from .api import StoreUnavailable, WriterStats
from .fold_cache import KnownIds, RecentHistories
from .migrations import migration_files, views_sql  # noqa: F401  (migration_files: the tests' too)
from .reads import CursorReads
from .record_window import RecordWindow
from .rows import arrow_schemas, check_schema
from .runner_fold import RunnerFold
from .stream_reads import StreamReaders
from .watchdog import Watchdog
from .writer import STOP, BatchWriter

log = logging.getLogger("tasktrail.store")


class DuckDBStore(BatchWriter, CursorReads):
    """The append-only log in one DuckDB file (see store/api.py for the contract: EventLog)."""

    def __init__(self, path: str, *, read_only: bool = False, queue_records: int = 200_000,
                 max_batch_records: int = 100_000, dedupe_window: int = 200_000, record_window: int = 300_000,
                 memory_limit: str = "1GB", threads: int = 2, idle_checkpoint_bytes: int = 8 << 20,
                 checkpoint_threshold: str = "16MB", stream_readers: int = 2, keys_every_s: float = 2.0) -> None:
        self.path = path
        binding.skip_absent_imports()   # DuckDB's binding would search sys.path for pandas per parameter
        # Cursors for streamed reads (ad-hoc SQL): how many of them run at once (store/stream_reads.py).
        self._streams = StreamReaders(stream_readers)
        self.read_only = read_only
        self._capacity = queue_records
        self._max_batch = max_batch_records
        self._dedupe_window = dedupe_window
        # Identities of the latest `record_window` records (store/record_window.py): a re-delivered span,
        # log line or heartbeat is dropped before it is appended.
        self._window = RecordWindow(record_window)
        # runner_state as last committed, folded in Python by the writer (store/runner_fold.py).
        self._runners = RunnerFold()
        self._runner_changes: dict = {}
        # What spares the fold a read of stored records (store/fold_cache.py).
        self._known = KnownIds()
        self._recent = RecentHistories()
        self._recent_updates: dict = {}
        self._log_spans, self._log_span_updates = {}, {}   # {app: (first, last)} of app_log_span as stored
        # No file access for any statement (the SQL endpoint's second wall); Arrow appends still work.
        # Checkpoints block every commit while they run, so the writer checkpoints when it is idle
        # (`idle_checkpoint_bytes` of WAL) and DuckDB's own threshold is the rule under load. Until a checkpoint
        # the rows of the WAL stay in DuckDB's memory (IN_MEMORY_TABLE in duckdb_memory(), about twice the WAL:
        # at 128MB, 100-260 MB of a B4 run at 6,500 records/s), so the threshold bounds that part of the RSS;
        # with the journal (ingest/journal.py) a checkpoint delays the store's apply, not acknowledgements.
        # DuckDB's allocator hands freed memory back on its own threads, not only when a later query runs:
        # after a query that met the process's memory cap (tasktrail/memory_cap.py) the address space it
        # reached is back within seconds (without: 275 MB of a 5-deep hex() left mapped for good).
        self._config = {"threads": threads, "memory_limit": memory_limit, "enable_external_access": False,
                        "checkpoint_threshold": checkpoint_threshold, "allocator_background_threads": True}
        self._idle_checkpoint_bytes = idle_checkpoint_bytes
        self._wal = path + ".wal"
        self._generation = 0          # bumped when the database is reopened: thread cursors are renewed
        self._cursors: list = []      # every cursor handed out, closed when the database is reopened
        self._broken: str | None = None  # why the database is unusable (a fatal error), until reopened
        self._open()
        self._read_lock = threading.Lock()
        self._local = threading.local()
        self._watchdog = Watchdog()
        self._stats = WriterStats(queue_capacity=queue_records)
        self._lock = threading.Lock()
        self._pending = 0
        self._closed = read_only
        self._shut = False
        self._hashes: OrderedDict[str, int] = OrderedDict()
        self._resource_ids: set[str] = set()
        self._next_batch = 1
        self._queue: queue.Queue = queue.Queue()
        self._init_applied()
        self._writer = None
        self.keys_every_s = keys_every_s
        self._keys_due = time.monotonic() + keys_every_s
        if not read_only:
            self._load_state()
            self._writer = threading.Thread(target=self._run, name="tasktrail-writer", daemon=True)
            self._writer.start()

    # Whether the writer keeps invocation_keys' runs merged (`_upkeep`; a lake's folder does it instead).
    keys_in_writer = True

    def _upkeep(self) -> None:
        """Between batches, at most every `keys_every_s`: flush and merge invocation_keys' runs until nothing is
        due, each step a transaction of its own. On the writer's thread and connection: an upkeep transaction on
        another thread made DuckDB refuse checkpoints ("other write transactions active"), so the WAL grew."""
        if not self.keys_in_writer or time.monotonic() < self._keys_due:
            return
        self._keys_due = time.monotonic() + self.keys_every_s
        try:
            invocation_keys.keep(self._con, lambda: self._shut)   # close() sets _shut before it stops the writer
        except duckdb.Error as exc:  # a fatal error is the writer's to recover from: try again next round
            log.warning("invocation_keys upkeep failed: %s", str(exc).splitlines()[0][:200])
            self._fatal(exc)

    def _open(self) -> None:
        try:
            self._con = duckdb.connect(self.path, read_only=self.read_only, config=self._config)
        except duckdb.Error as exc:
            raise StoreUnavailable(f"cannot open store {self.path}: {exc}") from None
        self._con.execute("SET enable_progress_bar = false")  # a server's log is not a terminal
        if not self.read_only:
            self._migrate()
            self._con.execute(views_sql())
        self._ready()

    def _ready(self, tables_in: str = "") -> None:
        """Lock the configuration, pin the tables to the row types, and make the root of the readers'
        cursors (`tables_in`: the catalog prefix of the tables, for a lake)."""
        con = self._con
        self._streams.fill(con, self._init_cursor)  # they set their own buffer: before the lock
        con.execute("SET lock_configuration = true")
        describe = {t: [(r[0], r[1]) for r in con.execute(f"DESCRIBE {tables_in}{t}").fetchall()] for t in TABLES}
        check_schema(describe)
        self._schemas = arrow_schemas(describe)
        self._read_root = con.cursor()
        self._init_cursor(self._read_root)

    def _reopen(self) -> bool:
        """After a fatal error (disk full, I/O error) DuckDB refuses every statement until the database
        is opened again: close every connection to it and open it afresh, which replays the WAL (a
        batch whose commit failed is not in it). True once it works; the writer retries until then."""
        with self._read_lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
            for con in (self._read_root, self._con):
                try:
                    con.close()
                except duckdb.Error:
                    pass
            try:
                self._open()
                self._load_state()
            except Exception as exc:  # still no space, still unreadable: try again later
                log.warning("reopening the store failed: %s", exc)
                return False
            self._generation += 1
        with self._lock:
            self._broken = None
        log.warning("store reopened after a fatal error; ingest resumes")
        return True

    # --- schema ----------------------------------------------------------------------
    # Where applied migrations are recorded (a lake has no PRIMARY KEY: store/ducklake.py).
    MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP)"

    def _apply_migrations(self, con) -> bool:
        """Apply every migration not yet recorded, each in its own transaction; True when one of them
        created or reshaped the caches (then they are rebuilt)."""
        con.execute(self.MIGRATIONS_TABLE)
        done = {r[0] for r in con.execute("SELECT name FROM schema_migrations").fetchall()}
        rebuild = False
        for name, sql in migration_files():
            if name in done:
                continue
            con.begin()
            try:
                con.execute(sql)
                if name in state.BACKFILLED_BY:  # filled in the same transaction: all of it or none
                    state.BACKFILLED_BY[name](con)
                con.execute("INSERT INTO schema_migrations VALUES (?, now()::TIMESTAMP)", [name])
                con.commit()
            except Exception:
                con.rollback()
                raise
            rebuild = rebuild or name in state.REBUILT_BY
            self._migrated(con, name)
            log.info("applied migration %s", name)
        return rebuild

    def _migrated(self, con, name: str) -> None:
        """Called after each migration is applied (a lake partitions its new tables here)."""

    def _migrate(self) -> None:
        con = self._con
        if self._apply_migrations(con) or not state.hash_is_current(con):
            n = state.rebuild(con)
            log.info("rebuilt the invocation_state cache (%d invocations)", n)
            return
        for name in state.mend_read_models(con):
            log.info("rebuilt %s: it did not cover the invocation_state cache", name)

    def rebuild_state(self) -> int:
        """Recompute the invocation_state cache from the log (on the writer's connection: call it
        with ingest stopped, as `tasktrail rebuild` does)."""
        return self.on_writer(self._rebuild_state)

    def _rebuild_state(self, con) -> int:
        n = state.rebuild(con)
        self._reload_fold_memory(con)
        return n

    def _reload_fold_memory(self, con) -> None:
        """What the writer's folds remember of the caches, read again from them (after opening or a rebuild)."""
        if self.fold_in_writer:
            self._runners.load(con)
            self._known.load(con)
            self._recent.clear()
            self._log_spans.clear()

    def _load_state(self) -> None:
        con = self._con
        self._next_batch = (con.execute("SELECT coalesce(max(batch), 0) FROM ingest_ledger").fetchone()[0]) + 1
        rows = con.execute("SELECT request_hash, batch FROM ingest_ledger ORDER BY batch DESC LIMIT ?",
                           [self._dedupe_window]).fetchall()
        for h, b in reversed(rows):
            self._hashes[h] = b
        self._resource_ids = {r[0] for r in con.execute("SELECT DISTINCT resource_id FROM resources").fetchall()}
        self._window.load(con)
        self._reload_fold_memory(con)

    def retain(self, policy, now=None):
        """One retention pass (store/retention.py) on a connection of its own: the writer goes on; then
        status_counts and open_invocations are recomputed on the writer's thread (a GROUP BY of the cache),
        when it removed anything."""
        from datetime import datetime, timezone

        from . import retention

        now = now or datetime.now(timezone.utc).replace(tzinfo=None)
        with self._read_lock:
            con = self._read_root.cursor()
            self._init_cursor(con)
        try:
            rep = retention.apply(con, policy, now, recount=not self.fold_in_writer)
        finally:
            con.close()
        if self.fold_in_writer and rep.removed:
            # The counts are recomputed on the writer's thread, between its batches: in retention's own
            # transaction they would conflict with the writer's, which moves the same rows with every batch.
            # A pass that removed nothing queues no job: a job ends the batch the writer is gathering.
            self.on_writer(self._recount)
        return rep

    def _recount(self, con) -> None:
        """After retention: recompute the counts and forget the unfinished histories the fold remembers (one of
        them may be an invocation retention removed: folding its next record from memory would uncount a status
        it no longer holds) and the log spans as stored (retention narrows them)."""
        status_counts.rebuild_in_transaction(con)
        self._recent.clear()
        self._log_spans.clear()

    def size_bytes(self) -> Optional[int]:
        """Bytes the store takes on disk: the database file and its write-ahead log (0 for what is
        missing), or None for an in-memory database."""
        if self.path == ":memory:" or self.path.startswith("ducklake:"):
            return None
        return sum(os.path.getsize(f) for f in (self.path, self._wal) if os.path.exists(f))

    def stats(self) -> WriterStats:
        with self._lock:
            self._stats.queue_records = self._pending
            return self._stats

    def close(self) -> None:
        with self._lock:
            if self._shut:
                return
            self._shut = self._closed = True
        if self._writer is not None:
            self._queue.put(STOP)
            self._writer.join()
            self._writer = None
            try:
                self._con.execute("CHECKPOINT")
            except duckdb.Error as exc:
                log.warning("checkpoint at close failed: %s", exc)
        self._con.close()
