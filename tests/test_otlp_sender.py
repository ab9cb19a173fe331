"""The emitter's own OTLP sender (proto/otlp_sender.py): what it encodes is what the generated
opentelemetry-proto classes read back; it retries what OTLP calls retryable and loses nothing while it
does; it drops (and counts) only past its bound, never blocking the caller; a refusal is counted, not
retried forever; a forked child sends its own records; the SDK path stays for a provider of your own."""
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from tasktrail.proto.emitter import Emitter, Runner
from tasktrail.proto.otlp_sender import LogSender, encode

from .helpers import sql, wait_until


def _record(i, scope="tasktrail", **attrs):
    return (1_796_000_000_000_000_000 + i, "tasktrail.status", "tasktrail.status", 9, "INFO",
            {"i": i, **attrs}, scope)


def test_encode_reads_back_with_the_generated_classes():
    records = [_record(0, s="text", b=True, f=1.5, n=-7, ids=["a", "b"], raw=b"\x00\x01"),
               _record(1, scope="my.logger"), _record(2)]
    req = logs_service_pb2.ExportLogsServiceRequest.FromString(encode({"service.namespace": "shop", "pid": 4}, records))
    (rl,) = req.resource_logs
    assert {kv.key: kv.value.WhichOneof("value") for kv in rl.resource.attributes} == \
        {"service.namespace": "string_value", "pid": "int_value"}
    by_scope = {sl.scope.name: list(sl.log_records) for sl in rl.scope_logs}
    assert [lr.attributes[0].value.int_value for lr in by_scope["tasktrail"]] == [0, 2]
    assert [lr.attributes[0].value.int_value for lr in by_scope["my.logger"]] == [1]
    first = by_scope["tasktrail"][0]
    assert first.time_unix_nano == records[0][0] and first.event_name == "tasktrail.status"
    assert first.body.string_value == "tasktrail.status" and first.severity_number == 9
    values = {kv.key: kv.value for kv in first.attributes}
    assert values["s"].string_value == "text" and values["b"].bool_value is True
    assert values["f"].double_value == 1.5 and values["n"].int_value == -7
    assert [v.string_value for v in values["ids"].array_value.values] == ["a", "b"]
    assert values["raw"].bytes_value == b"\x00\x01"


class _Receiver:
    """An OTLP/HTTP logs receiver on port 0 that answers `fail_first` requests with `status`, then 200,
    counting the records of the requests it took; `hold` blocks every answer until set."""

    def __init__(self, fail_first=0, status=503):
        self.taken, self.requests, self.fail_first, self.status = [], 0, fail_first, status
        self.hold = threading.Event()
        self.hold.set()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.hold.wait(30)
                outer.requests += 1
                if outer.requests <= outer.fail_first:
                    self.send_response(outer.status)
                    self.end_headers()
                    return
                req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
                outer.taken += [kv.value.int_value for rl in req.resource_logs for sl in rl.scope_logs
                                for lr in sl.log_records for kv in lr.attributes if kv.key == "i"]
                out = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.hold.set()
        self.httpd.shutdown()


def test_retryable_answers_are_retried_and_nothing_is_lost():
    rx = _Receiver(fail_first=3, status=503)
    try:
        sender = LogSender(rx.url, {"service.namespace": "shop"}, protocol="http/protobuf", interval_ms=20)
        for i in range(1500):
            assert sender.add(_record(i))
        assert sender.flush(30_000)
        assert sorted(rx.taken) == list(range(1500))       # every record once, after three 503s
        assert sender.stats.retries == 3 and sender.stats.sent == 1500 and sender.stats.dropped == 0
        sender.shutdown()
    finally:
        rx.close()


def test_a_full_queue_drops_and_counts_without_blocking_the_caller():
    rx = _Receiver()
    rx.hold.clear()  # the receiver hangs: the sender thread waits on its first request
    try:
        sender = LogSender(rx.url, {}, protocol="http/protobuf", max_queue_size=100, interval_ms=10)
        sender.add(_record(-1))
        wait_until(lambda: sender._inflight, message="the first request in flight")
        t = time.perf_counter()
        kept = sum(sender.add(_record(i)) for i in range(1000))
        assert time.perf_counter() - t < 0.5                 # never blocks, whatever the receiver does
        assert kept == 100 and sender.stats.dropped == 900 and sender.full()
        rx.hold.set()
        assert sender.flush(30_000)
        assert sorted(rx.taken) == [-1, *range(100)]         # what was kept arrives, once
        sender.shutdown()
    finally:
        rx.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_refusal_is_counted_not_retried_forever(server, protocol):
    endpoint = f"http://{server.otlp_grpc}" if protocol == "grpc" else server.otlp_http
    em = Emitter(endpoint, "shop", protocol=protocol, token="wrong-token")
    for i in range(10):
        em.status(f"inv-{i}", "REGISTERED", task_id="shop.pay")
    assert em.flush(10_000)
    assert em.stats.refused == 10 and em.stats.sent == 0
    assert "UNAUTHENTICATED" in em.stats.last_error or "401" in em.stats.last_error
    em.shutdown()


def test_a_forked_child_sends_its_own_records(server):
    app = f"fork-{uuid.uuid4().hex[:6]}"
    em = Emitter(f"http://{server.otlp_grpc}", app, Runner("parent-runner"), token="tok123")
    em.status("inv-parent", "REGISTERED", task_id="t.parent")
    assert em.flush()
    pid = os.fork()
    if pid == 0:  # the child: a fresh queue and thread of its own
        code = 1
        try:
            em.status("inv-child", "REGISTERED", task_id="t.child")
            code = 0 if em.flush(10_000) and em.stats.sent >= 1 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    em.status("inv-parent-2", "REGISTERED", task_id="t.parent")
    assert em.flush()
    query = f"SELECT invocation_id FROM invocations WHERE app_id = '{app}' ORDER BY 1"
    rows = wait_until(lambda: len(r := sql(server, query)) == 3 and r, message="three invocations")
    assert [r[0] for r in rows] == ["inv-child", "inv-parent", "inv-parent-2"]
    em.shutdown()


def test_a_provider_of_your_own_is_used_as_given(server):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.namespace": "own-provider",
                                                        "telemetry.mapping.revision": "tasktrail.v1"}))
    provider.add_log_record_processor(BatchLogRecordProcessor(OTLPLogExporter(
        endpoint=server.otlp_http + "/v1/logs", headers={"authorization": "Bearer tok123"})))
    em = Emitter("unused", "ignored", logger_provider=provider)
    em.status("inv-own", "REGISTERED", task_id="own.task")
    em.status("inv-own", "SUCCESS", result=1)
    assert em.flush() and em.stats is None and not em.queue_full()
    detail = wait_until(lambda: (r := server.get("/invocations/inv-own")).status_code == 200 and r.json(),
                        message="the invocation sent through the provider")
    assert detail["app_id"] == "own-provider" and detail["status"] == "SUCCESS"
    provider.shutdown()


def test_large_records_are_split_under_the_request_size_cap():
    from tasktrail.proto.otlp_sender import MAX_REQUEST_BYTES
    rx = _Receiver()
    sizes = []
    try:
        sender = LogSender(rx.url, {}, protocol="http/protobuf", interval_ms=10)
        real_send = sender._transport.send
        sender._transport.send = lambda body: (sizes.append(len(body)), real_send(body))[1]
        for i in range(12):
            sender.add(_record(i, blob="x" * (1024 * 1024)))   # 12 MiB in all
        assert sender.flush(30_000)
        assert sorted(rx.taken) == list(range(12)) and len(sizes) >= 4
        assert max(sizes) <= MAX_REQUEST_BYTES
        sender.shutdown()
    finally:
        rx.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_backpressure_is_waited_out_and_every_record_arrives_once(tmp_path, protocol):
    """A 300-record server queue against three emitters of 3000 records each: the server refuses with
    429 / RESOURCE_EXHAUSTED + RetryInfo, the sender waits as told, and every record is stored once."""
    import httpx

    from .helpers import start_server
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--queue-records", "300")
    try:
        endpoint = f"http://{srv.otlp_grpc}" if protocol == "grpc" else srv.otlp_http
        emitters = [Emitter(endpoint, f"bp-{k}", protocol=protocol, token="tok123") for k in range(3)]

        def send(em):
            for j in range(3000):
                em.log(f"line {j}")

        threads = [threading.Thread(target=send, args=(em,)) for em in emitters]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for em in emitters:
            assert em.flush(120_000)
            assert em.stats.dropped == 0 and em.stats.refused == 0 and em.stats.sent == 3000
        counts = wait_until(lambda: (r := dict(sql(srv, "SELECT app_id, count(*) FROM logs GROUP BY 1")))
                            and sum(r.values()) >= 9000 and r, timeout=60, message="every line")
        assert counts == {f"bp-{k}": 3000 for k in range(3)}
        metrics = httpx.get(srv.web + "/metrics").text
        refused = sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                      if line.startswith("tasktrail_ingest_rejected_requests_total") and 'reason="queue_full"' in line)
        assert refused > 0 and sum(em.stats.retries for em in emitters) > 0, "the queue never filled"
        for em in emitters:
            em.shutdown()
    finally:
        srv.stop()
