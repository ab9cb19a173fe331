import hashlib
"""Timestamps in the wrong unit are refused record by record (OTLP partial success), the rest of the
request is kept; and what was acknowledged is never removed by the next retention pass, whatever
time it carries."""
import os
import time

import duckdb
import grpc
import httpx
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from prometheus_client.parser import text_string_to_metric_families

from .delivery import GRPC_MD, JS, PB, kv, line, logs_request, otlp_json, sql, status, stored, uid
from .helpers import start_server, wait_until

SECTION = "Bad input"


def _rejected_records(srv) -> dict:
    """{(signal, transport, reason): count} of tasktrail_ingest_rejected_records_total."""
    fams = text_string_to_metric_families(httpx.get(srv.web + "/metrics").text)
    return {(s.labels["signal"], s.labels["transport"], s.labels["reason"]): s.value
            for f in fams if f.name == "tasktrail_ingest_rejected_records"
            for s in f.samples if s.name.endswith("_total")}


def test_timestamps_in_wrong_units_are_refused_one_by_one(server, record):
    now = time.time_ns()
    good, later = uid("good"), uid("later")
    wrong = {"ms": uid("in-ms"), "s": uid("in-s"), "us": uid("in-us"), "ahead": uid("ahead")}
    req = logs_request(
        status(good, "RUNNING", now),
        status(wrong["ms"], "RUNNING", now // 10**6),
        status(wrong["s"], "RUNNING", now // 10**9),
        status(later, "SUCCESS", now + 10**9),
        status(wrong["us"], "RUNNING", now // 10**3),
        status(wrong["ahead"], "RUNNING", now + 40 * 86_400 * 10**9),
        line("a line in ms", now // 10**6))
    r = httpx.post(server.otlp_http + "/v1/logs", content=req.SerializeToString(), headers=PB)
    assert r.status_code == 200, r.content
    ps = logs_service_pb2.ExportLogsServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_log_records == 5
    msg = ps.error_message
    assert (f"resource_logs[0].scope_logs[0].log_records[1] (event 'tasktrail.status', invocation '{wrong['ms']}'): "
            f"time_unix_nano {now // 10**6} is 1970-01-") in msg
    assert "before 2000-01-01; looks like milliseconds:" in msg
    assert "looks like seconds:" in msg and "looks like microseconds:" in msg
    assert f"log_records[5] (event 'tasktrail.status', invocation '{wrong['ahead']}')" in msg
    assert "40 days ahead of the server's clock" in msg
    assert "log_records[6]: time_unix_nano" in msg
    # The good records of the same request are stored; none of the refused ones, nothing in 1970.
    assert stored(server, good)["status"] == "RUNNING" and stored(server, later)["status"] == "SUCCESS"
    assert all(stored(server, inv) is None for inv in wrong.values())
    assert sql(server, "select (select count(*) from transitions where ts < '2000-01-01') + "
                       "(select count(*) from log_records where ts < '2000-01-01')") == [[0]]

    # OTLP/JSON spans: one in milliseconds among good ones; the answer uses the JSON names.
    trace_id, now = os.urandom(16), time.time_ns()
    spans = [trace_pb2.Span(trace_id=trace_id, span_id=os.urandom(8), name=name, start_time_unix_nano=t0,
                            end_time_unix_nano=t0 + dt) for name, t0, dt in
             (("good-span", now - 10**9, 10**9), ("ms-span", now // 10**6 - 5000, 1250), ("ok-too", now, 1))]
    doc = otlp_json(trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource={"attributes": [kv("service.name", "delivery")]}, scope_spans=[trace_pb2.ScopeSpans(spans=spans)])]))
    r = httpx.post(server.otlp_http + "/v1/traces", content=doc, headers=JS)
    assert r.status_code == 200
    ps = r.json()["partialSuccess"]
    assert int(ps["rejectedSpans"]) == 1
    assert "scope_spans[0].spans[1] (span 'ms-span'): start_time_unix_nano" in ps["errorMessage"]
    names = [s["name"] for s in server.get(f"/traces/{trace_id.hex()}").json()["resourceSpans"][0]["scopeSpans"][0]
             ["spans"]]
    assert sorted(names) == ["good-span", "ok-too"]

    # gRPC: metrics with a data point in seconds, and logs; status OK with partial_success.
    now = time.time_ns()
    points = [metrics_pb2.NumberDataPoint(time_unix_nano=t, as_int=v) for t, v in ((now, 1), (now // 10**9, 2))]
    mreq = metrics_service_pb2.ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
        scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metrics_pb2.Metric(
            name="queue.depth", gauge=metrics_pb2.Gauge(data_points=points))])])])
    inv = uid("grpc-ms")
    with grpc.insecure_channel(server.otlp_grpc) as ch:
        stub = ch.unary_unary("/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=metrics_service_pb2.ExportMetricsServiceResponse.FromString)
        ps = stub(mreq, metadata=GRPC_MD, timeout=10).partial_success
        assert ps.rejected_data_points == 1
        assert "metrics[0].gauge.data_points[1] (metric 'queue.depth')" in ps.error_message
        assert "looks like seconds" in ps.error_message
        logs = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                              request_serializer=lambda m: m.SerializeToString(),
                              response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString)
        ps = logs(logs_request(status(inv, "PENDING", now // 10**6), status(good, "SUCCESS", now)),
                  metadata=GRPC_MD, timeout=10).partial_success
        assert ps.rejected_log_records == 1 and f"invocation '{inv}'" in ps.error_message
    assert sql(server, "select count(*) from metric_points where name = 'queue.depth'") == [[1]]
    assert stored(server, inv) is None and stored(server, good)["status"] == "SUCCESS"

    assert _rejected_records(server) == {("logs", "http", "timestamp"): 5, ("traces", "http", "timestamp"): 1,
                                         ("metrics", "grpc", "timestamp"): 1, ("logs", "grpc", "timestamp"): 1}
    record(SECTION, "timestamps in ms, s and µs and 40 days ahead among good records (logs and spans over HTTP, "
                    "protobuf and OTLP/JSON; metrics and logs over gRPC)", 4,
           "200 / OK with partial_success: the 8 records refused one by one, each named (path, event or span, "
           "invocation) with the likely unit (\"looks like milliseconds: 1.78e12 would be 2026-… in ms\"); "
           "every good record stored, nothing in 1970; tasktrail_ingest_rejected_records_total counts them")


def test_restart_keeps_acknowledged_records_with_old_times(tmp_path, record):
    """Retention runs at every start. A record with an old but plausible time (2003) acknowledged
    today stays; one with the same time acknowledged before the window goes."""
    db = str(tmp_path / "tt.duckdb")
    args = ("--ingest-token", "tok123", "--retention-days", "1", "--keep-failed-days", "1")
    t2003 = 1_057_000_000 * 10**9
    early, today = uid("acked-long-ago"), uid("acked-today")
    srv = start_server(db, *args)
    try:
        hashes = {}
        for inv in (early, today):
            req = logs_request(status(inv, "RUNNING", t2003), status(inv, "SUCCESS", t2003 + 2 * 10**9),
                               line(f"{inv} working", t2003 + 10**9, **{"tasktrail.invocation.id": inv}))
            body = req.SerializeToString()
            r = httpx.post(srv.otlp_http + "/v1/logs", content=body, headers=PB)
            assert r.status_code == 200 and not r.content   # nothing refused: 2003 is a plausible time
            hashes[inv] = hashlib.blake2b(body, digest_size=16, person=b"logs").hexdigest()   # the ledger's key
            # A read waits for the commit of what was acknowledged before it: each request its own commit.
            assert stored(srv, inv)["created_at"].startswith("2003-")
    finally:
        srv.stop()
    # As if `early` had been received 10 days ago.
    con = duckdb.connect(db)
    aged = con.execute("UPDATE ingest_ledger SET received_at = received_at - INTERVAL 10 DAY "
                       "WHERE request_hash = ?", [hashes[early]]).fetchall()
    assert aged == [(1,)]
    con.close()
    for restart in range(2):
        srv = start_server(db, *args)
        try:
            # One pass, one transaction: once `early` is gone the pass is over, and `today` is still there.
            wait_until(lambda: stored(srv, early) is None, timeout=30, message="the retention pass at start")
            inv = stored(srv, today)
            assert inv["status"] == "SUCCESS" and inv["created_at"].startswith("2003-")
            assert sql(srv, f"select count(*) from log_records where invocation_id = '{today}'") == [[1]]
            assert sql(srv, f"select count(*) from log_records where invocation_id = '{early}'") == [[0]]
        finally:
            srv.stop()
    record(SECTION, "restart with --retention-days 1 after storing records timestamped 2003", 2,
           "acknowledged today: kept, with its log line, at every start (retention counts from arrival too); "
           "the same records received 10 days earlier: removed")
