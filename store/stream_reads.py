"""Streamed reads (ad-hoc SQL): a few dedicated cursors, and answers handed over as Arrow batches.

How many such reads run at once is the number of cursors (`--sql-concurrency`); a read that finds none
free within its wait raises ReadersBusy. Each cursor streams with a small buffer, so DuckDB computes
about one vector (2,048 rows) ahead of the consumer instead of about a megabyte of row headers'
worth of vectors (its default: for rows of long strings that was gigabytes), and stopping early
stops the query.

Columns of types Arrow carries wrongly or as opaque bytes (UHUGEINT past 2^127, BIT, BIGNUM, TIME WITH
TIME ZONE, GEOMETRY, INTERVAL, or anything holding them) are read as DuckDB's own text of them.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator

import duckdb

from .api import ReadersBusy

# Between the consumer and DuckDB: about one vector of 2,048 plain rows (row headers, not string bytes).
STREAMING_BUFFER = "64KB"
TEXT_TYPE_IDS = frozenset({"uhugeint", "bit", "bignum", "varint", "time with time zone", "geometry", "interval"})
_NESTED_IDS = frozenset({"list", "struct", "map", "array", "union"})


def needs_text(t) -> bool:
    """Whether a DuckDB type (DuckDBPyType) is, or holds, one Arrow cannot carry faithfully."""
    tid = getattr(t, "id", "")
    if tid in TEXT_TYPE_IDS:
        return True
    if tid in _NESTED_IDS:
        try:
            children = t.children
        except Exception:
            return False
        return any(needs_text(c[1]) for c in children if isinstance(c, tuple) and len(c) == 2 and hasattr(c[1], "id"))
    return False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class StreamReaders:
    """`size` cursors for streamed reads; taken for one read each and given back."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._free: queue.Queue = queue.Queue()
        self._generation = 0
        self._prepared: dict[int, set] = {}   # id(cursor) -> the `prepare` tuples it ran

    def fill(self, con, init_cursor: Callable[[Any], None]) -> None:
        """New cursors of `con` (before its configuration is locked: they set their buffer), replacing
        any earlier ones (a reopened database); cursors of the old one are closed when given back."""
        cursors = []
        for _ in range(self.size):
            cur = con.cursor()
            init_cursor(cur)
            cur.execute(f"SET streaming_buffer_size = '{STREAMING_BUFFER}'")
            cursors.append(cur)
        with self._lock:
            self._generation += 1
            self._prepared = {}
            self._free = queue.Queue()
            for cur in cursors:
                self._free.put((self._generation, cur))

    def prepare(self, cur, statements: tuple) -> None:
        """Run `statements` on `cur` unless it already ran this tuple (cursors are used by one read at a time)."""
        if not statements:
            return
        done = self._prepared.setdefault(id(cur), set())
        if statements not in done:
            for statement in statements:
                cur.execute(statement)
            done.add(statements)

    def take(self, wait_s: float) -> tuple[int, Any]:
        """(generation, cursor); raises ReadersBusy when none is free within `wait_s` seconds."""
        try:
            return self._free.get(timeout=max(wait_s, 0.001))
        except queue.Empty:
            raise ReadersBusy(f"{self.size} ad-hoc SQL {'query is' if self.size == 1 else 'queries are'} "
                              f"already running (--sql-concurrency); retry shortly", retry_after_s=2.0) from None

    def give_back(self, lease: tuple[int, Any]) -> None:
        generation, cur = lease
        with self._lock:
            if generation == self._generation:
                self._free.put(lease)
                return
        try:
            cur.close()
        except duckdb.Error:
            pass


class StreamFailed(Exception):
    """Reading the next batch failed inside DuckDB (the cause is chained)."""


def open_stream(cur, sql: str, rows_per_batch: int) -> tuple[list[str], Any]:
    """(column names, pyarrow RecordBatchReader) of one SELECT on `cur`, text for the columns Arrow
    cannot carry (needs_text). Raises duckdb.Error for SQL that does not bind."""
    rel = cur.sql(sql)
    if rel is None:  # not a query: nothing to read
        return [], None
    columns = list(rel.columns)
    text = [needs_text(t) for t in rel.types]
    if any(text):
        rel = rel.project(", ".join(f"CAST(#{i + 1} AS VARCHAR) AS {_quote(c)}" if as_text else f"#{i + 1}"
                                    for i, (c, as_text) in enumerate(zip(columns, text))))
    return columns, rel.to_arrow_reader(rows_per_batch)


def batches(reader) -> Iterator:
    """The reader's batches; a failure inside DuckDB is raised as StreamFailed."""
    if reader is None:
        return
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except Exception as exc:
            raise StreamFailed(str(exc)) from exc
        yield batch
