"""What the writer remembers between batches so that folding a batch into invocation_state needs no read
of the store in the common case (store/state.py: fold_transitions).

- `KnownIds`: a Bloom filter over the invocation ids invocation_state holds (loaded when the store opens,
  added to by every fold, never cleared: a superset). An id it has never seen is new: the fold does not
  look it up. One it may have seen is looked up as before (1 % of new ids, by the filter's sizing).
- `RecentHistories`: the records of invocations folded lately that are not final yet (those whose next
  records are still on their way: an invocation whose records straddle two requests), so the next batch
  folds them without reading them back. Only the writer appends transitions, and retention removes only
  invocations whose last batch is older than its cutoff, so a remembered history is the stored one.

Both are the writer's alone; a lake folds from the log (store/ducklake.py) and uses neither.
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Optional

import numpy as np

_K = 4              # bits set per id
_BITS_PER_ID = 16   # at most this many bits per id before the filter doubles (~0.2 % false positives at 16)


def id_hashes(ids: list[str]) -> np.ndarray:
    """64-bit hashes of invocation ids, equal to DuckDB's md5_number_lower(id) (the filter is loaded in SQL)."""
    return np.fromiter((int.from_bytes(hashlib.md5(i.encode("utf-8", "surrogatepass")).digest()[8:], "little")
                        for i in ids), dtype=np.uint64, count=len(ids))


class KnownIds:
    """A Bloom filter over invocation ids; `maybe(ids)` is False only for ids never added."""

    def __init__(self) -> None:
        self.bits = np.zeros(1 << 17, np.uint8)
        self.added = 0

    def load(self, con, extra: int = 0) -> None:
        """Fill it from invocation_state on `con` (sized for what is there plus room to grow)."""
        n = con.execute("SELECT count(*) FROM invocation_state").fetchone()[0] + extra
        size = 1 << 20
        while size < n * _BITS_PER_ID * 2:
            size <<= 1
        self.bits = np.zeros(size // 8, np.uint8)
        self.added = 0
        tbl = con.execute("SELECT md5_number_lower(invocation_id) AS h FROM invocation_state").to_arrow_table()
        for chunk in tbl.column("h").chunks:
            self._set(chunk.to_numpy(zero_copy_only=False).astype(np.uint64))

    def _positions(self, h: np.ndarray) -> np.ndarray:
        m = np.uint64(len(self.bits) * 8)
        lo = h & np.uint64(0xFFFFFFFF)
        hi = (h >> np.uint64(32)) | np.uint64(1)
        return np.stack([(lo + np.uint64(i) * hi) % m for i in range(_K)])

    def _set(self, h: np.ndarray) -> None:
        if not len(h):
            return
        pos = self._positions(h).ravel()
        np.bitwise_or.at(self.bits, (pos >> np.uint64(3)).astype(np.int64),
                         (np.uint8(1) << (pos & np.uint64(7)).astype(np.uint8)))
        self.added += len(h)

    def add(self, ids: list[str], con=None) -> None:
        """Note these ids as held (before their batch commits: a superset is all the filter promises). Past
        its sizing the filter is rebuilt twice as large from `con` (which sees this batch's rows)."""
        self._set(id_hashes(ids))
        if con is not None and self.added * _BITS_PER_ID > len(self.bits) * 8:
            self.load(con, extra=self.added)

    def maybe(self, ids: list[str]) -> np.ndarray:
        """Per id: whether invocation_state may hold it (False: it certainly does not)."""
        if not ids:
            return np.zeros(0, bool)
        pos = self._positions(id_hashes(ids))
        byte = self.bits[(pos >> np.uint64(3)).astype(np.int64)]
        return ((byte >> (pos & np.uint64(7)).astype(np.uint8)) & 1).astype(bool).all(axis=0)


class RecentHistories:
    """{(app_id, invocation_id): (its records in arrival order, (task_id, status) of its state row)} of
    unfinished invocations folded lately."""

    def __init__(self, capacity: int = 4096, longest: int = 64) -> None:
        self.capacity, self.longest = capacity, longest
        self._rows: OrderedDict = OrderedDict()

    def __contains__(self, key) -> bool:
        return key in self._rows

    def get(self, key) -> Optional[list]:
        return self._rows.get(key)

    def clear(self) -> None:
        self._rows.clear()

    def apply(self, updates: dict) -> None:
        """A batch committed: keep each of its invocations' (records, state) (None: forget it: final), but
        forget too long a history."""
        rows = self._rows
        for key, hist in updates.items():
            if hist is None or len(hist[0]) > self.longest:
                rows.pop(key, None)
            else:
                rows[key] = hist
                rows.move_to_end(key)
        while len(rows) > self.capacity:
            rows.popitem(last=False)
