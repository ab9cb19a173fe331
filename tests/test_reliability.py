"""Faults and load: acknowledged means stored, whatever happens to the server, its disk or its readers."""
import os
import signal
import statistics
import subprocess
import threading
import time

import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from .helpers import start_server, wait_until
from .reliability import PB, numbered_request, stored_lines

SECTION = "Faults and load"


def _post(client, srv, i, records=50, pad=0):
    return client.post(srv.otlp_http + "/v1/logs", content=numbered_request(i, records, pad), headers=PB)


@pytest.mark.slow
def test_kill_9_mid_ingest_loses_nothing_acknowledged(tmp_path, record):
    """Four clients send without pause; the server is killed with SIGKILL mid-stream, three times.
    After each restart every acknowledged request is stored in full, nothing twice, nothing partial."""
    db = str(tmp_path / "tt.duckdb")
    acked: set[int] = set()
    sent: set[int] = set()
    rounds = 3
    for rnd in range(rounds):
        srv = start_server(db, "--ingest-token", "tok123")
        stop = threading.Event()
        lock = threading.Lock()

        def client(k, srv=srv, stop=stop, lock=lock, rnd=rnd):
            i = rnd * 1_000_000 + k
            with httpx.Client(timeout=10) as c:
                while not stop.is_set():
                    with lock:
                        sent.add(i)
                    try:
                        r = _post(c, srv, i)
                    except httpx.HTTPError:
                        return  # the server is gone
                    if r.status_code == 200:
                        with lock:
                            acked.add(i)
                    i += 4

        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= 20 * (rnd + 1), timeout=60, message="acknowledged requests")
        time.sleep(0.3 * rnd)
        srv.proc.kill()  # SIGKILL: no drain, no checkpoint
        srv.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        srv = start_server(db, "--ingest-token", "tok123")  # opens without repair, or this fails
        try:
            lines = stored_lines(srv)
        finally:
            srv.stop()
        missing = [i for i in acked if lines.get(i) != 50]
        assert not missing, f"acknowledged but not stored in full: {missing[:10]}"
        assert all(n == 50 for n in lines.values()), "a request stored partly or twice"
        assert set(lines) <= sent
    extra = len(lines) - len(acked)
    record(SECTION, "`kill -9` of the server during sustained ingest (4 HTTP clients, 50 records per request), "
                    "then restart", rounds,
           f"{len(acked)} requests acknowledged, all stored exactly once with all 50 records; {extra} more "
           f"committed but not yet acknowledged when killed, also whole; no request partly stored; the store "
           f"opened without repair every time")


@pytest.fixture
def small_disk(tmp_path):
    """A 48 MB tmpfs: a disk that can fill up (needs root, as CI and this machine have)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_disk_full_is_503_nothing_half_written_and_it_recovers(small_disk, record):
    db = str(small_disk / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123")
    filler = small_disk / "filler"
    try:
        st = os.statvfs(small_disk)
        filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - (6 << 20)))
        acked, refused, message = [], [], ""
        with httpx.Client(timeout=30) as c:
            for i in range(2000):
                r = _post(c, srv, i, records=100, pad=400)
                if r.status_code == 200:
                    acked.append(i)
                    continue
                assert r.status_code == 503, r.content
                assert r.headers.get("Retry-After")
                message = status_pb2.Status.FromString(r.content).message
                refused.append(i)
                if len(refused) >= 5:
                    break
            assert refused, "the disk never filled"
            assert "No space left on device" in message or "cannot write now" in message, message
            # Nothing half-written is served while the disk is full. Requests the journal acknowledged just
            # before the store's commit failed are not served yet: they wait in the journal for space (when
            # the store's first commit already met the full disk, that is all of them: the read answers none).
            lines = wait_until(lambda: (stored_lines(srv),), timeout=30, message="reads while the disk is full")[0]
            assert set(lines) <= set(acked) and all(n == 100 for n in lines.values())
            waiting = set(acked) - set(lines)
            filler.unlink()  # space returns
            # Everything acknowledged is applied from the journal once the store can write again.
            wait_until(lambda: set(stored_lines(srv)) >= set(acked), timeout=30, interval=0.5,
                       message="the journaled requests to be applied")
            for i in refused:  # what the clients retry is accepted once the store is reopened
                wait_until(lambda i=i: _post(c, srv, i, records=100, pad=400).status_code == 200, timeout=30,
                           interval=0.5, message="ingest to recover")
            more = [r.status_code for r in (_post(c, srv, 10_000 + k, records=100) for k in range(5))]
            assert more == [200] * 5
    finally:
        srv.stop()
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        lines = stored_lines(srv)
        assert set(lines) == set(acked) | set(refused) | {10_000 + k for k in range(5)}
        assert all(n == 100 for n in lines.values())
    finally:
        srv.stop()
    record(SECTION, "disk full (the store on a 48 MB tmpfs, filled), then space freed", 1,
           f"{len(acked)} requests acknowledged before the disk filled ({len(waiting)} of them held in the "
           f"journal until space returned, then applied); the next {len(refused)} answered 503 with "
           f"Retry-After and \"{message[:90]}…\"; nothing of them was served; after freeing space the "
           f"store reopened by itself and the clients' retries were stored once, also after a restart")


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_overload_is_refused_with_retry_after_and_sdk_retries_deliver_everything(tmp_path, record, protocol):
    """A queue of 300 records against four SDK exporters sending 512-record batches: refusals
    (429 / RESOURCE_EXHAUSTED with a retry delay), bounded memory, and in the end every record once."""
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--queue-records", "300")
    per_client, clients = 4000, 4
    try:
        providers = []
        for k in range(clients):
            if protocol == "http":
                exp = HttpLogExporter(endpoint=srv.otlp_http + "/v1/logs", headers={"authorization": "Bearer tok123"},
                                      timeout=60)
            else:
                exp = GrpcLogExporter(endpoint=srv.otlp_grpc, insecure=True, headers=(("authorization", "Bearer tok123"),),
                                      timeout=60)
            p = LoggerProvider(resource=Resource.create({"service.name": f"load-{k}"}))
            p.add_log_record_processor(BatchLogRecordProcessor(exp, max_queue_size=per_client,
                                                               max_export_batch_size=512, schedule_delay_millis=50))
            providers.append(p)

        def emit(k):
            logger = providers[k].get_logger("load")
            for j in range(per_client):
                logger.emit(body=f"req-{k}-{j}")

        rss0 = _rss_mb(srv.proc.pid)
        threads = [threading.Thread(target=emit, args=(k,)) for k in range(clients)]
        for t in threads:
            t.start()
        peak = rss0
        while any(t.is_alive() for t in threads):
            peak = max(peak, _rss_mb(srv.proc.pid))
            time.sleep(0.1)
        for p in providers:
            assert p.force_flush(120_000)
            peak = max(peak, _rss_mb(srv.proc.pid))
        lines = wait_until(lambda: (lambda d: d if sum(d.values()) >= clients * per_client else None)(
            stored_lines(srv)), timeout=60, message="every record")
        assert lines == {k: per_client for k in range(clients)}
        metrics = httpx.get(srv.web + "/metrics").text
        refused = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("tasktrail_ingest_rejected_requests_total") and 'reason="queue_full"' in line)
        assert refused > 0, "the queue never filled: the test proved nothing"
        assert peak < rss0 + 400, f"server memory grew from {rss0:.0f} to {peak:.0f} MB"
    finally:
        for p in providers:
            p.shutdown()
        srv.stop()
    record(SECTION, f"overload over OTLP/{protocol.upper()}: 4 OTel SDK exporters × {per_client} records against a "
                    "300-record queue", 1,
           f"{refused:.0f} requests refused with {'429 + Retry-After' if protocol == 'http' else 'RESOURCE_EXHAUSTED + RetryInfo'}; "
           f"the SDK's own retries delivered all {clients * per_client} records, each once; server RSS "
           f"{rss0:.0f} → peak {peak:.0f} MB")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_slow_readers_never_stall_ingest(tmp_path, record):
    """A query that runs to its time limit and an SSE client that never reads, while ingest goes on."""
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--sql-timeout", "6")
    try:
        with httpx.Client(timeout=30) as c:
            base = [time.perf_counter()]
            for i in range(10):  # latency with nobody reading
                _post(c, srv, i).raise_for_status()
            quiet = (time.perf_counter() - base[0]) / 10
            heavy = {}

            def big_query():
                heavy["r"] = httpx.post(srv.api + "/sql", timeout=60, json={
                    "sql": "select count(*) from range(1000000000000) a where hash(a.range) = 7"})

            q = threading.Thread(target=big_query)
            q.start()
            # An SSE client that connects and then never reads what it is sent.
            import socket
            host, port = srv.web.split("//")[1].split(":")
            stalled = socket.create_connection((host, int(port)))
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.sendall(f"GET /api/v1/logs/tail HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode())
            time.sleep(0.5)
            lat = []
            for i in range(10, 60):
                t = time.perf_counter()
                r = _post(c, srv, i, records=200)
                lat.append(time.perf_counter() - t)
                assert r.status_code == 200
            q.join()
            stalled.close()
        assert heavy["r"].status_code == 504 and "time limit" in heavy["r"].json()["error"]["message"]
        assert max(lat) < 3.0, f"an acknowledgement took {max(lat):.2f} s"
        lines = stored_lines(srv)
        assert len(lines) == 60 and all(n == (200 if i >= 10 else 50) for i, n in lines.items())
    finally:
        srv.stop(signal.SIGTERM)
    record(SECTION, "a query running to its 6 s time limit plus an SSE client that never reads, during ingest", 50,
           f"all 50 requests acknowledged and stored; ack p50 {statistics.median(lat) * 1000:.0f} ms, max "
           f"{max(lat) * 1000:.0f} ms (alone: {quiet * 1000:.0f} ms); the query answered 504 at its limit")
