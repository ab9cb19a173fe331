"""Slow clients cannot starve the server: request heads and bodies have deadlines, idle connections close,
each listener holds a bounded number of connections, and a quick client is served while slow ones hold
sockets — also when the process's file limit is small."""
import json
import re
import resource
import socket
import statistics
import threading
import time

import grpc
import httpx
import pytest

from .helpers import start_server, wait_until
from .reliability import PB, numbered_request

SECTION = "Security"
LOGS_EXPORT = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


@pytest.fixture(autouse=True)
def _room_for_sockets():
    """This test process holds ~1,000 sockets: lift its own soft file limit (the server's is its own)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(4096, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


class SlowClients:
    """`n` connections to each port that each send part of a request head and then a byte now and then
    (slowloris), reopening any the server closes, until stop(); counts what the server closed."""

    def __init__(self, ports: dict, n: int, head: bytes = b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: ") -> None:
        self.ports, self.n, self.head = ports, n, head
        self.socks: dict = {name: [] for name in ports}
        self.closed_by_server = {name: 0 for name in ports}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._trickle, daemon=True)

    def _open(self, name):
        s = socket.create_connection(("127.0.0.1", self.ports[name]), timeout=5)
        s.sendall(self.head if name != "grpc" else b"PRI * HTTP/2.0\r\n")  # gRPC: half a connection preface
        s.setblocking(False)
        return s

    def start(self) -> "SlowClients":
        for name in self.ports:
            for _ in range(self.n):
                self.socks[name].append(self._open(name))
        self.thread.start()
        return self

    def held(self) -> dict:
        return {name: len(s) for name, s in self.socks.items()}

    def _trickle(self):
        while not self.stopping.wait(0.5):
            for name, socks in self.socks.items():
                for i, s in enumerate(socks):
                    try:
                        if s.recv(4096) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        try:
                            s.send(b"x" if name != "grpc" else b"")
                            continue
                        except OSError:
                            pass
                    except OSError:
                        pass
                    self.closed_by_server[name] += 1
                    s.close()
                    try:
                        socks[i] = self._open(name)
                    except OSError:
                        socks[i] = socket.socket()  # counted closed again next round

    def stop(self):
        self.stopping.set()
        self.thread.join()
        for socks in self.socks.values():
            for s in socks:
                s.close()


def _quick_checks(srv, rounds: int) -> dict:
    """Time /healthz, an OTLP/HTTP export and an OTLP/gRPC export `rounds` times on new connections."""
    times = {"healthz": [], "otlp_http": [], "otlp_grpc": []}
    statuses = set()
    for i in range(rounds):
        t = time.perf_counter()
        r = httpx.get(srv.web + "/healthz", timeout=5)
        times["healthz"].append(time.perf_counter() - t)
        statuses.add(("healthz", r.status_code))
        t = time.perf_counter()
        r = httpx.post(srv.otlp_http + "/v1/logs", content=numbered_request(9000 + i, 5), headers=PB, timeout=5)
        times["otlp_http"].append(time.perf_counter() - t)
        statuses.add(("otlp_http", r.status_code))
        t = time.perf_counter()
        with grpc.insecure_channel(srv.otlp_grpc) as ch:
            ch.unary_unary(LOGS_EXPORT)(numbered_request(9500 + i, 5), timeout=5,
                                        metadata=(("authorization", "Bearer tok123"),))
        times["otlp_grpc"].append(time.perf_counter() - t)
        statuses.add(("otlp_grpc", 200))
        time.sleep(0.2)
    assert statuses == {("healthz", 200), ("otlp_http", 200), ("otlp_grpc", 200)}, statuses
    return times


def _closed_metric(srv) -> dict:
    text = httpx.get(srv.web + "/metrics", timeout=10).text
    return {(m[0], m[1]): float(m[2]) for m in re.findall(
        r'tasktrail_http_connections_closed_total\{listener="(\w+)",reason="(\w+)"\} (\S+)', text)}


@pytest.mark.slow
def test_200_slow_clients_per_port_do_not_starve_health_or_ingest(tmp_path, record):
    """200 slowloris connections on each of the web, OTLP/HTTP and gRPC ports, held (reopened when closed)
    for several seconds: /healthz and exports over both OTLP transports still answer in under a second.
    Then with the server's file limit at 512 (the cap fits itself to it, ~70 per listener) and 200 on each
    HTTP port: the slow ones are evicted to make room, the quick clients are served."""
    results = []
    for label, n, limit in (("default limits", 200, None), ("ulimit -n 512", 200, 512)):
        pre = (lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))) if limit else None
        srv = start_server(str(tmp_path / f"tt-{n}.duckdb"), "--ingest-token", "tok123", "--header-timeout", "3",
                           "--log-level", "warning", preexec_fn=pre)
        try:
            ports = {"web": _port(srv.web), "otlp_http": _port(srv.otlp_http)}
            if not limit:  # gRPC's own quota refuses new connections at its cap rather than evicting slow ones
                ports["grpc"] = _port(srv.otlp_grpc)
            _quick_checks(srv, 1)  # warm: the first export starts the decode workers
            slow = SlowClients(ports, n).start()
            try:
                time.sleep(1)
                times = _quick_checks(srv, 8)
                held = slow.held()
            finally:
                slow.stop()
            worst = {k: max(v) for k, v in times.items()}
            assert all(w < 1.0 for w in worst.values()), (label, times)
            assert held == {name: n for name in ports}, held
            closed = _closed_metric(srv)
            if limit:
                assert any("file limit" in line for line in srv.output), srv.output
                assert closed.get(("web", "evicted"), 0) > 0 and closed.get(("otlp_http", "evicted"), 0) > 0, closed
            else:  # trickling did not extend the 3 s deadline
                assert closed.get(("web", "header_timeout"), 0) >= n and closed.get(("otlp_http", "header_timeout"), 0) >= n, closed
            results.append((label, n, worst, sum(slow.closed_by_server.values()),
                            statistics.median(times["healthz"]) * 1000))
        finally:
            srv.stop()
    record(SECTION, "slowloris: 200 connections per port (web, OTLP/HTTP, gRPC) trickling a request head, "
                    "reopened when closed; again with the server's file limit at 512 and 200 per HTTP port",
           len(results),
           "; ".join(f"{label}: /healthz, OTLP/HTTP and gRPC exports answered 200 in under a second (worst "
                     f"{max(w.values()) * 1000:.0f} ms, /healthz median {med:.0f} ms); the server closed {c} slow "
                     f"connections (3 s head deadline, or evicted at the cap)" for label, n, w, c, med in results))


def _read_all(s: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and the seconds that took."""
    s.settimeout(timeout)
    t, out = time.monotonic(), b""
    while True:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        out += chunk
    return out, time.monotonic() - t


def _read_response(s: socket.socket, timeout: float = 5) -> bytes:
    """One whole HTTP response (headers and its Content-Length body), leaving the connection open."""
    s.settimeout(timeout)
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += s.recv(65536)
    head, body = raw.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


def _json_body(raw: bytes) -> dict:
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def test_heads_bodies_and_idle_connections_have_deadlines(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--header-timeout", "1",
                       "--body-timeout", "2", "--keep-alive-timeout", "1")
    try:
        web, otlp = _port(srv.web), _port(srv.otlp_http)
        seen = {}
        # Silent: closed at the head deadline, no answer.
        s = socket.create_connection(("127.0.0.1", web))
        raw, took = _read_all(s, 10)
        assert raw == b"" and 0.8 < took < 3, (raw, took)
        seen["silent"] = took
        # Half a head: 408 in the one error shape, then closed.
        s = socket.create_connection(("127.0.0.1", web))
        s.sendall(b"GET /api/v1/apps HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        raw, took = _read_all(s, 10)
        assert raw.startswith(b"HTTP/1.1 408") and 0.8 < took < 3, (raw, took)
        assert _json_body(raw)["error"] == {"status": 408, "message": "the request head did not arrive within 1 s"}
        seen["half head"] = took
        # A trickle (a byte every 0.2 s) does not extend the deadline.
        s = socket.create_connection(("127.0.0.1", otlp))
        t = time.monotonic()
        try:
            for _ in range(50):
                s.sendall(b"P")
                time.sleep(0.2)
        except OSError:
            pass
        seen["trickle"] = time.monotonic() - t
        assert seen["trickle"] < 3, seen
        # OTLP/HTTP answers 408 as a google.rpc.Status.
        s = socket.create_connection(("127.0.0.1", otlp))
        s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        raw, took = _read_all(s, 10)
        assert raw.startswith(b"HTTP/1.1 408") and "did not arrive" in _json_body(raw)["message"], raw
        # A body that stops coming: 408 at the body deadline.
        s = socket.create_connection(("127.0.0.1", otlp))
        s.sendall(b"POST /v1/logs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-protobuf\r\n"
                  b"Authorization: Bearer tok123\r\nContent-Length: 1000\r\n\r\n" + b"\x0a" * 10)
        raw, took = _read_all(s, 10)
        assert b" 408 " in raw.split(b"\r\n", 1)[0] and 1.5 < took < 4, (raw, took)
        seen["stalled body"] = took
        # An idle keep-alive connection closes after --keep-alive-timeout.
        s = socket.create_connection(("127.0.0.1", web))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = _read_response(s)
        assert first.startswith(b"HTTP/1.1 200"), first
        raw, took = _read_all(s, 10)
        assert raw == b"" and 0.8 < took < 3, (raw, took)
        seen["idle keep-alive"] = took
        # A client that is slow but within the limits is served: a head in 4 pieces over 0.6 s, then a
        # second request on the same connection after 0.5 s idle.
        s = socket.create_connection(("127.0.0.1", web))
        for piece in (b"GET /healthz HT", b"TP/1.1\r\nHo", b"st: 127.0.0.1\r\n", b"\r\n"):
            s.sendall(piece)
            time.sleep(0.2)
        assert _read_response(s).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert _read_response(s).startswith(b"HTTP/1.1 200")
        s.close()
        closed = _closed_metric(srv)
        assert closed[("web", "header_timeout")] >= 2 and closed[("otlp_http", "header_timeout")] >= 2, closed
        assert closed[("otlp_http", "body_timeout")] == 1, closed
    finally:
        srv.stop()
    record(SECTION, "a silent connection, half a request head, a head trickled a byte every 0.2 s, a body that "
                    "stops, an idle keep-alive connection (--header-timeout 1, --body-timeout 2, "
                    "--keep-alive-timeout 1), and a slow client within the limits", 6,
           "closed after " + ", ".join(f"{k} {v:.1f} s" for k, v in seen.items()) + "; 408 in the listener's "
           "error shape when part of a request had arrived; the slow client within the limits served twice; "
           "tasktrail_http_connections_closed_total counts each by reason")


def test_connection_cap_evicts_the_slowest_and_refuses_when_all_are_busy(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--max-connections", "20")
    try:
        web = _port(srv.web)
        slow = [socket.create_connection(("127.0.0.1", web)) for _ in range(60)]
        for s in slow:
            s.sendall(b"GET / HTTP/1.1\r\n")
        t = time.perf_counter()
        assert httpx.get(srv.web + "/healthz", timeout=5).status_code == 200
        took = time.perf_counter() - t
        # Only the 20 newest slow ones can still be open; the first 40 were closed to make room.
        def gone(s):
            s.settimeout(0.5)
            try:
                return s.recv(1) == b""
            except socket.timeout:
                return False
            except OSError:
                return True
        assert wait_until(lambda: sum(gone(s) for s in slow[:40]) == 40, timeout=10, message="evictions")
        for s in slow:
            s.close()
        # 20 requests whose bodies are still arriving are busy, not evictable: the 21st connection gets 503.
        busy = []
        for _ in range(20):
            s = socket.create_connection(("127.0.0.1", web))
            s.sendall(b"POST /api/v1/sql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      b"Content-Length: 100\r\n\r\n{")
            busy.append(s)
        time.sleep(0.5)
        extra = socket.create_connection(("127.0.0.1", web))
        raw, _ = _read_all(extra, 5)
        assert raw.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in raw.lower(), raw
        message = _json_body(raw)["error"]["message"]
        assert "limit of 20 connections" in message, message
        for s in busy:
            s.close()
        wait_until(lambda: httpx.get(srv.web + "/healthz", timeout=5).status_code == 200, message="served again")
        closed = _closed_metric(srv)
        assert closed[("web", "evicted")] >= 40 and closed[("web", "refused")] >= 1, closed
    finally:
        srv.stop()
    record(SECTION, "--max-connections 20 on the web port: 60 connections with half a head, then 20 requests "
                    "with unfinished bodies", 2,
           f"the 40 that waited longest were closed to make room and /healthz answered in {took * 1000:.0f} ms; "
           "with all 20 busy the 21st connection got 503 + Retry-After in the one error shape; served again "
           "once they ended")
