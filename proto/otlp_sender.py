"""OTLP log records straight to protobuf: a bounded queue of our own and the threads that send it.

The emitter's default path (proto/emitter.py). The caller's cost per record is a tuple on a deque;
`max_inflight` sender threads (one request in flight each, so a slow acknowledgement does not cap the
rate at one batch per round trip) build `ExportLogsServiceRequest`s (proto/otlp_encode.py: the bytes the
generated opentelemetry-proto classes would make, constant parts encoded once, a record's runner context
once per request on its scope), 2048 records at most per request, and send them over OTLP/gRPC
(`LogsService/Export`) or OTLP/HTTP (`POST /v1/logs`, protobuf). They retry what OTLP calls retryable
(gRPC UNAVAILABLE, RESOURCE_EXHAUSTED only with a RetryInfo, DEADLINE_EXCEEDED, ABORTED; HTTP 429, 502,
503, 504), backing off from 0.1 s to 5 s, and keep the batch while they do: a record leaves the queue only
when the receiver has it. Nothing blocks the caller: when the queue holds `max_queue_size` records a new
one is dropped and counted (`stats`). A forked child starts with an empty queue and threads of its own.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Optional

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from .otlp_encode import encode  # noqa: F401 - the request's bytes (also what tests and helpers import)

# Records per request: 2048 cost 1.5-2 µs less CPU per record than 512 (fewer requests to make and wake for;
# benchmarks/README.md, issue 20) at about 0.7 MB a request of status records.
MAX_BATCH = 2048
# A request above this many bytes is split in two (down to one record): receivers cap request sizes
# (gRPC's default 4 MiB; tasktrail's --max-body-bytes is 64 MiB).
MAX_REQUEST_BYTES = 4 * 1024 * 1024 - 64 * 1024
_RETRYABLE_HTTP = {429, 502, 503, 504}
# The queued record: (time ns, event name or None, body, severity number, severity text, attributes, scope
# name[, the runner context's attributes, sent once per request on the scope: proto/otlp_encode.py]).
Record = tuple


@dataclass
class SenderStats:
    """Counts since start: records the receiver took, dropped on a full queue, refused by the receiver
    (OTLP partial success or a non-retryable error), requests retried."""
    sent: int = 0
    dropped: int = 0
    refused: int = 0
    retries: int = 0
    last_error: Optional[str] = None


class _Grpc:
    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout_s: float) -> None:
        import grpc

        target = endpoint.split("://", 1)[-1].rstrip("/")
        self._grpc = grpc
        self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials()) \
            if endpoint.startswith("https://") else grpc.insecure_channel(target)
        # Raw bytes in, parsed response out: the request is already serialized.
        self._export = self._channel.unary_unary(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            request_serializer=None, response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString)
        self._metadata = tuple((k.lower(), v) for k, v in headers.items())
        self._timeout = timeout_s

    def send(self, body: bytes) -> tuple[str, float, int, Optional[str]]:
        """(outcome: ok | retry | refused, seconds to wait before a retry, records rejected, error text)."""
        grpc = self._grpc
        try:
            resp = self._export(body, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as exc:
            code, wait = exc.code(), _retry_info(exc)
            # OTLP: RESOURCE_EXHAUSTED is retryable only when the server says when (RetryInfo); without it
            # (a message over the receiver's size limit) retrying would never end.
            retryable = code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.ABORTED) or \
                (code == grpc.StatusCode.RESOURCE_EXHAUSTED and wait is not None)
            return ("retry" if retryable else "refused"), wait or 0.0, 0, f"gRPC {code.name}: {exc.details()}"
        ps = resp.partial_success
        return "ok", 0.0, ps.rejected_log_records, ps.error_message or None

    def close(self) -> None:
        self._channel.close()


def _retry_info(exc) -> Optional[float]:
    """Seconds a gRPC error's RetryInfo trailer asks to wait, else None."""
    try:
        from google.rpc import error_details_pb2
        for key, value in exc.trailing_metadata() or ():
            if key == "google.rpc.retryinfo-bin":
                return error_details_pb2.RetryInfo.FromString(value).retry_delay.ToNanoseconds() / 1e9
    except Exception:  # noqa: BLE001 - a malformed trailer is no RetryInfo
        return None
    return None


class _Http:
    def __init__(self, endpoint: str, headers: Mapping[str, str], timeout_s: float) -> None:
        self._url = endpoint.rstrip("/") + "/v1/logs"
        self._headers = {"Content-Type": "application/x-protobuf", **headers}
        self._timeout = timeout_s

    def send(self, body: bytes) -> tuple[str, float, int, Optional[str]]:
        """As _Grpc.send."""
        req = urllib.request.Request(self._url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as exc:
            after = exc.headers.get("Retry-After") if exc.headers else None
            wait = float(after) if after and after.isdigit() else 0.0
            return ("retry" if exc.code in _RETRYABLE_HTTP else "refused"), wait, 0, f"HTTP {exc.code}"
        except OSError as exc:  # refused, reset, timed out: the receiver may come back
            return "retry", 0.0, 0, f"{type(exc).__name__}: {exc}"
        ps = logs_service_pb2.ExportLogsServiceResponse.FromString(data).partial_success if data else None
        return "ok", 0.0, (ps.rejected_log_records if ps else 0), ((ps.error_message or None) if ps else None)

    def close(self) -> None:
        pass


class LogSender:
    """A bounded queue of log records and the thread that sends them as OTLP (see the module doc)."""

    def __init__(self, endpoint: str, resource: Mapping[str, object], *, protocol: str = "grpc",
                 headers: Optional[Mapping[str, str]] = None, max_queue_size: int = 50_000,
                 interval_ms: int = 200, timeout_s: float = 10.0, max_inflight: int = 4) -> None:
        transport = {"grpc": "grpc", "http": "http", "http/protobuf": "http"}.get(protocol)
        if transport is None:
            raise ValueError(f"protocol must be grpc or http/protobuf, got {protocol!r}")
        self._args = (endpoint, dict(headers or {}), timeout_s, transport)
        self.resource = dict(resource)
        self.max_queue_size = max_queue_size
        self._interval = interval_ms / 1000
        self._workers = max(1, max_inflight)
        # The threads wake every interval and send all that is queued; a burst wakes them early only once
        # a quarter of the queue is taken, so the caller's own work is not cut into by encoding.
        self._wake_at = max(MAX_BATCH, max_queue_size // 4)
        self.stats = SenderStats()
        self._closed = False
        self._start()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (s := ref()) and s._start())
        atexit.register(lambda: (s := ref()) and s.shutdown(2000))

    def _start(self) -> None:
        endpoint, headers, timeout_s, transport = self._args
        self._queue: deque = deque()
        self._inflight = 0
        self._count_lock = threading.Lock()
        self._wake = threading.Condition(threading.Lock())
        self._transport = _Grpc(endpoint, headers, timeout_s) if transport == "grpc" else \
            _Http(endpoint, headers, timeout_s)
        self._threads = [threading.Thread(target=self._run, name=f"tasktrail-otlp-sender-{i}", daemon=True)
                         for i in range(self._workers)]
        for t in self._threads:
            t.start()

    # --- the caller's side ----------------------------------------------------------------
    def add(self, record: Record) -> bool:
        """Queue one record; False (and counted as dropped) when the queue is full or the sender closed."""
        q = self._queue
        if len(q) >= self.max_queue_size or self._closed:
            self.stats.dropped += 1
            return False
        q.append(record)
        if len(q) == self._wake_at:  # a burst: send before the interval ends, so the queue never fills
            with self._wake:
                self._wake.notify_all()
        return True

    def full(self) -> bool:
        """True when the next record would be dropped."""
        return len(self._queue) >= self.max_queue_size

    def flush(self, timeout_ms: int = 10_000) -> bool:
        """Wait until every queued record is sent (or given up); False on timeout."""
        deadline = time.monotonic() + timeout_ms / 1000
        with self._wake:
            self._wake.notify()
        while self._queue or self._inflight:
            if time.monotonic() >= deadline or not any(t.is_alive() for t in self._threads):
                return False
            time.sleep(0.005)
        return True

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Flush, then stop the thread and close the connection."""
        if self._closed:
            return
        self.flush(timeout_ms)
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        for t in self._threads:
            t.join(timeout=1)
        self._transport.close()

    # --- the sender thread ----------------------------------------------------------------
    def _run(self) -> None:
        q = self._queue
        while True:
            with self._wake:
                if len(q) < self._wake_at and not self._closed:
                    self._wake.wait(self._interval)
            if self._closed and not q:
                return
            while q:
                with self._count_lock:  # take a batch and count it in flight in one step (flush reads both)
                    batch = [q.popleft() for _ in range(min(MAX_BATCH, len(q)))]
                    self._inflight += len(batch)
                try:
                    self._deliver_split(batch)
                finally:
                    with self._count_lock:
                        self._inflight -= len(batch)
                if self._closed:
                    break

    def _deliver_split(self, batch: list) -> None:
        body = encode(self.resource, batch)
        if len(body) > MAX_REQUEST_BYTES and len(batch) > 1:
            half = len(batch) // 2
            self._deliver_split(batch[:half])
            self._deliver_split(batch[half:])
            return
        self._deliver(body, len(batch))

    def _deliver(self, body: bytes, count: int) -> None:
        backoff = 0.1
        while True:
            outcome, wait, rejected, error = self._transport.send(body)
            if error:
                self.stats.last_error = error
            if outcome == "ok":
                self.stats.sent += count - rejected
                self.stats.refused += rejected
                return
            if outcome == "refused":  # not retryable (a bad token, a malformed request): say so, go on
                self.stats.refused += count
                return
            if self._closed:
                self.stats.dropped += count
                return
            self.stats.retries += 1
            time.sleep(max(wait, backoff))
            backoff = min(backoff * 2, 5.0)
