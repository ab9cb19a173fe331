"""Acknowledge from the journal, apply to the store behind it (ingest/journal.py).

A request goes to the journal as it arrives (`begin`: the fsync overlaps its decoding and mapping) and,
once mapped, to the store's write queue; the client hears back as soon as either holds it durably: the
journal's fsync (milliseconds) or the store's commit, whichever comes first. A request refused after it was
journaled (bad data, a full write queue) is taken out of the journal again, and one that a crash left there
is dropped by the replay when it does not decode. While the store's write queue is half full (overload), a
request is journaled only once the queue took its rows, so refusals cost no journal write. The store's
commit then takes it out of the journal. If that commit fails (disk full, an I/O error) after the journal
acknowledged, the request stays journaled and is applied again every second until the store takes it.
At start, whatever the journal still holds is replayed before any listener opens, and the ingest ledger
decides what the store already has: each request is applied once.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Callable, NamedTuple

from tasktrail.store.api import Ack, EventLog, LedgerEntry, QueueFull, StoreError

from .decode import DecodeError
from .journal import Journal, JournalEntry, JournalFull, JournalUnavailable
from .workers import Mapped

log = logging.getLogger("tasktrail.ingest")

# How often requests whose apply failed are applied again, in seconds.
REAPPLY_INTERVAL_S = 1.0


class Replayed(NamedTuple):
    """What a replay at start did: requests applied, records in them, requests the store already held."""
    applied: int
    records: int
    already_stored: int


class JournaledApply:
    """`store` (await the first durable copy), `replay` (at start) and `close`."""

    def __init__(self, log_: EventLog, journal: Journal, map_here: Callable[[str, bytes, str], Mapped]) -> None:
        self.log = log_
        self.journal = journal
        self._map = map_here
        self._lock = threading.Lock()
        self._retry: dict[str, Future] = {}   # request hash -> the journal's future for it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._reapply_loop, name="tasktrail-reapply", daemon=True)
        self._thread.start()

    def begin(self, entry: JournalEntry) -> Future | None:
        """Journal a request as it arrives, while it is mapped (the fsync overlaps the mapping); returns the
        journal's Future (resolved once fsynced), or None when it is not journaled now: the store's write
        queue is half full (under overload a request is journaled only once the store took its rows, so
        refusals cost no write), or the journal cannot take it (the store's commit acknowledges it). Raises
        QueueFull when the journal is full (--journal-max-bytes). Pass the Future to `store`, or call
        `refused` when the request is not stored after all."""
        self._check_room(len(entry.body))
        st = self.log.stats()
        if st.queue_records * 2 > st.queue_capacity:
            return None
        return self._append(entry)

    def refused(self, entry: JournalEntry, jfut: Future | None) -> None:
        """A request `begin` journaled was refused after all (bad data, a full write queue): take it out,
        once its own append is committed. An append that failed put no copy there, and its drop would delete
        another request's copy with the same hash (one acknowledged and waiting to be applied again)."""
        if jfut is not None:
            def drop_if_kept(f: Future, h=entry.request_hash, n=len(entry.body)) -> None:
                if f.exception() is None:
                    self.journal.drop(h, n)
            jfut.add_done_callback(drop_if_kept)

    async def store(self, mapped: Mapped, entry: JournalEntry, jfut: Future | None = None) -> Ack:
        """Queue the rows and journal the body (unless `begin` journaled it: `jfut`, its Future); returns once
        one of them is durable: the store's Ack, or Ack(0, False) when the journal answered first (the batch is not known yet). Raises
        QueueFull when the journal is full (--journal-max-bytes), what the store's `submit` raises
        (QueueFull, StoreUnavailable, StoreClosed) with nothing kept (a copy `begin` journaled is taken
        out), and StoreUnavailable when neither could keep it."""
        begun = jfut is not None
        if not begun:
            self._check_room(len(entry.body))
        ledger = LedgerEntry(entry.request_hash, entry.received_at, entry.transport, entry.signal, len(entry.body))
        try:
            fut = self.log.submit(mapped.rows, mapped.records, ledger)
        except StoreError:
            self.refused(entry, jfut)
            raise
        if not begun:
            jfut = self._append(entry)
        fut.add_done_callback(lambda f, h=entry.request_hash, j=jfut: self._applied(h, f, j))
        if jfut is None:
            return await asyncio.wrap_future(fut)
        waiting = {asyncio.wrap_future(fut): "store", asyncio.wrap_future(jfut): "journal"}
        while waiting:
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for d in done:
                which = waiting.pop(d)
                if d.exception() is None:
                    for rest in waiting:
                        rest.add_done_callback(_consume)   # the other copy's outcome is handled apart
                    return d.result() if which == "store" else Ack(0, False)
        return await asyncio.wrap_future(fut)   # both failed: the store's error

    def _check_room(self, size: int) -> None:
        if not self.journal.has_room(size):
            raise QueueFull(f"the write-ahead journal holds {self.journal.pending_bytes()} bytes the store has not "
                            f"committed yet (at most {self.journal.max_bytes}, --journal-max-bytes)", retry_after_s=1.0)

    def _append(self, entry: JournalEntry) -> Future | None:
        try:
            return self.journal.append(entry)
        except (JournalFull, JournalUnavailable) as exc:
            log.warning("not journaled, acknowledged at the store's commit instead: %s", exc)
            return None

    def _applied(self, request_hash: str, fut: Future, jfut: Future | None) -> None:
        """The store's commit of a request ended: forget it from the journal, or apply it again later."""
        if fut.exception() is None:
            with self._lock:
                self._retry.pop(request_hash, None)
            self.journal.forget(request_hash)
        elif jfut is not None:
            with self._lock:
                self._retry[request_hash] = jfut

    def _reapply_loop(self) -> None:
        while not self._stop.wait(REAPPLY_INTERVAL_S):
            with self._lock:
                due = [(h, j) for h, j in self._retry.items() if j.done()]
            for h, jfut in due:
                if jfut.exception() is not None:   # never journaled: its client was told
                    with self._lock:
                        self._retry.pop(h, None)
                    continue
                entry = self.journal.entry(h)
                if entry is None:   # no longer journaled (applied by a retry of its client): nothing to do
                    with self._lock:
                        self._retry.pop(h, None)
                elif not self._reapply(entry, jfut):
                    break   # the store cannot take it yet: try again in a second

    def _reapply(self, entry: JournalEntry, jfut: Future) -> bool:
        """Submit one journaled request again; False when the store refused it for now."""
        try:
            fut, _ = self._submit(entry)
        except StoreError as exc:
            log.info("journaled request %s waits for the store: %s", entry.request_hash[:12], exc)
            return False
        with self._lock:
            self._retry.pop(entry.request_hash, None)
        fut.add_done_callback(lambda f, h=entry.request_hash: self._applied(h, f, jfut))
        return True

    def _submit(self, entry: JournalEntry) -> tuple[Future, int]:
        """Map a journaled request again and queue it; (the store's future, records). Raises StoreError."""
        mapped = self._map(entry.signal, entry.body, entry.fmt)
        ledger = LedgerEntry(entry.request_hash, entry.received_at, entry.transport, entry.signal, len(entry.body))
        return self.log.submit(mapped.rows, mapped.records, ledger), mapped.records

    def replay(self) -> Replayed:
        """Apply what the journal holds and the store does not (by the ingest ledger's hashes), oldest
        first, and wait for the commits; the journal keeps a request until its commit. Raises StoreError
        when the store refuses to write."""
        applied = records = already = 0
        futures: list[Future] = []
        batch: list[JournalEntry] = []
        for entry in self.journal.all_entries():
            batch.append(entry)
            if len(batch) >= 256:
                a, r, k = self._replay_batch(batch, futures)
                applied, records, already, batch = applied + a, records + r, already + k, []
        if batch:
            a, r, k = self._replay_batch(batch, futures)
            applied, records, already = applied + a, records + r, already + k
        for f in futures:
            f.result()
        return Replayed(applied, records, already)

    def _replay_batch(self, batch: list[JournalEntry], futures: list[Future]) -> tuple[int, int, int]:
        stored = self.log.stored_requests([e.request_hash for e in batch])
        applied = records = already = 0
        for entry in batch:
            if entry.request_hash in stored:
                self.journal.forget(entry.request_hash)
                already += 1
                continue
            try:
                fut, n = self._submit_waiting(entry, futures)
            except DecodeError as exc:   # journaled as it arrived, then refused as bad data (its client was told)
                log.error("journaled request %s does not decode, dropped from the journal: %s",
                          entry.request_hash[:12], exc)
                self.journal.forget(entry.request_hash)
                continue
            except Exception:   # noqa: BLE001 - one entry that cannot be mapped must not stop the start
                log.exception("journaled request %s could not be applied; it stays in the journal",
                              entry.request_hash[:12])
                continue
            fut.add_done_callback(lambda f, h=entry.request_hash: self._applied(h, f, None))
            futures.append(fut)
            applied += 1
            records += n
        return applied, records, already

    def _submit_waiting(self, entry: JournalEntry, futures: list[Future]) -> tuple[Future, int]:
        """`_submit`, waiting for the oldest of `futures` while the store's queue is full. Raises DecodeError."""
        while True:
            try:
                return self._submit(entry)
            except QueueFull:
                futures.pop(0).result()

    def close(self) -> None:
        """Stop applying again; the journal keeps what the store has not committed, for the next start."""
        self._stop.set()
        self._thread.join()


def _consume(fut: asyncio.Future) -> None:
    fut.exception() if not fut.cancelled() else None
