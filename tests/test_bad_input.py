"""Bad input gets a clear error and changes nothing stored; odd but valid input is stored as sent.
(Records refused one by one, and strings repaired, while the rest is stored: test_delivery_*.py.)"""
import gzip
import json
import os
import time

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from .helpers import fixture_requests, start_server
from .reliability import PB

JS = {**PB, "Content-Type": "application/json"}
SECTION = "Bad input"
NOW_NS = time.time_ns()


def _logs(*records, resource_attrs=()):
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": list(resource_attrs)},
        scope_logs=[logs_pb2.ScopeLogs(log_records=list(records))])]).SerializeToString()


def _span(**kw):
    base = dict(trace_id=os.urandom(16), span_id=os.urandom(8), name="s", start_time_unix_nano=NOW_NS - 10**9,
                end_time_unix_nano=NOW_NS)
    base.update(kw)
    return trace_service_pb2.ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        scope_spans=[trace_pb2.ScopeSpans(spans=[trace_pb2.Span(**base)])])]).SerializeToString()


def _deep_bytes(depth):
    """A log record whose body nests `depth` arrays, serialized by hand: the protobuf library itself
    refuses to build (parse) what is this deep."""
    inner = common_pb2.AnyValue(string_value="deep").SerializeToString()
    for _ in range(depth):
        arr = b"\x0a" + _varint(len(inner)) + inner             # ArrayValue.values (field 1)
        inner = b"\x2a" + _varint(len(arr)) + arr               # AnyValue.array_value (field 5)
    rec = b"\x2a" + _varint(len(inner)) + inner                 # LogRecord.body (field 5)
    scope = b"\x12" + _varint(len(rec)) + rec                   # ScopeLogs.log_records (field 2)
    res = b"\x12" + _varint(len(scope)) + scope                 # ResourceLogs.scope_logs (field 2)
    return b"\x0a" + _varint(len(res)) + res                    # request.resource_logs (field 1)


def _json_nested(depth):
    v = {"stringValue": "deep"}
    for _ in range(depth):
        v = {"arrayValue": {"values": [v]}}
    return v


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


TRACES_BODY = next(b for s, b in fixture_requests() if s == "traces")

CASES = [
    # (what, signal, body, headers, status, needle)
    ("truncated protobuf (a real request cut in half)", "traces", TRACES_BODY[: len(TRACES_BODY) // 2], PB, 400,
     "not a valid protobuf"),
    ("garbage bytes", "logs", b"\xff\xfe\x00 not protobuf at all" * 10, PB, 400, "not a valid protobuf"),
    ("wrong-type protobuf (a trace request sent to /v1/logs)", "logs", TRACES_BODY, PB, 400, "not a valid protobuf"),
    ("invalid OTLP/JSON (a timestamp that is not a number)", "logs",
     json.dumps({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}).encode(), JS, 400,
     "not a valid OTLP/JSON"),
    ("wrong content type (text/plain)", "logs", b"hello", {**PB, "Content-Type": "text/plain"}, 415,
     "unsupported Content-Type"),
    ("10,000 attributes on one record", "logs",
     _logs(logs_pb2.LogRecord(time_unix_nano=NOW_NS, attributes=[
         common_pb2.KeyValue(key=f"k{i}", value=common_pb2.AnyValue(int_value=i)) for i in range(10_000)])),
     PB, 400, "10000 attributes; the limit is 1000"),
    ("AnyValue nested 100 levels deep (protobuf)", "logs", _deep_bytes(100), PB, 400, "nest deeper"),
    ("AnyValue nested 100 levels deep (OTLP/JSON)", "logs", json.dumps({"resourceLogs": [{"scopeLogs": [
        {"logRecords": [{"body": _json_nested(100)}]}]}]}).encode(), JS, 400, "nests too deeply"),
    ("span trace_id of 5 bytes (protobuf)", "traces", _span(trace_id=b"12345"), PB, 400,
     "trace_id must be 16 bytes, got 5"),
    ("span_id of 3 bytes on a log record (protobuf)", "logs",
     _logs(logs_pb2.LogRecord(time_unix_nano=NOW_NS, trace_id=os.urandom(16), span_id=b"abc")), PB, 400,
     "span_id must be 8 bytes, got 3"),
    ("traceId of 3 hex characters (OTLP/JSON)", "traces", json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
        {"traceId": "abc", "spanId": "EEE19B7EC3C1B174"}]}]}]}).encode(), JS, 400, "traceId must be 32 hex"),
    ("span with start time 0", "traces", _span(start_time_unix_nano=0), PB, 400, "start_time_unix_nano is 0"),
]


def _count(srv):
    q = ("select (select count(*) from ingest_ledger) + (select count(*) from log_records) + "
         "(select count(*) from spans) + (select count(*) from transitions) + (select count(*) from resources)")
    return httpx.post(srv.api + "/sql", json={"sql": q}).json()["rows"][0][0]


@pytest.mark.parametrize("what, signal, body, headers, status, needle", CASES, ids=[c[0] for c in CASES])
def test_refused_with_a_clear_error_and_nothing_stored(server, record, what, signal, body, headers, status, needle):
    before = _count(server)
    r = httpx.post(f"{server.otlp_http}/v1/{signal}", content=body, headers=headers)
    assert r.status_code == status, r.content[:300]
    msg = (r.json()["message"] if r.headers["content-type"].startswith("application/json")
           else status_pb2.Status.FromString(r.content).message)
    assert needle in msg, msg
    assert _count(server) == before
    record(SECTION, what, 1, f"{status}: \"{msg[:110]}\"; nothing stored")


def test_size_limits_and_gzip_bomb(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--max-body-bytes", "1000000")
    try:
        cases = [("body past --max-body-bytes (2 MB against 1 MB)", os.urandom(2_000_000), {}),
                 ("body past the limit, chunked (no Content-Length)", iter([os.urandom(600_000)] * 2), {}),
                 ("gzip bomb: 100 KB on the wire, 100 MB inflated", gzip.compress(b"\0" * 100_000_000),
                  {"Content-Encoding": "gzip"})]
        for what, body, extra in cases:
            r = httpx.post(srv.otlp_http + "/v1/logs", content=body, headers={**PB, **extra}, timeout=60)
            assert r.status_code == 413
            msg = status_pb2.Status.FromString(r.content).message
            assert "limit" in msg
            record(SECTION, what, 1, f"413: \"{msg}\"; nothing stored")
        assert _count(srv) == 0
    finally:
        srv.stop()


def test_grpc_bad_input(server, record):
    with grpc.insecure_channel(server.otlp_grpc) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
        for what, body, needle in [("garbage over gRPC", b"\xff\xff garbage", "not a valid protobuf"),
                                   ("wrong-type protobuf over gRPC", TRACES_BODY, "not a valid protobuf"),
                                   ("10,000 attributes over gRPC", CASES[5][2], "the limit is 1000")]:
            with pytest.raises(grpc.RpcError) as err:
                export(body, metadata=(("authorization", "Bearer tok123"),), timeout=10)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and needle in err.value.details()
            record(SECTION, what, 1, f"INVALID_ARGUMENT: \"{err.value.details()[:110]}\"; nothing stored")
    assert _count(server) == 0


def test_odd_but_valid_input_is_stored_as_sent(server, record):
    """Timestamps of 0 mean "unknown" (OTLP): the arrival time stands in. Unknown enum values are kept,
    as OTLP's forward compatibility asks."""
    t0 = time.time()
    body = _logs(logs_pb2.LogRecord(time_unix_nano=0, observed_time_unix_nano=0, severity_number=999,
                                    body=common_pb2.AnyValue(string_value="time zero, severity 999")))
    assert httpx.post(server.otlp_http + "/v1/logs", content=body, headers=PB).status_code == 200
    spans = _span(kind=42, status=trace_pb2.Status(code=9, message="a future status code"))
    assert httpx.post(server.otlp_http + "/v1/traces", content=spans, headers=PB).status_code == 200
    rows = httpx.post(server.api + "/sql", json={"sql": "select epoch(ts), severity_number from log_records"}).json()
    (ts, sev), = rows["rows"]
    assert abs(ts - t0) < 60 and sev == 999
    (kind, code), = httpx.post(server.api + "/sql", json={"sql": "select kind, status_code from spans"}).json()["rows"]
    assert (kind, code) == (42, 9)
    record(SECTION, "log record with time and observed time 0", 1, "200: stored, timestamped with its arrival time "
                                                                    "(OTLP: 0 means unknown)")
    record(SECTION, "unknown enum values (severity 999, span kind 42, status code 9)", 1,
           "200: stored as sent (OTLP enums are open)")
