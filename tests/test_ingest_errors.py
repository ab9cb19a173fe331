"""OTLP conformance at the edges: bad bodies, limits, tokens, JSON ids, gzip, chunked bodies."""
import gzip
import json

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from .helpers import PB, fixture_requests, start_server
JS = {"Content-Type": "application/json", "Authorization": "Bearer tok123"}

# The OTLP/JSON example of the OpenTelemetry specification (examples/trace.json), ids in hex.
SPEC_TRACE_JSON = {"resourceSpans": [{"resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{"scope": {"name": "my.library", "version": "1.0.0"}, "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173", "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000", "endTimeUnixNano": "1544712661000000000",
        "kind": 2, "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]}]}]}]}


def count(srv, table):
    return httpx.post(srv.api + "/sql", json={"sql": f"select count(*) from {table}"}).json()["rows"][0][0]


def test_otlp_json_hex_ids_from_the_spec(server):
    r = httpx.post(server.otlp_http + "/v1/traces", content=json.dumps(SPEC_TRACE_JSON), headers=JS)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    trace = server.get("/traces/5b8efff798038103d269b633813fc60c").json()
    span = trace["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    assert (span["spanId"], span["parentSpanId"], span["name"]) == ("eee19b7ec3c1b174", "eee19b7ec3c1b173",
                                                                    "I'm a server span")
    assert span["startTimeUnixNano"] == "1544712660000000000"
    assert {"key": "my.span.attr", "value": {"stringValue": "some value"}} in span["attributes"]


@pytest.mark.parametrize("body, needle", [
    (b"\xff\xff\xff garbage", "not a valid protobuf ExportLogsServiceRequest"),
    (logs_service_pb2.ExportLogsServiceRequest().SerializeToString() + b"\x0a\x05ab", "not a valid protobuf"),
])
def test_bad_protobuf_is_400_naming_the_problem(server, body, needle):
    before = count(server, "ingest_ledger")
    r = httpx.post(server.otlp_http + "/v1/logs", content=body, headers=PB)
    assert r.status_code == 400
    st = status_pb2.Status.FromString(r.content)
    assert st.code == 3 and needle in st.message
    assert count(server, "ingest_ledger") == before


@pytest.mark.parametrize("doc, needle", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be an object"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "abc", "spanId": "EEE19B7EC3C1B174"}]}]}]}),
     "traceId must be 32 hex characters"),
    (json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "Z" * 32}]}]}]}), "traceId is not hex"),
    (json.dumps({"resourceSpans": "nope"}), "not a valid OTLP/JSON"),
])
def test_bad_json_is_400_naming_the_problem(server, doc, needle):
    r = httpx.post(server.otlp_http + "/v1/traces", content=doc, headers=JS)
    assert r.status_code == 400, r.text
    assert needle in r.json()["message"]
    assert count(server, "spans") == 0


def test_token_content_type_and_paths(server):
    sig, body = fixture_requests()[0]
    r = httpx.post(server.otlp_http + "/v1/logs", content=body, headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 401
    r = httpx.post(server.otlp_http + "/v1/logs", content=body,
                   headers={"Content-Type": "application/x-protobuf", "Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = httpx.post(server.otlp_http + "/v1/logs", content=body, headers={**PB, "Content-Type": "text/plain"})
    assert r.status_code == 415 and "Content-Type" in r.json()["message"]
    r = httpx.post(server.otlp_http + "/v1/logs", content=body, headers={**PB, "Content-Encoding": "br"})
    assert r.status_code == 415
    assert httpx.post(server.otlp_http + "/v1/spans", content=body, headers=PB).status_code == 404
    assert count(server, "ingest_ledger") == 0


def test_gzip_and_chunked_bodies(server):
    reqs = fixture_requests()

    def chunks(data):
        for i in range(0, len(data), 100):
            yield data[i:i + 100]

    for sig, body in reqs:
        r = httpx.post(f"{server.otlp_http}/v1/{sig}", content=chunks(gzip.compress(body)),
                       headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 200
    assert count(server, "ingest_ledger") == len(reqs)
    assert count(server, "transitions") == 24


def test_size_limits(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--max-body-bytes", "4096")
    try:
        big = b"\x00" * 5000
        r = httpx.post(srv.otlp_http + "/v1/logs", content=big, headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 413
        # Chunked, so no Content-Length to refuse early.
        r = httpx.post(srv.otlp_http + "/v1/logs", content=iter([big[:3000], big[3000:]]),
                       headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 413
        # A gzip bomb: tiny on the wire, far over the limit once inflated.
        bomb = gzip.compress(b"\x00" * 3_000_000)
        assert len(bomb) < 4096
        r = httpx.post(srv.otlp_http + "/v1/logs", content=bomb,
                       headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"})
        assert r.status_code == 413 and "after gzip" in status_pb2.Status.FromString(r.content).message
        assert count(srv, "ingest_ledger") == 0
    finally:
        srv.stop()


def test_grpc_errors(server):
    with grpc.insecure_channel(server.otlp_grpc) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.RpcError) as err:
            export(b"\xff\xff garbage", metadata=(("authorization", "Bearer tok123"),), timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ExportTraceServiceRequest" in err.value.details()
        stub = trace_service_pb2_grpc.TraceServiceStub(ch)
        with pytest.raises(grpc.RpcError) as err:
            stub.Export(trace_service_pb2.ExportTraceServiceRequest(), timeout=10)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        ok = stub.Export(trace_service_pb2.ExportTraceServiceRequest(), metadata=(("authorization", "Bearer tok123"),),
                         timeout=10)
        assert ok == trace_service_pb2.ExportTraceServiceResponse()
