"""Acknowledge from the journal, apply to the store behind it (ingest/journal.py).

A request goes to the store's write queue and to the journal at once; the client hears back as soon as
either holds it durably: the journal's fsync (milliseconds) or the store's commit, whichever comes
first. The store's commit then takes it out of the journal. If that commit fails (disk full, an I/O
error) after the journal acknowledged, the request stays journaled and is applied again every second
until the store takes it. At start, whatever the journal still holds is replayed before any listener
opens, and the ingest ledger decides what the store already has: each request is applied once.
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import Future
from typing import Callable, NamedTuple

from tasktrail.store.api import Ack, EventLog, LedgerEntry, QueueFull, StoreError

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

    async def store(self, mapped: Mapped, entry: LedgerEntry, fmt: str, body: bytes) -> Ack:
        """Queue the rows and journal the body; returns once one of them is durable: the store's Ack,
        or Ack(0, False) when the journal answered first (the batch is not known yet). Raises QueueFull
        when the journal is full (--journal-max-bytes), what the store's `submit` raises (QueueFull,
        StoreUnavailable, StoreClosed) before anything is kept, and StoreUnavailable when neither could
        keep it."""
        if not self.journal.has_room(len(body)):
            raise QueueFull(f"the write-ahead journal holds {self.journal.pending_bytes()} bytes the store has not "
                            f"committed yet (at most {self.journal.max_bytes}, --journal-max-bytes)", retry_after_s=1.0)
        fut = self.log.submit(mapped.rows, mapped.records, entry)
        jfut = None
        try:
            jfut = self.journal.append(JournalEntry(entry.request_hash, entry.signal, fmt, entry.transport,
                                                    entry.received_at, body))
        except (JournalFull, JournalUnavailable) as exc:
            log.warning("not journaled, acknowledged at the store's commit instead: %s", exc)
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
            while True:
                try:
                    fut, n = self._submit(entry)
                    break
                except QueueFull:
                    futures.pop(0).result()
            fut.add_done_callback(lambda f, h=entry.request_hash: self._applied(h, f, None))
            futures.append(fut)
            applied += 1
            records += n
        return applied, records, already

    def close(self) -> None:
        """Stop applying again; the journal keeps what the store has not committed, for the next start."""
        self._stop.set()
        self._thread.join()


def _consume(fut: asyncio.Future) -> None:
    fut.exception() if not fut.cancelled() else None
