"""The writer's memory of records it committed lately, so a record delivered again is not appended twice.

At-least-once delivery re-sends spans, log lines and heartbeats; the writer keeps the identities (as
hashes of this process) of the latest `size` records of every table that has one and drops a record it
saw before it is appended. Transitions are also checked exactly against their invocation's records
(store/invocation_fold.py); reads count every record once whatever gets through.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# The identity of a record in each log table that has one (store/sql/0005): a record delivered again
# (at-least-once delivery) is not appended twice. Spans are identified as Jaeger and Tempo do.
IDENTITY = {t: "record_id" for t in ("transitions", "runner_events", "atomic_decisions", "atomic_executions",
                                     "event_records", "trigger_runs", "log_records",
                                     "definitions", "invocation_calls", "queue_depths", "command_records")} | {"spans": "trace_id || span_id"}


class RecordWindow:
    """Identities of the latest `size` committed records, oldest forgotten first (a whole batch's at a time).

    The set of hashes is what lookups need; the order of batches is kept as one int64 array per batch, not a
    set per batch: at the default 300,000 records that takes the window from 41 to about 29 MB (a set's
    table and the boxed ints it points to cost ~64 bytes per hash, an array 8)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: set[int] = set()
        self._order: deque = deque()   # the remembered identities, an int64 array per batch, oldest first
        self._count = 0

    def load(self, con) -> None:
        """Forget everything, then remember the newest records each table holds (an equal share each)."""
        self._seen.clear()
        self._order.clear()
        self._count = 0
        if self.size > 0:
            each = max(1, self.size // len(IDENTITY))
            for table, key in IDENTITY.items():
                ids = con.execute(f"SELECT {key} FROM {table} WHERE {key} IS NOT NULL ORDER BY batch DESC LIMIT ?",
                                  [each]).fetchall()
                self.remember([hash(r[0]) for r in reversed(ids)])

    def remember(self, hashes) -> None:
        """Note committed record identities; the oldest are forgotten past the window (a whole batch's
        at a time: set operations, not a loop per record)."""
        new = set(hashes)
        new -= self._seen
        if not new:
            return
        self._seen |= new
        self._order.append(np.fromiter(new, np.int64, len(new)))
        self._count += len(new)
        while self._count - len(self._order[0]) >= self.size:
            old = self._order.popleft()
            self._seen.difference_update(old.tolist())
            self._count -= len(old)

    def drop_seen(self, table: str, tbl, noted: set):
        """`tbl` without the records this node committed lately or that repeat one earlier in the batch;
        their identities are added to `noted` (remembered once the batch commits)."""
        key = IDENTITY.get(table)
        if key is None or self.size <= 0:
            return tbl
        if table == "spans":
            ids = pc.binary_join_element_wise(tbl.column("trace_id"), tbl.column("span_id"), "").to_pylist()
        else:
            ids = tbl.column("record_id").to_pylist()
        hashes = list(map(hash, ids))
        batch = set(hashes)
        seen = self._seen
        if len(batch) == len(hashes) and seen.isdisjoint(batch) and None not in ids:  # nearly always
            noted |= batch
            return tbl
        keep = []
        batch = set()
        for v, h in zip(ids, hashes):
            if v is None:
                keep.append(True)
            elif h in seen or h in batch:
                keep.append(False)
            else:
                batch.add(h)
                keep.append(True)
        noted |= batch
        return tbl if all(keep) else tbl.filter(pa.array(keep))
