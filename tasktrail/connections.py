"""How many connections an HTTP listener holds, and for how long a client may take to send its request.

uvicorn times out only the wait *between* requests (`timeout_keep_alive`, restarted by every byte), and
its `limit_concurrency` answers 503 once a request head has arrived, so a client that never finishes its
head keeps its socket for ever. `guarded_protocol` returns uvicorn's h11 protocol with, per connection:

- a head deadline: the request line and headers must arrive within `header_timeout_s` of the connection
  opening, or of the first byte of a later request on it (a trickle of bytes does not extend it);
  a client that sent part of a head gets 408, one that sent nothing is closed;
- a body deadline: the body must arrive within `body_timeout_s` of the head (time while the server
  itself pauses reading does not count);
- idle keep-alive connections close after `keep_alive_timeout_s` (uvicorn's own timer);

and per listener at most `max_connections` open connections. At the cap, a new connection closes the one
that has waited longest for a request head (a slow client, or an idle keep-alive one) instead of being
refused, so a client that is quick is served while slow ones hold sockets; only when every connection is
busy with a request is the new one answered 503 with Retry-After and closed. Every close is counted in
`tasktrail_http_connections_closed_total{listener, reason}`.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Optional

import h11
from prometheus_client import CollectorRegistry, Counter
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("tasktrail.connections")

Refusal = Callable[[int, str], tuple[str, bytes]]  # (status, message) -> (content type, body)


@dataclass(frozen=True)
class ConnectionLimits:
    """Per listener: `max_connections` open at once; seconds a client has for its request head
    (`header_timeout_s`) and body (`body_timeout_s`); seconds an idle keep-alive connection stays open;
    how many connections asyncio accepts per wake-up (`accept_batch`, uvicorn's `backlog`)."""
    max_connections: int = 1000
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    keep_alive_timeout_s: float = 5.0
    accept_batch: int = 64


def _raw_answer(status: int, reason: str, content_type: str, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
            f"{extra}connection: close\r\n\r\n").encode("latin-1") + body


def guarded_protocol(limits: ConnectionLimits, refusal: Refusal, listener: str,
                     closed: Optional[Counter] = None) -> type[H11Protocol]:
    """An H11Protocol subclass for one listener (pass it as uvicorn.Config(http=...)); `refusal` builds the
    body of its 408 / 503 answers in the listener's error shape; `closed` counts the connections it closes."""
    name = f"GuardedH11Protocol[{listener}]"
    protocol = type(name, (GuardedH11Protocol,), {"guard": _ListenerGuard(limits, refusal, listener, closed)})
    protocol.__qualname__ = name
    return protocol


class _ListenerGuard:
    """One listener's limits and its connections: those open, in the guard's own count (evicted ones leave
    at once), and those waiting for a request head, longest-waiting first (insertion order)."""

    def __init__(self, limits: ConnectionLimits, refusal: Refusal, listener: str, closed: Optional[Counter]) -> None:
        self.limits = limits
        self.refusal = refusal
        self.listener = listener
        self.closed = closed
        self.open: set = set()
        self.waiting: dict = {}

    def count(self, reason: str) -> None:
        if self.closed is not None:
            self.closed.labels(self.listener, reason).inc()

    def evict_one(self) -> bool:
        """Close the connection that has waited longest for a request head; False when none waits."""
        victim = next(iter(self.waiting), None)
        if victim is None:
            return False
        self.count("evicted")
        victim._close()
        return True


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol under its listener's guard (`guard`, set per listener by guarded_protocol)."""

    guard: "_ListenerGuard"
    _timer: Optional[asyncio.TimerHandle] = None
    _phase: str = ""           # "head", "body" or "" (the request is with the app, or idle keep-alive)
    _got_bytes: bool = False   # bytes of the current head arrived (a timeout then answers 408)

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        g = self.guard
        if len(g.open) >= g.limits.max_connections and not g.evict_one():
            g.count("refused")
            content_type, body = g.refusal(503, f"this listener holds its limit of {g.limits.max_connections} "
                                                "connections, all busy; try again shortly")
            transport.write(_raw_answer(503, "Service Unavailable", content_type, body, "retry-after: 1\r\n"))
            transport.close()
            return
        g.open.add(self)
        g.waiting[self] = None
        self._arm("head", g.limits.header_timeout_s)

    def _close(self) -> None:
        self.guard.open.discard(self)
        self.guard.waiting.pop(self, None)
        self._disarm()
        self.transport.close()

    def connection_lost(self, exc) -> None:
        self.guard.open.discard(self)
        self.guard.waiting.pop(self, None)
        self._disarm()
        super().connection_lost(exc)

    def _idle(self) -> bool:
        return self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE

    def data_received(self, data: bytes) -> None:
        if self not in self.guard.open:  # refused or evicted: its transport is closing
            return
        super().data_received(data)
        if self.transport.is_closing():
            self._disarm()
        elif self._idle():  # part of a head: the deadline runs from its first byte (or the connection)
            self._got_bytes = True
            if self._phase != "head":
                self._arm("head", self.guard.limits.header_timeout_s)
        else:
            self.guard.waiting.pop(self, None)
            self._follow_request()

    def _follow_request(self) -> None:
        if self.conn.their_state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.guard.limits.body_timeout_s)
        else:  # the whole request is in: the app has it
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timer; may start a pipelined request
        if self.transport.is_closing() or self not in self.guard.open:
            return
        self._disarm()
        self._got_bytes = False
        if self._idle():  # waiting again, from now: to the end of the line
            self.guard.waiting.pop(self, None)
            self.guard.waiting[self] = None
        else:
            self._follow_request()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._timer = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = ""

    def _expire(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        g = self.guard
        if self._phase == "body":
            if self.flow is not None and self.flow.read_paused:  # the server is not reading: not the client's fault
                self._arm("body", g.limits.body_timeout_s)
                return
            g.count("body_timeout")
            what = f"the request body did not arrive within {g.limits.body_timeout_s:g} s"
        else:
            g.count("header_timeout")
            what = f"the request head did not arrive within {g.limits.header_timeout_s:g} s"
        if self._got_bytes or self._phase == "body":
            content_type, body = g.refusal(408, what)
            self.transport.write(_raw_answer(408, "Request Timeout", content_type, body))
        log.debug("%s: closing %s: %s", g.listener, self.client, what)
        self._close()


def closed_counter(registry: CollectorRegistry) -> Counter:
    """The counter of connections the guards close, registered in `registry`."""
    return Counter("tasktrail_http_connections_closed", "HTTP connections closed by the server's limits, by "
                   "listener and reason (header_timeout, body_timeout, evicted, refused).",
                   ["listener", "reason"], registry=registry)


LISTEN_QUEUE = 2048  # connections the kernel holds for accept(): they cost the process no file
ACCEPT_BATCH = 64    # connections asyncio accepts per wake-up, each a file before the cap can close it


def fit_file_limit(listeners: int, max_connections: int, reserve: int = 256) -> tuple[int, int]:
    """Raise this process's soft file limit towards what `listeners` listeners need: each holds up to
    `max_connections` plus one accept batch (asyncio accepts a batch per wake-up before any connection
    of it can be closed), plus `reserve` for the store, workers and the rest. Never past the hard limit.
    Returns (connections per listener, accept batch) that fit; lower than asked only when the hard limit
    is too small (the caller warns)."""
    try:
        import resource
    except ImportError:  # not a Unix: no file limit to fit
        return max_connections, ACCEPT_BATCH
    need = listeners * (max_connections + ACCEPT_BATCH) + reserve
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= need:
        return max_connections, ACCEPT_BATCH
    per_listener = max(2, (soft - reserve) // max(1, listeners)) if soft > reserve + listeners else 2
    batch = max(1, min(ACCEPT_BATCH, per_listener // 4))
    return max(1, min(max_connections, per_listener - batch)), batch
