"""Composition root for `tasktrail serve`: one store, one ingestor, three listeners, one loop.

Start-up opens the store (migrations run), binds every port (0 picks a free one)
and prints them. SIGINT/SIGTERM stop the listeners, drain the write queue and
commit before the store closes.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import uvicorn
from prometheus_client import CollectorRegistry, GCCollector

from tasktrail.ingest.decode import rpc_status
from tasktrail.ingest.grpc import start_grpc_server
from tasktrail.ingest.http import create_otlp_http_app
from tasktrail.commands import CommandDesk
from tasktrail.ingest.journal import Journal, JournalUnavailable
from tasktrail.ingest.pipeline import Ingestor
from tasktrail.query.anomalies import AnomalySettings
from tasktrail.query.service import QueryService, QuerySettings
from tasktrail.query.values import PreviewLimits
from tasktrail.store import allocator
from tasktrail.store.api import StoreError, StoreUnavailable
from tasktrail.store.duckdb import DuckDBStore
from tasktrail.store.retention import RetentionPolicy
from tasktrail.web.app import WebSettings, create_app
from tasktrail.web.errors import error_body
from tasktrail.web.metrics import InfoCollector, LogCollector

from . import __version__, celery_control, celery_queues, gc_tuning
from .connections import LISTEN_QUEUE, ConnectionLimits, closed_counter, fit_file_limit, guarded_protocol
from .hosts import HostGuard, host_rule
from .settings import Settings

log = logging.getLogger("tasktrail")


@dataclass
class Bound:
    web_port: Optional[int]          # None when this process serves no web (tasktrail ingest)
    otlp_http_port: Optional[int]    # None when it receives nothing (tasktrail web)
    otlp_grpc_port: Optional[int]


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: this process has one stop for three listeners."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        pass


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted connections only for such
    # sockets; without it every keep-alive answer stalls ~40 ms on Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind {host}:{port}: {exc.strerror}") from None
    sock.listen(LISTEN_QUEUE)
    sock.setblocking(False)
    return sock


def _web_refusal(status: int, message: str) -> tuple[str, bytes]:
    """The web port's one error shape."""
    return "application/json", json.dumps(error_body(status, message)).encode()


def _otlp_refusal(status: int, message: str) -> tuple[str, bytes]:
    """OTLP/HTTP's error shape: a google.rpc.Status, as JSON (the client's content type is not known yet)."""
    return "application/json", rpc_status(status, message, "json")


def guard_hosts(app, settings: Settings, token: Optional[str], refusal):
    """`app` behind the Host check when its listener needs no token (tasktrail/hosts.py), else `app`."""
    if token:
        return app
    return HostGuard(app, host_rule(settings.host, settings.allowed_hosts, settings.public_url), refusal)


def connection_limits(settings: Settings, listeners: int) -> ConnectionLimits:
    """The per-listener limits; the connection cap lowered (with a warning) when this process's file limit
    cannot hold `listeners` × --max-connections."""
    cap, batch = fit_file_limit(listeners, settings.max_connections)
    if cap < settings.max_connections:
        log.warning("the file limit (ulimit -n) cannot hold %d listeners x %d connections: at most %d "
                    "connections per listener; raise the limit to lift this", listeners, settings.max_connections, cap)
    return ConnectionLimits(max_connections=cap, header_timeout_s=settings.header_timeout_s,
                            body_timeout_s=settings.body_timeout_s,
                            keep_alive_timeout_s=settings.keep_alive_timeout_s, accept_batch=batch)


def _http_config(app, limits: ConnectionLimits, refusal, listener: str, closed, **kw) -> uvicorn.Config:
    """uvicorn's config for one HTTP listener, with the guarded h11 protocol (tasktrail/connections.py)."""
    return uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                          http=guarded_protocol(limits, refusal, listener, closed),
                          timeout_keep_alive=limits.keep_alive_timeout_s, backlog=limits.accept_batch, **kw)


def open_store(settings: Settings, role: str = "all"):
    """The embedded DuckDB file, or a DuckLake store (`--store ducklake:...`) shared by many processes."""
    common = dict(queue_records=settings.queue_records, max_batch_records=settings.max_batch_records,
                  memory_limit=settings.duckdb_memory_limit, threads=settings.duckdb_threads,
                  stream_readers=settings.sql_concurrency)
    if settings.store:
        from tasktrail.store.ducklake import DuckLakeStore
        return DuckLakeStore(settings.store.removeprefix("ducklake:"), settings.data_path, fold=role != "ingest",
                             commit_interval_s=settings.lake_commit_interval_s, **common)
    if role != "all":
        raise ValueError(f"`tasktrail {role}` shares a store with other processes: it needs --store "
                         "ducklake:... (one DuckDB file belongs to one `tasktrail serve`)")
    return DuckDBStore(settings.db, checkpoint_threshold=settings.duckdb_checkpoint_threshold, **common)


def query_settings(settings: Settings) -> QuerySettings:
    anomalies = AnomalySettings(
        runner_dead_after_s=settings.runner_dead_after_s, max_pending_s=settings.max_pending_s,
        slow_factor=settings.slow_factor, min_samples=settings.slow_min_samples,
        spike_window_s=settings.spike_window_s, spike_factor=settings.spike_factor)
    return QuerySettings(runner_dead_after_s=settings.runner_dead_after_s, jaeger_url=settings.jaeger_url,
                         tempo_url=settings.tempo_url, sql_timeout_s=settings.sql_timeout_s,
                         sql_max_rows=settings.sql_max_rows, sql_max_bytes=settings.sql_max_bytes,
                         anomalies=anomalies,
                         previews=PreviewLimits(settings.preview_bytes, settings.traceback_preview_bytes))


async def serve(settings: Settings, *, role: str = "all", on_ready: Optional[Callable[[Bound], None]] = None,
                stop: Optional[asyncio.Event] = None, settle_gc: bool = False) -> None:
    """`role`: "all" (tasktrail serve), "ingest" (receivers + writer) or "web" (UI, API, metrics).
    `settle_gc` (the command line's): once listening, tune Python's collector (tasktrail/gc_tuning.py)."""
    stop = stop or asyncio.Event()
    store = open_store(settings, role)
    _memory_trace(store, os.environ)
    registry = _registry()
    ingestor = _ingestor(store, registry, settings) if role != "web" else None
    grpc_server = None
    servers, socks = [], []
    try:
        if ingestor is not None:
            await asyncio.get_running_loop().run_in_executor(None, _replay, ingestor)
        limits = connection_limits(settings, listeners=(role != "ingest") + 2 * (ingestor is not None))
        closed = closed_counter(registry)
        desk = None
        if role != "ingest":
            query = QueryService(store, query_settings(settings))
            desk = CommandDesk(store, query, ttl_s=settings.command_ttl_s, read_only=settings.read_only)
            servers.append(_web_server(settings, query, registry, limits, closed, desk))
            socks.append(_bind(settings.host, settings.http_port))
        if ingestor is not None:
            servers.append(_otlp_http_server(settings, ingestor, limits, closed))
            socks.append(_bind(settings.host, settings.otlp_http_port))
            grpc_server, grpc_port = await start_grpc_server(
                ingestor, settings.host, settings.otlp_grpc_port, ingest_token=settings.ingest_token,
                max_body_bytes=settings.max_body_bytes, max_connections=limits.max_connections,
                handshake_timeout_s=limits.header_timeout_s)
        tasks = await _start(servers, socks)
        ports = [sock.getsockname()[1] for sock in socks]
        bound = Bound(ports[0] if role != "ingest" else None,
                      ports[-1] if ingestor is not None else None,
                      grpc_port if ingestor is not None else None)
        if bound.web_port is not None:
            registry.register(InfoCollector(__version__, public_url(settings, bound.web_port)))
        if settle_gc:
            gc_tuning.settle()
        if on_ready:
            on_ready(bound)
        _stop_on_signals(stop)
        background = _background(store, ingestor, desk, settings, stop, role)
        await stop.wait()
        for task in background:
            task.cancel()
        log.info("stopping: closing listeners, draining the write queue")
        for s in servers:
            s.should_exit = True
        if grpc_server is not None:
            await grpc_server.stop(grace=5)
            grpc_server = None
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        if grpc_server is not None:
            await grpc_server.stop(grace=0)
        if ingestor is not None:
            await asyncio.get_running_loop().run_in_executor(None, ingestor.close)
        await asyncio.get_running_loop().run_in_executor(None, store.close)
        if ingestor is not None:
            await asyncio.get_running_loop().run_in_executor(None, ingestor.close_journal)


def _registry() -> CollectorRegistry:
    """This process's /metrics registry, with Python's collector runs per generation (python_gc_*)."""
    registry = CollectorRegistry()
    GCCollector(registry=registry)
    return registry


def _memory_trace(store, env) -> None:
    """With TASKTRAIL_MEMORY_TRACE=<file> in `env`, start the debugging probe of tasktrail/memory_trace.py."""
    if env.get("TASKTRAIL_MEMORY_TRACE"):
        from tasktrail import memory_trace
        memory_trace.start(store, env["TASKTRAIL_MEMORY_TRACE"], float(env.get("TASKTRAIL_MEMORY_TRACE_S", "30")),
                           env.get("TASKTRAIL_TRACEMALLOC") == "1")


def _ingestor(store, registry, settings: Settings) -> Ingestor:
    """The ingest path: with a journal (the embedded default), acknowledged once fsynced there and applied
    to the store every `apply_interval_s`, reads waiting for what was acknowledged before them."""
    path = settings.journal_path()
    try:
        journal = Journal(path, max_bytes=settings.journal_max_bytes, owner=store.store_id()) if path else None
    except JournalUnavailable as exc:
        store.close()
        raise StoreUnavailable(str(exc)) from None
    if journal is not None:
        store.commit_interval_s = max(store.commit_interval_s, settings.apply_interval_s)   # a lake's: 1 s
        store.read_after_ack = True
    return Ingestor(store, registry, workers=settings.ingest_workers, journal=journal)


def _replay(ingestor: Ingestor) -> None:
    """Apply what the journal kept from the last run (before any listener opens); a store that cannot
    write now leaves it journaled for the next start."""
    try:
        got = ingestor.replay()
    except StoreError as exc:
        log.error("the journal's requests could not be applied now (%s); they stay journaled", exc)
        return
    if got and (got.applied or got.already_stored):
        log.info("journal replayed: %d requests (%d records) applied, %d already stored",
                 got.applied, got.records, got.already_stored)


def _background(store, ingestor: Optional[Ingestor], desk: Optional[CommandDesk], settings: Settings,
                stop: asyncio.Event, role: str) -> list:
    """The periodic tasks this process runs until `stop`: retention and command expiry (web side), the
    Celery queue poller (ingest side) and, in `tasktrail serve` with --celery-broker, the Celery app's agent
    (it takes the app's commands from the desk and reports through the ingestor: tasktrail/celery_control.py)."""
    tasks = []
    if role != "ingest":
        tasks.append(asyncio.create_task(_retain_periodically(store, settings, stop)))
    if ingestor is not None and settings.celery_broker:
        tasks.append(asyncio.create_task(celery_queues.poll(
            ingestor, settings.celery_broker, settings.celery_app, settings.celery_queues, settings.celery_poll_s,
            stop)))
    if ingestor is not None:
        tasks.append(asyncio.create_task(_trim_periodically(stop)))
    if desk is not None:
        tasks.append(asyncio.create_task(_expire_periodically(desk, settings, stop)))
        if ingestor is not None and settings.celery_broker:
            tasks.append(asyncio.create_task(celery_control.run(
                desk, ingestor, settings.celery_broker, settings.celery_app, settings.celery_result_backend, stop)))
    return tasks


def _web_server(settings: Settings, query: QueryService, registry, limits: ConnectionLimits, closed,
                desk: Optional[CommandDesk] = None) -> _Server:
    """The web listener's server: pages, API and /metrics over `query`; commands through `desk`."""
    registry.register(LogCollector(query))
    web_settings = WebSettings(api_token=settings.api_token, metrics_public=settings.metrics_public,
                               jaeger_url=settings.jaeger_url, tempo_url=settings.tempo_url,
                               public_url=settings.public_url, max_tails=settings.max_tails,
                               max_tails_per_client=settings.max_tails_per_client,
                               ingest_token=settings.ingest_token, read_only=settings.read_only)
    web_app = guard_hosts(create_app(query, web_settings, registry, commands=desk), settings, settings.api_token, _web_refusal)
    return _Server(_http_config(web_app, limits, _web_refusal, "web", closed))


def _otlp_http_server(settings: Settings, ingestor: Ingestor, limits: ConnectionLimits, closed) -> _Server:
    """The OTLP/HTTP listener's server."""
    otlp_app = guard_hosts(create_otlp_http_app(ingestor, ingest_token=settings.ingest_token,
                                                max_body_bytes=settings.max_body_bytes),
                           settings, settings.ingest_token, _otlp_refusal)
    return _Server(_http_config(otlp_app, limits, _otlp_refusal, "otlp_http", closed,
                                h11_max_incomplete_event_size=1024 * 1024))


async def _start(servers: list, socks: list) -> list:
    """Serve each server on its socket; returns their tasks once all have started (or raises what one of
    them failed with)."""
    tasks = [asyncio.create_task(srv.serve(sockets=[sock])) for srv, sock in zip(servers, socks)]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            for t in tasks:
                if t.done() and t.exception():
                    raise t.exception()
        await asyncio.sleep(0.01)
    for sock in socks:
        # asyncio listened with uvicorn's `backlog`, our accept batch; give the kernel's queue its room back.
        sock.listen(LISTEN_QUEUE)
    return tasks


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _expire_periodically(desk: CommandDesk, settings: Settings, stop: asyncio.Event) -> None:
    """Expire commands nobody finished within --command-ttl: checked every tenth of it (1 to 30 s)."""
    loop = asyncio.get_running_loop()
    every = min(30.0, max(1.0, settings.command_ttl_s / 10))
    while not stop.is_set():
        try:
            n = await loop.run_in_executor(None, desk.expire_due)
            if n:
                log.info("commands: %d expired (no runner finished them within %g s)", n, settings.command_ttl_s)
        except Exception as exc:  # expiry must never take the server down; it tries again next time
            log.error("command expiry failed: %s", exc)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=every)


# How often freed memory goes back to the system (store/allocator.py purge): glibc's heap only shrinks from its
# top by itself, and a burst (a write queue that filled while a checkpoint ran) left 50 MB of it free for good.
TRIM_EVERY_S = 60.0


async def _trim_periodically(stop: asyncio.Event) -> None:
    """Give the allocators' free pages back every TRIM_EVERY_S (a few ms each), off the event loop."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=TRIM_EVERY_S)
        await loop.run_in_executor(None, allocator.purge)


async def _retain_periodically(store, settings: Settings, stop: asyncio.Event) -> None:
    """Retention at start and then every `retention_every_s`, off the event loop and off the writer."""
    policy = RetentionPolicy(settings.retention_days, settings.keep_failed_days, settings.max_logs_per_invocation)
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            rep = await loop.run_in_executor(None, store.retain, policy)
            if rep.rows or rep.truncated_invocations:
                log.info("retention: removed %d invocations, %d rows; capped the logs of %d invocations "
                         "(cutoff %s, failed kept until %s)", rep.invocations, rep.rows, rep.truncated_invocations,
                         rep.cutoff, rep.failed_cutoff)
        except Exception as exc:  # retention must never take ingest down; it tries again next time
            log.error("retention pass failed: %s", exc)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.retention_every_s)


def public_url(settings: Settings, web_port: int) -> str:
    """The base URL of the web pages: --public-url without a trailing slash, else the served address
    (this machine's name when the listeners bind every address)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"http://{'[' + host + ']' if ':' in host else host}:{web_port}"


def print_bound(settings: Settings, bound: Bound, out=sys.stdout) -> None:
    h = settings.host if ":" not in settings.host else f"[{settings.host}]"
    print(f"tasktrail serving {settings.store or settings.db}", file=out)
    if bound.web_port is not None:
        print(f"  web + API   http://{h}:{bound.web_port}", file=out)
        if settings.public_url:
            print(f"  public URL  {public_url(settings, bound.web_port)}", file=out)
    if bound.otlp_http_port is not None:
        print(f"  OTLP HTTP   http://{h}:{bound.otlp_http_port}", file=out)
        print(f"  OTLP gRPC   {h}:{bound.otlp_grpc_port}", file=out)
    out.flush()
