"""The write-ahead journal: a request is acknowledged once its body is fsynced here, and applied to the
store behind it.

One SQLite file in WAL mode (`synchronous=FULL`: every commit that carries a request is fsynced), one
thread that writes it. Requests that arrive while a commit is under way go in the next one, so one fsync
covers everything that queued meanwhile (group commit). A request leaves the journal once the store has
committed it (`forget`); what is still here at start is replayed, and the ingest ledger (its content hash)
decides what the store already holds, so each request is applied exactly once.

Why SQLite and not segment files of our own: it is in the standard library, its WAL commit is one
`fsync` of an append, and it gives the lookups by hash and the deletes for free. Its cost here is a few
hundred microseconds per commit of many requests (benchmarks/README.md, "the journal").

The journal holds at most `max_bytes` of request bodies not yet applied: past it `append` raises
JournalFull (ingest answers 429, as for a full write queue). It belongs to one store (its id, kept in
`meta`): a journal holding another store's requests is refused at start. If its file is removed while
the server runs, requests are acknowledged at the store's commit from then on.
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
from concurrent.futures import Future
from typing import Iterator, NamedTuple

log = logging.getLogger("tasktrail.journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_hash TEXT NOT NULL,
    signal TEXT NOT NULL,
    fmt TEXT NOT NULL,
    transport TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_hash ON requests (request_hash);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_STOP = object()
# Forgets wait for the next commit that carries requests, or for this many seconds of quiet.
_FORGET_IDLE_S = 0.5


class JournalEntry(NamedTuple):
    """One request as journaled: its content hash (hex), signal, body format ("protobuf" / "json"),
    transport, arrival time (µs since the epoch) and body (bytes, as received after inflating)."""
    request_hash: str
    signal: str
    fmt: str
    transport: str
    received_at: int
    body: bytes


class JournalFull(Exception):
    """The journal holds `max_bytes` of requests not yet applied."""


class JournalUnavailable(Exception):
    """The journal could not write (disk full, unwritable file): nothing of the request was journaled."""


class _Append(NamedTuple):
    entry: JournalEntry
    future: Future


class _Drop(NamedTuple):
    """One copy of a request journaled and then refused (bad data, a full write queue): delete it."""
    request_hash: str
    size: int


class Journal:
    """`append` (a Future resolved once fsynced), `forget` (applied), `entries` (what to replay),
    `size_bytes` and `pending_bytes`. Opening creates the file if needed."""

    def __init__(self, path: str, *, max_bytes: int = 256 << 20, owner: str | None = None) -> None:
        """`owner`: the id of the store this journal belongs to (store/api.py store_id); a journal that
        holds requests of another store raises JournalUnavailable instead of being applied here."""
        self.path = path
        self.max_bytes = max_bytes
        self._con = self._connect()
        self._claim(owner)
        self._inode = os.stat(path).st_ino
        self._lost = False    # the file was removed or replaced while open: acknowledge at the store's commit
        self._con_lock = threading.Lock()   # the connection: the journal's thread and the readers of entries
        self._lock = threading.Lock()       # the counts and `_closed` (never held across a write)
        self._sizes: dict[str, int] = dict(self._con.execute(
            "SELECT request_hash, sum(length(body)) FROM requests GROUP BY request_hash").fetchall())
        self._pending = sum(self._sizes.values())
        self._queue: queue.Queue = queue.Queue()
        self._forgets: list[str] = []
        self._drops: list[_Drop] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tasktrail-journal", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        """The journal's connection (the file made if new). Raises JournalUnavailable naming the file."""
        if os.path.isdir(self.path):
            raise JournalUnavailable(f"the write-ahead journal {self.path} is a directory: give --journal a file path")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise JournalUnavailable(f"the write-ahead journal's folder {parent} does not exist: create it or "
                                     f"give --journal another path")
        try:
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA auto_vacuum=INCREMENTAL")   # takes effect in a new file: freed pages go back
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA journal_size_limit=67108864")
            con.executescript(_SCHEMA)
            return con
        except sqlite3.Error as exc:
            raise JournalUnavailable(
                f"cannot open the write-ahead journal {self.path}: {exc}. If it is damaged, move it away to "
                f"start without it (what it holds that the store lacks is then lost), or give --journal "
                f"another path") from None

    def _claim(self, owner: str | None) -> None:
        """Record `owner` as the journal's store, or refuse a journal that holds another store's requests."""
        if owner is None:
            return
        row = self._con.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        if row and row[0] != owner and self._con.execute("SELECT count(*) FROM requests").fetchone()[0]:
            self._con.close()
            raise JournalUnavailable(
                f"the write-ahead journal {self.path} holds requests of another store (store id {row[0]}, this "
                f"one is {owner}): it was copied or the DuckDB file was replaced. Start that store with it, or "
                f"move it away to start without it")
        self._con.execute("INSERT OR REPLACE INTO meta VALUES ('store_id', ?)", (owner,))

    def has_room(self, size: int) -> bool:
        """Whether a body of `size` bytes fits under `max_bytes` now (a hint: `append` decides)."""
        return not self._pending or self._pending + size <= self.max_bytes

    def append(self, entry: JournalEntry) -> Future:
        """Queue one request; returns a Future resolved (None) once it is fsynced, or failed with
        JournalUnavailable. Raises JournalFull (nothing queued) past `max_bytes` not yet applied."""
        size = len(entry.body)
        with self._lock:
            if self._closed or self._lost:
                raise JournalUnavailable("the journal is closed" if self._closed else
                                         f"the journal file {self.path} was removed or replaced while in use")
            if not self.has_room(size):
                raise JournalFull(f"the journal holds {self._pending} bytes of requests not yet applied "
                                  f"(at most {self.max_bytes})")
            self._pending += size
            self._sizes[entry.request_hash] = self._sizes.get(entry.request_hash, 0) + size
        fut: Future = Future()
        self._queue.put(_Append(entry, fut))
        return fut

    def forget(self, request_hash: str) -> None:
        """The store holds this request now: drop it from the journal (with the next commit)."""
        self._queue.put(request_hash)

    def drop(self, request_hash: str, size: int) -> None:
        """A request appended here was refused after all (its client was told): delete one copy of it (the
        newest; another copy with the same hash is the same request, acknowledged or not), with the next
        commit. `size`: its body's length in bytes, as appended."""
        self._queue.put(_Drop(request_hash, size))

    def entries(self, after_seq: int = 0, limit: int = 256) -> list[tuple[int, JournalEntry]]:
        """Up to `limit` journaled requests after `after_seq`, oldest first, as (seq, JournalEntry)."""
        with self._con_lock:
            rows = self._con.execute(
                "SELECT seq, request_hash, signal, fmt, transport, received_at, body FROM requests "
                "WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
        return [(r[0], JournalEntry(r[1], r[2], r[3], r[4], r[5], bytes(r[6]))) for r in rows]

    def all_entries(self) -> Iterator[JournalEntry]:
        """Every journaled request, oldest first, read in chunks."""
        seq = 0
        while True:
            chunk = self.entries(seq)
            if not chunk:
                return
            for seq, entry in chunk:
                yield entry

    def entry(self, request_hash: str) -> JournalEntry | None:
        """The journaled request with this hash (the oldest, if it came twice), or None."""
        with self._con_lock:
            row = self._con.execute(
                "SELECT request_hash, signal, fmt, transport, received_at, body FROM requests "
                "WHERE request_hash = ? ORDER BY seq LIMIT 1", (request_hash,)).fetchone()
        return JournalEntry(*row[:5], bytes(row[5])) if row else None

    def pending_bytes(self) -> int:
        """Bytes of request bodies journaled and not yet known applied."""
        return self._pending

    def pending_requests(self) -> int:
        """Requests journaled and not yet known applied (a request that came twice counts once)."""
        return len(self._sizes)

    def size_bytes(self) -> int:
        """Bytes the journal takes on disk: its file and SQLite's write-ahead log."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.path.getsize(self.path + suffix)
            except OSError:
                pass
        return total

    def _run(self) -> None:
        stop = False
        while not stop:
            try:
                first = self._queue.get(timeout=_FORGET_IDLE_S)
            except queue.Empty:
                if self._forgets or self._drops:
                    self._commit([], durable=False)
                elif not self._sizes:
                    self._shrink()
                continue
            items = [first]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            appends = []
            for it in items:
                if it is _STOP:
                    stop = True
                elif isinstance(it, str):
                    self._forgets.append(it)
                elif isinstance(it, _Drop):
                    self._drops.append(it)
                else:
                    appends.append(it)
            if appends or stop:
                self._commit(appends, durable=True)
        self._con.close()

    def _shrink(self) -> None:
        """Empty and idle: give the pages a burst took back to the file system (file and SQLite's WAL)."""
        if self.size_bytes() < 4 << 20:
            return
        try:
            with self._con_lock:
                self._con.execute("PRAGMA incremental_vacuum")
                self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("could not shrink the journal: %s", exc)

    def _still_there(self) -> bool:
        """Whether the journal's file is still the one opened (not removed or replaced); notes it if not."""
        try:
            same = os.stat(self.path).st_ino == self._inode
        except OSError:
            same = False
        if not same and not self._lost:
            log.error("the write-ahead journal %s was removed or replaced while in use: requests are now "
                      "acknowledged at the store's commit until the next start", self.path)
            with self._lock:
                self._lost = True
        return same

    def _commit(self, appends: list[_Append], durable: bool) -> None:
        """One transaction: the new requests, then the deletes of applied ones; fsynced when `durable`
        (deletes alone are not: a lost delete only means a replay finds the request in the ledger)."""
        forgets, self._forgets = self._forgets, []
        drops, self._drops = self._drops, []
        con = self._con
        if appends and not self._still_there():
            self._unaccount([a.entry.request_hash for a in appends] + forgets + [d.request_hash for d in drops])
            for a in appends:
                a.future.set_exception(JournalUnavailable(f"the journal file {self.path} was removed"))
            return
        try:
            with self._con_lock:
                con.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                con.execute("BEGIN")
                con.executemany("INSERT INTO requests (request_hash, signal, fmt, transport, received_at, body) "
                                "VALUES (?, ?, ?, ?, ?, ?)", [a.entry for a in appends])
                con.executemany("DELETE FROM requests WHERE request_hash = ?", [(h,) for h in forgets])
                con.executemany("DELETE FROM requests WHERE seq = (SELECT max(seq) FROM requests WHERE "
                                "request_hash = ?)", [(d.request_hash,) for d in drops])
                con.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                con.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            log.error("journal commit failed: %s", exc)
            self._unaccount([a.entry.request_hash for a in appends] + forgets)
            self._unaccount_drops(drops)
            error = JournalUnavailable(f"the journal could not write: {exc}")
            for a in appends:
                a.future.set_exception(error)
            return
        self._unaccount(forgets)
        self._unaccount_drops(drops)
        for a in appends:
            a.future.set_result(None)

    def _unaccount(self, hashes: list[str]) -> None:
        with self._lock:
            for h in hashes:
                self._pending -= self._sizes.pop(h, 0)

    def _unaccount_drops(self, drops: list[_Drop]) -> None:
        with self._lock:
            for d in drops:
                left = self._sizes.get(d.request_hash)
                if left is None:    # forgotten meanwhile (the store committed another copy)
                    continue
                self._pending -= min(d.size, left)
                if left - d.size > 0:
                    self._sizes[d.request_hash] = left - d.size
                else:
                    del self._sizes[d.request_hash]

    def close(self) -> None:
        """Write what is queued (forgets included) and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join()
