"""The store seam: everything the other layers call on a store, and nothing else.

As Jaeger's storage plugins split a Writer from a Reader, the contract has two sides:
- `LogWriter`: what ingest calls (submit a request's rows; ask whether a request is stored; the
  writer's figures for /metrics), and `to_arrow`, the columnar form `submit` takes from ingest's workers;
- `LogReader`: what query calls (reads with time limits and row caps; the schema version), and what
  reads spell in SQL over the caches: `INVOCATION_COLUMNS`, `BY_ID`, `best_of`, the metric carry's
  `DURATION_BUCKETS`, `DURATION_SQL` and `CARRY_READ_SQL`.
The composition root (tasktrail/) also runs `LogMaintenance` (retention, rebuild, close). Backends (the
embedded DuckDB file, store/duckdb.py; DuckLake, store/ducklake.py) implement all three: `EventLog`.
Edge cases are part of the contract and are written down here.
"""
from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Optional, Protocol, Sequence, TypeVar

# The read side's SQL over the caches: the task duration histogram and the metric carry retention keeps
# (store/carry.py), and a runner's most specific kept field across runner_state rows (store/runner_state.py).
from .carry import DURATION_BUCKETS, DURATION_SQL, READ_SQL as CARRY_READ_SQL  # noqa: F401  (the contract's)
# Canonical rows as one Arrow table of a schema `arrow_schemas()` gives: the columnar form `submit` takes
# (ingest's workers convert with it).
from .rows import to_arrow  # noqa: F401  (the contract's)
from .runner_state import best_of  # noqa: F401  (the contract's)

if TYPE_CHECKING:
    import pyarrow as pa

T = TypeVar("T")


# What one invocation's row shows, as reads may select it from the invocation_state cache (and the
# `invocations` view shows it, with is_final after status: store/sql/views.sql is rendered from this).
INVOCATION_COLUMNS = ("app_id", "invocation_id", "task_id", "status", "parent_invocation_id", "workflow_id",
                      "workflow_type", "runner_id", "worker_id", "created_at", "updated_at", "attempts")
# A point lookup of invocation_state by id (params: the id twice): its keys (store/invocation_keys.py: the
# id's hash and the created_at of each row it may have, read from runs sorted by hash) are pushed into the scan
# of invocation_state, whose zone maps on created_at then skip all but a row group or two; then the string.
# The string is compared as an expression (`|| ''`), not as a filter of the scan: with it in the scan DuckDB
# estimated the state side at one row, built the join's hash table from it and read every row (750 ms at 10M
# invocations, against 9 ms when the keys are the build side and their matches filter the scan).
BY_ID = ("(id_hash, created_at) IN (SELECT key_hash, created_at FROM invocation_keys_all "
         "WHERE kind = 0 AND key_hash = hash(?::VARCHAR)) AND invocation_id || '' = ?")

# The trigger runs that created or read an invocation, as a condition on trigger_runs (params: the id three
# times): their times from the id's kind-2 keys (store/invocation_keys.py) prune trigger_runs' row groups, then
# the id itself is checked (a hash can collide). Without the keys every trigger run is read (19 ms at 1M).
TRIGGER_RUNS_OF = ("ts IN (SELECT created_at FROM invocation_keys_all WHERE kind = 2 AND key_hash = hash(?::VARCHAR)) "
                   "AND (triggered_invocation_id = ? OR list_contains(source_invocation_ids, ?))")
# Whether any trigger run may have created or read an invocation (params: the id): its kind-2 keys only (a hash
# collision answers True; the runs read with TRIGGER_RUNS_OF then say none).
ANY_TRIGGER_RUN = "EXISTS (SELECT 1 FROM invocation_keys_all WHERE kind = 2 AND key_hash = hash(?::VARCHAR))"


def children_keys(n: int) -> str:
    """A statement: the created_at of each invocation_state row whose parent may be one of n ids (params: the
    ids), from the parents' keys (store/invocation_keys.py, kind 1), a point lookup each; a hash can collide, so
    the rows they name are checked against the ids (`children_of`)."""
    return " UNION ALL ".join(["SELECT created_at FROM invocation_keys_all WHERE kind = 1 AND key_hash = hash(?::VARCHAR)"] * n)


def children_of(n: int) -> str:
    """A condition on invocation_state: the row's parent_invocation_id is one of n ids (params: the ids twice),
    its created_at found through the parents' keys (`children_keys`). When no key is found DuckDB still scans
    the rows (an empty semi-join filters nothing out of the scan: 60 ms at 10M invocations), so a read that
    may find none looks the keys up first (query/family.py)."""
    ph = ", ".join(["?"] * n)
    return f"created_at IN ({children_keys(n)}) AND parent_invocation_id || '' IN ({ph})"  # as BY_ID


class StoreError(Exception):
    """Base of the store's named errors."""


class StoreClosed(StoreError):
    """The log is closed (shutting down): retry against another node or later."""


class StoreUnavailable(StoreError):
    """A commit failed (disk full, unwritable file); nothing of that batch is stored."""


class QueueFull(StoreError):
    """The write queue is full; retry after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueryTimeout(StoreError):
    """A read ran past its time limit and was interrupted."""


class QueryError(StoreError):
    """A read failed: bad SQL, or refused as not read-only."""


class ReadersBusy(StoreError):
    """Every cursor for streamed reads is in use; retry after `retry_after_s` seconds."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LedgerEntry(NamedTuple):
    request_hash: str
    received_at: int          # micros
    transport: str            # grpc | http
    signal: str               # traces | logs | metrics
    body_bytes: int


class Ack(NamedTuple):
    batch: int                # commit number holding the rows
    duplicate: bool           # an identical request was already stored; nothing appended


@dataclass
class Result:
    """A read's answer: column names, rows as tuples, and whether the row cap cut it."""
    columns: list[str]
    rows: list[tuple]
    truncated: bool = False

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r)) for r in self.rows]


@dataclass
class WriterStats:
    queue_records: int = 0
    queue_capacity: int = 0
    batches: int = 0
    committed_requests: int = 0
    committed_records: int = 0
    duplicates: int = 0
    rejected_full: int = 0
    failed_batches: int = 0
    last_commit_at: Optional[float] = None
    last_commit_seconds: Optional[float] = None
    # Commit latency as a cumulative histogram (for /metrics).
    commit_bounds: tuple = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
    commit_bucket_counts: list = field(default_factory=lambda: [0] * 12)
    commit_seconds_sum: float = 0.0
    checkpoints: int = 0              # idle checkpoints run by the writer
    checkpoint_seconds_sum: float = 0.0


class LogWriter(Protocol):
    """The write side: ingest/pipeline.py (and its workers, through `to_arrow`)."""

    def submit(self, rows: dict[str, list], records: int, entry: LedgerEntry) -> "Future[Ack]":
        """Queue one request's rows. The future resolves only after the batch holding
        them is committed (ack = durable), or fails with StoreUnavailable. Raises
        QueueFull when the queue is over capacity and StoreClosed after close().
        Idempotent on `entry.request_hash`: a request already stored resolves with
        `duplicate=True` and appends nothing."""

    def arrow_schemas(self) -> dict:
        """{table: pyarrow.Schema} of the log's tables (without `batch`): `submit` takes a table's
        rows either as row tuples or as an Arrow table of this schema (`to_arrow`)."""

    def is_duplicate(self, request_hash: str) -> bool:
        """True when a request with this hash is already committed (cheap, in memory)."""

    def stored_requests(self, hashes: list[str]) -> set[str]:
        """Which of these request hashes (hex) the ingest ledger holds: a read of the ledger, for a
        journal's replay at start (ingest/journaled.py). Raises StoreError."""

    def store_id(self) -> str:
        """This store's id (a UUID kept in the store), which its write-ahead journal records."""

    def wait_applied(self, timeout_s: float) -> bool:
        """Wait until every request submitted before the call has been committed or failed (at most
        `timeout_s`); True when it has. Reads call it when acknowledgements may come before the commit
        (a journal: `read_after_ack`)."""

    def stats(self) -> WriterStats:
        """The writer's figures (queue, commits, failures) for /metrics and /ops."""

    def size_bytes(self) -> Optional[int]:
        """Bytes the store takes on disk (database file and write-ahead log, or a lake's data files);
        None when it cannot say (in memory)."""


class LogReader(Protocol):
    """The read side: query/ (and `tasktrail sql` on a file)."""

    def query(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float = 10.0,
              max_rows: int = 10_000) -> Result:
        """Run one read on a fresh cursor (params: a sequence for `?`, or a dict for `$name`). Never blocks the writer. Raises QueryTimeout
        past `timeout_s` and cuts at `max_rows` (Result.truncated). Empty results are
        an empty `rows` list, never None."""

    def query_arrow(self, sql: str, params: Sequence[Any] = (), *, timeout_s: float = 10.0) -> "pa.Table":
        """`query`, answered as one Arrow table (no row cap): for reads that work on whole columns."""

    def stream(self, sql: str, consume: "Callable[[list[str], Iterator[Any]], T]", *, timeout_s: float = 10.0,
               wait_s: float = 2.0, rows_per_batch: int = 64, prepare: "tuple[str, ...]" = ()) -> "T":
        """Run one SELECT on a cursor for streamed reads and return `consume(columns, batches)`, where
        `batches` yields pyarrow RecordBatches of at most `rows_per_batch` rows as DuckDB produces them;
        columns Arrow cannot carry faithfully come as DuckDB's text of them. The time limit covers the
        whole call: DuckDB is interrupted past `timeout_s` (QueryTimeout), and `consume` must check the
        clock itself while it converts. Stopping early (returning) stops the query. Raises ReadersBusy
        when no such cursor is free within `wait_s`, QueryError for SQL that fails. `prepare`: statements
        the cursor runs once before its first read with them (TEMP macros that bound what the SQL may
        build: query/sql_values.py); a cursor runs a given tuple again only after the store reopens."""

    def schema_version(self) -> str:
        """The newest migration applied (/readyz); raises while the store is not open."""


class LogMaintenance(Protocol):
    """What only the composition root runs (tasktrail/server.py, tasktrail/cli.py)."""

    def retain(self, policy: Any, now: Any = None) -> Any:
        """One retention pass (store/retention.py: a RetentionPolicy in, a report out), beside the writer."""

    def rebuild_state(self) -> int:
        """Recompute the caches from the log (ingest stopped); returns the invocations they hold."""

    def close(self) -> None:
        """Stop accepting, drain the queue, commit, close. Idempotent."""


class EventLog(LogWriter, LogReader, LogMaintenance, Protocol):
    """A whole backend: both sides and their maintenance."""

