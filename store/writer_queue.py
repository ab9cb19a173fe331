"""What goes through the writer's queue besides requests, and what waits on it (store/writer.py's BatchWriter).

- FLUSH: a read asks the writer to commit what it gathered now (`_ask_flush`), instead of gathering more.
- A job: a function the writer runs on its own connection between two batches (`on_writer`): `tasktrail
  rebuild` and a benchmark's bulk load, which must not share the connection with the writer's own upkeep.
- The applied mark: requests submitted and requests committed or failed, which reads wait on
  (`wait_applied`: with a journal, acknowledgements come before the commit).
"""
from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import Callable, NamedTuple

import duckdb

from .api import StoreClosed

STOP = object()
FLUSH = object()   # a reader waits for what is queued: commit now instead of gathering more


class Job(NamedTuple):
    """fn(con) to run on the writer's thread and connection between batches (`on_writer`)."""
    fn: Callable
    future: Future


class WriterQueue:
    """The applied mark, FLUSH asks and jobs of BatchWriter, which holds `_queue`, `_writer`, `_con`,
    `commit_interval_s` and `_fatal`."""

    def _init_applied(self) -> None:
        """Requests submitted and requests committed or failed so far (`wait_applied`)."""
        self._applied = threading.Condition()
        self._submitted = 0
        self._done = 0
        self._flush_asked = False     # a FLUSH is in the queue (a read waits for what is queued)

    def wait_applied(self, timeout_s: float) -> bool:
        with self._applied:
            target = self._submitted
            if self._done >= target:
                return True
        if threading.current_thread() is self._writer:
            return False
        self._ask_flush()
        with self._applied:
            return self._applied.wait_for(lambda: self._done >= target, timeout_s)

    def _ask_flush(self) -> None:
        """Have the writer commit what it gathered now (a read waits for it, or the queue is full)."""
        if not self.commit_interval_s:
            return
        with self._applied:
            ask = not self._flush_asked   # one FLUSH in the queue is enough for every waiting read
            self._flush_asked = True
        if ask:
            self._queue.put(FLUSH)

    def _flush_taken(self) -> None:
        with self._applied:
            self._flush_asked = False

    def _mark_done(self, n: int) -> None:
        """`n` more requests of the queue were committed or failed (they leave it in order)."""
        with self._applied:
            self._done += n
            self._applied.notify_all()

    def on_writer(self, fn: Callable):
        """fn(con) run on the writer's thread and connection, between two batches, where nothing else uses that
        connection (the writer's upkeep included): its result, or what it raised. Without a writer thread (a
        read-only store, or called from the writer itself) it runs here. Raises StoreClosed once close() began:
        close() marks that under the store's lock before it queues STOP, and the job is queued under the same
        lock, so a queued job always runs before the writer stops."""
        fut: Future = Future()
        with self._lock:
            if self._shut:
                raise StoreClosed("the store is closed")
            queued = self._writer is not None and threading.current_thread() is not self._writer
            if queued:
                self._queue.put(Job(fn, fut))
        return fut.result() if queued else fn(self._con)

    def _run_job(self, job: Job) -> None:
        try:
            job.future.set_result(job.fn(self._con))
        except BaseException as exc:  # the caller's to raise; a fatal DuckDB error is the writer's to recover from
            if isinstance(exc, duckdb.Error):
                self._fatal(exc)
            job.future.set_exception(exc)

