"""The transport-independent ingest path: dedupe, decode, map, queue, await the commit.

Both receivers call `Ingestor.export`; it raises DecodeError (bad data), QueueFull
(backpressure), StoreClosed / StoreUnavailable (cannot store now), and returns an
`Accepted` only once the request is durable: committed to the store or, with a journal,
fsynced in it (ingest/journaled.py). The Ack, plus the records refused one by one and the
strings repaired, for OTLP's partial_success.
"""
from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import NamedTuple

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from tasktrail.store.api import Ack, EventLog, LedgerEntry

from .journal import Journal, JournalEntry
from .journaled import JournaledApply, Replayed
from .map import Mapper
from .workers import MapPool, Mapped, map_body


class Accepted(NamedTuple):
    """What a receiver answers for a stored request."""
    ack: Ack
    rejected: int             # records refused one by one (not stored): partial_success's rejected_*
    message: str              # why, naming each record, and what was repaired; "" when nothing was


def _message(mapped: Mapped) -> str:
    parts = list(mapped.notes)
    named = len(mapped.notes)
    total = sum(mapped.refused.values()) + mapped.repaired
    if total > named:
        parts.append(f"and {total - named} more")
    return "; ".join(parts)


SIGNALS = ("traces", "logs", "metrics")
# Why each receiver refuses a whole request (the `reason` label of tasktrail_ingest_rejected_requests_total).
REJECT_REASONS = {
    "http": ("unauthenticated", "content_type", "content_encoding", "too_large", "bad_data", "queue_full",
             "unavailable"),
    "grpc": ("unauthenticated", "bad_data", "queue_full", "unavailable"),
}


@dataclass
class IngestMetrics:
    """Process-only ingest figures (what was refused never reaches the log). Stored requests and
    records are counted from the ingest ledger instead (web/metrics.py), so they survive restarts."""
    rejected: Counter
    rejected_records: Counter
    repaired: Counter
    duplicates: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> "IngestMetrics":
        labels = ("signal", "transport")
        return cls(
            rejected=Counter("tasktrail_ingest_rejected_requests", "OTLP export requests refused whole (nothing of "
                             "them stored), by signal, transport and reason: unauthenticated, content_type, "
                             "content_encoding, too_large, bad_data, queue_full (backpressure, 429 / "
                             "RESOURCE_EXHAUSTED), unavailable (the store cannot write or is closing, 503 / "
                             "UNAVAILABLE).",
                             labels + ("reason",), registry=registry),
            rejected_records=Counter("tasktrail_ingest_rejected_records",
                                     "Records refused one by one while the rest of their request was stored "
                                     "(OTLP partial success), by reason.", labels + ("reason",), registry=registry),
            repaired=Counter("tasktrail_ingest_repaired_strings",
                             "String fields whose invalid UTF-8 was replaced with U+FFFD (the record was stored).",
                             labels, registry=registry),
            duplicates=Counter("tasktrail_ingest_duplicate_requests",
                               "Retried identical requests acknowledged without storing twice.",
                               labels, registry=registry),
        )

    def __post_init__(self) -> None:
        # Every known refusal starts at 0, so rate() and alerts see a series before the first one happens.
        for transport, reasons in REJECT_REASONS.items():
            for signal in SIGNALS:
                for reason in reasons:
                    self.rejected.labels(signal, transport, reason)


class StoreCollector:
    """Writer figures read at scrape time: queue depth and capacity, commits, failed commits, size on disk."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def collect(self):
        st = self.log.stats()
        yield GaugeMetricFamily("tasktrail_ingest_queue_records",
                                "Records accepted and waiting in the write queue for the writer to commit them.",
                                value=st.queue_records)
        yield GaugeMetricFamily("tasktrail_ingest_queue_capacity_records",
                                "Records the write queue holds; past it ingest answers 429 / RESOURCE_EXHAUSTED.",
                                value=st.queue_capacity)
        yield CounterMetricFamily("tasktrail_store_batches_committed",
                                  "Batches the writer of this process committed since it started.", value=st.batches)
        yield CounterMetricFamily("tasktrail_store_failed_batches",
                                  "Batches whose commit failed (disk full, unwritable file) since this process "
                                  "started; their requests were answered 503 / UNAVAILABLE.",
                                  value=st.failed_batches)
        if st.last_commit_at:
            yield GaugeMetricFamily("tasktrail_store_last_commit_timestamp_seconds",
                                    "Unix time of the last commit.", value=st.last_commit_at)
        yield HistogramMetricFamily(
            "tasktrail_store_batch_commit_seconds", "Time to append and commit one batch.",
            buckets=[(str(b), c) for b, c in zip(st.commit_bounds, st.commit_bucket_counts)]
            + [("+Inf", st.batches)], sum_value=st.commit_seconds_sum)
        size = getattr(self.log, "size_bytes", lambda: None)()
        if size is not None:
            yield GaugeMetricFamily("tasktrail_store_size_bytes",
                                    "Bytes the store takes on disk: the DuckDB file and its write-ahead log, or "
                                    "a lake's data files.", value=size)


class JournalCollector:
    """The journal's figures read at scrape time: its size on disk and what it holds not yet applied."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self):
        yield GaugeMetricFamily("tasktrail_journal_size_bytes",
                                "Bytes the write-ahead journal takes on disk (its SQLite file and WAL).",
                                value=self.journal.size_bytes())
        yield GaugeMetricFamily("tasktrail_journal_pending_bytes",
                                "Bytes of acknowledged requests the journal holds that the store has not "
                                "committed yet; past --journal-max-bytes ingest answers 429.",
                                value=self.journal.pending_bytes())
        yield GaugeMetricFamily("tasktrail_journal_max_bytes", "The journal's bound (--journal-max-bytes).",
                                value=self.journal.max_bytes)
        yield GaugeMetricFamily("tasktrail_journal_pending_requests",
                                "Acknowledged requests the journal holds that the store has not committed yet.",
                                value=self.journal.pending_requests())


class Ingestor:
    """`workers` > 0 maps requests in that many processes (ingest/workers.py); 0 maps in this one.
    With a `journal`, a request is acknowledged once fsynced there and applied to `log` behind it."""

    def __init__(self, log: EventLog, registry: CollectorRegistry | None = None, *, workers: int = 0,
                 journal: Journal | None = None) -> None:
        self.log = log
        self.mapper = Mapper()
        self.pool = MapPool(workers, log.arrow_schemas()) if workers > 0 else None
        self.metrics = IngestMetrics.create(registry) if registry is not None else None
        self.journaled = JournaledApply(log, journal, self._map_here) if journal is not None else None
        if registry is not None:
            registry.register(StoreCollector(log))
            if journal is not None:
                registry.register(JournalCollector(journal))
            self.commit_latency = Histogram(
                "tasktrail_ingest_ack_seconds", "Time from a request's arrival to its acknowledgement.",
                registry=registry, buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        else:
            self.commit_latency = None

    def reject(self, signal: str, transport: str, reason: str) -> None:
        if self.metrics:
            self.metrics.rejected.labels(signal, transport, reason).inc()

    @staticmethod
    def _hash(signal: str, body: bytes) -> str:
        return hashlib.blake2b(body, digest_size=16, person=signal.encode()[:16]).hexdigest()

    def _map_here(self, signal: str, body: bytes, fmt: str) -> Mapped:
        return map_body(self.mapper, signal, body, fmt)

    def prepare(self, signal: str, body: bytes, fmt: str, transport: str):
        """Decode and map one request here; returns (rows, records, entry) or None for a known duplicate."""
        h = self._hash(signal, body)
        if self.log.is_duplicate(h):
            return None
        mapped = self._map_here(signal, body, fmt)
        return mapped.rows, mapped.records, LedgerEntry(h, time.time_ns() // 1000, transport, signal, len(body))

    async def export(self, signal: str, body: bytes, fmt: str, transport: str) -> Accepted:
        """Store one request; returns once its rows are committed. A retried identical request is
        acknowledged as a duplicate (nothing refused or repaired is reported again)."""
        t0 = time.perf_counter()
        h = self._hash(signal, body)
        if self.log.is_duplicate(h):
            if self.metrics:
                self.metrics.duplicates.labels(signal, transport).inc()
            return Accepted(Ack(0, True), 0, "")
        received_at = time.time_ns() // 1000
        if self.journaled is not None:
            ack, mapped = await self._journaled(JournalEntry(h, signal, fmt, transport, received_at, body))
        else:
            mapped = await self._mapped(signal, body, fmt)
            entry = LedgerEntry(h, received_at, transport, signal, len(body))
            ack = await asyncio.wrap_future(self.log.submit(mapped.rows, mapped.records, entry))
        if self.metrics:
            if ack.duplicate:
                self.metrics.duplicates.labels(signal, transport).inc()
            self.commit_latency.observe(time.perf_counter() - t0)
            for reason, count in mapped.refused.items():
                self.metrics.rejected_records.labels(signal, transport, reason).inc(count)
            if mapped.repaired:
                self.metrics.repaired.labels(signal, transport).inc(mapped.repaired)
        return Accepted(ack, sum(mapped.refused.values()), _message(mapped))

    async def _mapped(self, signal: str, body: bytes, fmt: str) -> Mapped:
        """The request decoded and mapped, by a worker when there are. Raises DecodeError."""
        mapped = await self.pool.prepare(signal, body, fmt) if self.pool else None
        return mapped if mapped is not None else self._map_here(signal, body, fmt)

    async def _journaled(self, entry: JournalEntry) -> tuple[Ack, Mapped]:
        """Journal the request while it is mapped, then queue its rows (ingest/journaled.py); returns the
        first durable copy's Ack and the mapping. Raises DecodeError, QueueFull, StoreClosed, StoreUnavailable."""
        jfut = self.journaled.begin(entry)
        try:
            mapped = await self._mapped(entry.signal, entry.body, entry.fmt)
        except BaseException:   # bad data, or the client went away: nothing of it is kept
            self.journaled.refused(entry, jfut)
            raise
        return await self.journaled.store(mapped, entry, jfut), mapped

    def replay(self) -> Replayed | None:
        """Apply what the journal holds and the store lacks (at start, before any listener opens); None
        without a journal. Raises StoreError when the store refuses to write."""
        return self.journaled.replay() if self.journaled is not None else None

    def close(self) -> None:
        """Stop the mapping processes and the journal's re-applies; the journal itself is closed by
        `close_journal`, after the store has committed what it queued."""
        if self.pool:
            self.pool.close()
        if self.journaled is not None:
            self.journaled.close()

    def close_journal(self) -> None:
        """Close the journal (after the store's close: its last commits take their requests out)."""
        if self.journaled is not None:
            self.journaled.journal.close()
