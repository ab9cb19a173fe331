"""The read side of the DuckDB store (store/api.py LogReader): a cursor per reading thread, a time limit
on every read (one watchdog thread interrupts what runs past it), a row cap, and DuckDB's errors as the
contract names them. Reads never take the writer's lock and never block a commit (MVCC).

`CursorReads` is a part of DuckDBStore (store/duckdb.py), which holds the connection state it uses:
`_read_root` (the root of the readers' cursors), `_read_lock`, `_local`, `_generation`, `_cursors`,
`_watchdog`, `_streams`, and `_fatal` (a fatal error found by a read: the writer reopens the database).
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import duckdb
import pyarrow as pa

from . import allocator
from .api import QueryError, QueryTimeout, Result, StoreUnavailable
from .stream_reads import StreamFailed, batches, open_stream

# A read whose DuckDB error message quotes bytes that are not UTF-8 (a file read as a table).
_NOT_UTF8 = "the statement failed, and DuckDB's message about it is not valid UTF-8"
# A read that met DuckDB's memory limit or the process's cap (tasktrail/memory_cap.py); then DuckDB's words.
_OUT_OF_MEMORY = ("the query needs more memory than this server may use (--duckdb-memory-limit for DuckDB's "
                  "buffers, --max-memory for the whole process, which bounds one huge value)")


# Column types whose Python values DuckDB's fetch and Arrow's to_pylist give alike (CursorReads._fetch).
_NATIVE = re.compile(r"(BOOLEAN|TINYINT|SMALLINT|INTEGER|BIGINT|UTINYINT|USMALLINT|UINTEGER|UBIGINT|FLOAT|DOUBLE|"
                     r"VARCHAR|DATE|TIMESTAMP)(\[\])*")


def release(cur) -> None:
    """End the transaction a partly read result holds on `cur`. An open result keeps its read transaction
    until the cursor runs another statement (closing its Arrow reader does not end it), and while any
    transaction is open DuckDB skips its automatic checkpoint after a commit that updated rows (the
    writer's folds do, every batch): the WAL and DuckDB's in-memory copy of it (IN_MEMORY_TABLE in
    duckdb_memory()) then grow until that reader's thread reads again. Never raises."""
    try:
        cur.execute("SELECT 1").fetchall()
    except duckdb.Error:
        pass


class CursorReads:
    """query, query_arrow and stream (store/api.py LogReader) on per-thread cursors."""

    def _cursor(self):
        cur = getattr(self._local, "cursor", None)
        if cur is None or self._local.generation != self._generation:
            with self._read_lock:
                cur = self._read_root.cursor()
                self._init_cursor(cur)
                self._cursors.append(cur)
                self._local.generation = self._generation
            self._local.cursor = cur
        return cur

    def _init_cursor(self, cur) -> None:
        """Per-connection settings a new reading cursor needs (none for a DuckDB file)."""

    def query(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float = 10.0,
              max_rows: int = 10_000) -> Result:
        def rows(res):
            if res.description is None:
                return Result([], [], False)
            columns = [d[0] for d in res.description]   # before `release` runs another statement on the cursor
            got = self._fetch(res, max_rows + 1)
            if len(got) > max_rows:
                release(res)
            return Result(columns, got[:max_rows], len(got) > max_rows)
        return self._read(sql, params, timeout_s, rows)

    def query_arrow(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float = 10.0) -> pa.Table:
        """One read as an Arrow table, for reads that work on whole columns (the timeline: tens of
        thousands of rows). Same cursor, time limit and errors as `query`; no row cap."""
        return self._read(sql, params, timeout_s, lambda res: res.to_arrow_table())

    def _read(self, sql: str, params, timeout_s: float, take):
        """Run `sql` on this thread's cursor under the watchdog and return take(result), translating
        DuckDB's errors: QueryTimeout, StoreUnavailable (fatal: reopening), QueryError. With
        `read_after_ack`, first waits (at most `read_wait_s`) for the requests acknowledged before it."""
        if self.read_after_ack:
            self.wait_applied(self.read_wait_s)
        cur = self._cursor()
        token = self._watchdog.arm(cur, timeout_s)
        fired = False
        try:
            return take(cur.execute(sql, params if isinstance(params, dict) else list(params)))
        except UnicodeDecodeError:
            raise QueryError(_NOT_UTF8) from None
        except MemoryError as exc:   # converting a huge answer in Python, under the process's cap
            raise self._read_error(exc, False, timeout_s) from None
        except duckdb.Error as exc:
            fired = self._watchdog.disarm(token)
            timed_out = isinstance(exc, duckdb.InterruptException) or (fired and "interrupt" in str(exc).lower())
            raise self._read_error(exc, timed_out, timeout_s) from None
        finally:
            if not fired:
                self._watchdog.disarm(token)

    def _read_error(self, exc: Exception, timed_out: bool, timeout_s: float) -> Exception:
        """What a read that failed inside DuckDB raises: QueryTimeout (its time limit), StoreUnavailable
        (a fatal error: the database is being reopened) or QueryError (the statement's own error)."""
        text = str(exc)
        if timed_out:
            return QueryTimeout(f"query stopped at its time limit of {timeout_s:g} s")
        if isinstance(exc, (duckdb.OutOfMemoryException, MemoryError)) or "Out of Memory Error" in text:
            allocator.purge_after_failure()   # what the query reached goes back at once (store/allocator.py)
            return QueryError(f"{_OUT_OF_MEMORY}: {text.splitlines()[0][:300] if text else 'out of memory'}")
        if isinstance(exc, duckdb.FatalException) or "invalidated" in text:
            self._fatal(exc)
            return StoreUnavailable(f"the store is unavailable ({text.splitlines()[0][:200]}); it is being reopened")
        return QueryError(text.split("\n")[0] if text else type(exc).__name__)

    def stream(self, sql: str, consume, *, timeout_s: float = 10.0, wait_s: float = 2.0,
               rows_per_batch: int = 64, prepare: tuple = ()):
        """See store/api.py (LogReader.stream)."""
        if self.read_after_ack:
            self.wait_applied(self.read_wait_s)
        lease = self._streams.take(wait_s)
        cur = lease[1]
        token = self._watchdog.arm(cur, timeout_s)
        fired = False
        reader = None
        try:
            self._streams.prepare(cur, prepare)
            columns, reader = open_stream(cur, sql, rows_per_batch)
            return consume(columns, batches(reader))
        except UnicodeDecodeError:
            raise QueryError(_NOT_UTF8) from None
        except MemoryError as exc:   # converting or encoding a huge answer, under the process's cap
            raise self._read_error(exc, False, timeout_s) from None
        except (duckdb.Error, StreamFailed) as exc:
            fired = self._watchdog.disarm(token)
            raise self._read_error(exc, fired or isinstance(exc, duckdb.InterruptException), timeout_s) from None
        finally:
            if not fired:
                self._watchdog.disarm(token)
            if reader is not None:
                reader.close()  # stops the query if the consumer stopped early
                release(cur)
            self._streams.give_back(lease)

    @staticmethod
    def _fetch(res, limit: int) -> list[tuple]:
        """Up to `limit` rows as tuples. Columns of plain types (_NATIVE: numbers, booleans, text, dates,
        timestamps and lists of them) come from DuckDB's own fetch, which gives them as Arrow would and is
        faster with DuckDB 1.5 (0.3 ms less on a point read, 2-4x on 10k-40k rows); other types go through
        Arrow, whose Python values (a MAP as (key, value) pairs, a UUID as text, a timestamp with time zone
        without pytz) the reads are written for."""
        if all(_NATIVE.fullmatch(str(d[1])) for d in res.description):
            return res.fetchmany(limit)
        reader = res.to_arrow_reader(min(limit, 100_000))
        rows: list[tuple] = []
        for batch in reader:
            take = min(batch.num_rows, limit - len(rows))
            if take < batch.num_rows:
                batch = batch.slice(0, take)
            rows.extend(zip(*(col.to_pylist() for col in batch.columns)))
            if len(rows) >= limit:
                break
        return rows

    def schema_version(self) -> str:
        row = self.query("SELECT max(name) FROM schema_migrations").rows
        return row[0][0] if row else ""
