"""Decode and map in worker processes, so one server uses every core.

Decoding is fast (upb), but mapping records to rows and rows to Arrow columns is
per-record Python: in the server process it shares one GIL with the receivers and
the writer. `MapPool` runs decode + map + to_arrow in `spawn`ed processes (gRPC's
threads make `fork` unsafe); a request goes out as bytes and comes back as Arrow
tables, each as one Arrow IPC stream. Resources stay rows: the writer drops the
ones it already holds by id.

A worker that dies (killed, out of memory) breaks the pool; the pool is rebuilt and
that request is mapped in the server process instead, so nothing is refused for it.
A server that dies (kill -9, out of memory) takes its workers with it: each watches
its parent's pid and exits when it changes (a spawned worker holds both ends of its
call queue's pipe, so it would never see the pipe close).
"""
from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

import pyarrow as pa

from tasktrail.store.api import to_arrow

from .decode import decode_request
from .map import Mapper

log = logging.getLogger("tasktrail.ingest")

# Per-process state of a worker (set once by its initializer; never touched in the server process).
_worker: dict = {}


class Mapped(NamedTuple):
    """One request mapped: rows by table, records stored, and what was refused or repaired."""
    rows: dict
    records: int
    refused: dict             # reason -> records refused one by one (they have no rows)
    repaired: int             # string fields whose invalid UTF-8 was replaced
    notes: tuple              # the first refusals and repairs, each naming its record or field


# How often a worker looks whether its server is still its parent, in seconds.
PARENT_CHECK_INTERVAL = 1.0


def _init(schemas: dict) -> None:
    _worker["mapper"] = Mapper()
    _worker["schemas"] = schemas
    parent = os.getppid()
    threading.Thread(target=_exit_with_parent, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """In a worker: exit as soon as the server that started it is gone (the worker is reparented)."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_INTERVAL)
    os._exit(0)


def map_body(mapper: Mapper, signal: str, body: bytes, fmt: str, schemas: dict | None = None) -> Mapped:
    """Decode and map one request; with `schemas`, its rows as Arrow tables per table (resources stay
    rows). Raises DecodeError."""
    decoded = decode_request(signal, body, fmt)
    out = mapper.map(signal, decoded.message)
    rows = out.rows
    if schemas is not None:
        rows = {t: (r if t == "resources" else to_arrow(r, schemas[t])) for t, r in rows.items() if r}
    return Mapped(rows, out.records, out.refused, decoded.repaired, tuple(out.notes) + decoded.notes)


def map_request(signal: str, body: bytes, fmt: str) -> Mapped:
    """In a worker: one request mapped, its rows as Arrow tables, each sent as one Arrow IPC stream
    (bytes): a third of pickling the table's arrays one by one, on both sides (`_from_ipc` reads it back)."""
    mapped = map_body(_worker["mapper"], signal, body, fmt, _worker["schemas"])
    return mapped._replace(rows={t: (_to_ipc(v) if isinstance(v, pa.Table) else v) for t, v in mapped.rows.items()})


def _to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _from_ipc(mapped: Mapped) -> Mapped:
    """A worker's Mapped with its tables read back from their IPC streams."""
    return mapped._replace(rows={t: (pa.ipc.open_stream(v).read_all() if isinstance(v, bytes) else v)
                                 for t, v in mapped.rows.items()})


class MapPool:
    """`workers` processes mapping requests; `prepare` is awaited on the event loop."""

    def __init__(self, workers: int, schemas: dict) -> None:
        self.workers = workers
        self._schemas = schemas
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        # Workers start on demand, so an idle server costs no extra processes.
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init, initargs=(self._schemas,))

    async def prepare(self, signal: str, body: bytes, fmt: str) -> Mapped | None:
        """The request mapped by a worker; None when the pool broke and the caller should map in-process."""
        pool = self._pool
        try:
            return _from_ipc(await asyncio.get_running_loop().run_in_executor(pool, map_request, signal, body, fmt))
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    log.error("an ingest worker died; starting a new pool (this request is mapped in-process)")
                    self._pool = self._new_pool()
            return None

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
