"""Bodies as clients really send them: gzip in several members, deflate (zlib or raw) from the real
OTel exporters over HTTP and gRPC, an oversize POST from a client that sends it all before reading,
and invalid UTF-8 in one record. Nothing valid is lost; what was changed is said in the answer."""
import gzip
import json
import os
import socket
import time
import urllib.error
import urllib.request
import zlib

import grpc
import httpx
import pytest
from google.rpc import status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from .delivery import GRPC_MD, JS, PB, line, logs_request, otlp_json, sql, status, stored, uid
from .helpers import start_server

SECTION = "Bad input"
CAP = 1 << 20


def _split(data: bytes, parts: int) -> list[bytes]:
    """`data` cut into `parts` pieces at uneven places (a streaming compressor flushes where it likes)."""
    cuts = sorted({len(data) * k // (parts + 1) + k for k in range(1, parts)})
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def test_gzip_of_three_members_keeps_every_member(server, record):
    now = time.time_ns()
    for fmt, headers, encode in (("protobuf", PB, lambda m: m.SerializeToString()), ("json", JS, otlp_json)):
        invs = [uid(f"gz3-{fmt}") for _ in range(3)]
        body = encode(logs_request(*(status(inv, "REGISTERED", now) for inv in invs)))
        members = [gzip.compress(p) for p in _split(body, 3)]
        assert gzip.decompress(b"".join(members)) == body
        r = httpx.post(server.otlp_http + "/v1/logs", content=b"".join(members),
                       headers={**headers, "Content-Encoding": "gzip"})
        assert r.status_code == 200, r.content
        assert all(stored(server, inv) for inv in invs), fmt
    # Bytes after the last member that are not another member: refused, nothing of it stored.
    inv = uid("gz-tail")
    body = gzip.compress(logs_request(status(inv, "REGISTERED", now)).SerializeToString()) + b"not gzip"
    r = httpx.post(server.otlp_http + "/v1/logs", content=body, headers={**PB, "Content-Encoding": "gzip"})
    assert r.status_code == 400 and "not another gzip member" in status_pb2.Status.FromString(r.content).message
    assert stored(server, inv) is None
    record(SECTION, "gzip body of 3 members (one request cut in 3, each part gzipped; protobuf and OTLP/JSON)", 2,
           "200: every member inflated, all 3 invocations stored each time; trailing bytes that are not a member: "
           "400, nothing stored")


def test_gzip_members_many_and_small():
    """A body of many members (bgzip writes one per 64 KiB) is read whole in linear time; past the member
    cap (empty members cost time and carry nothing) it is refused."""
    from tasktrail.ingest.decode import MAX_GZIP_MEMBERS, DecodeError, gunzip
    data = os.urandom(4_000_000)
    members = b"".join(gzip.compress(data[i:i + 200], compresslevel=1) for i in range(0, len(data), 200))
    t0 = time.perf_counter()
    assert gunzip(members, len(data)) == data
    assert time.perf_counter() - t0 < 2   # 20,000 members in 4 MB; copying the rest per member: ~40 GB, ~10 s
    with pytest.raises(DecodeError, match=f"more than {MAX_GZIP_MEMBERS} members"):
        gunzip(gzip.compress(b"") * (MAX_GZIP_MEMBERS + 1), 1 << 20)


def test_deflate_zlib_and_raw(server, record):
    now = time.time_ns()
    for wrap, pack in (("zlib", zlib.compress), ("raw", _raw_deflate)):
        for fmt, headers, encode in (("protobuf", PB, lambda m: m.SerializeToString()), ("json", JS, otlp_json)):
            inv = uid(f"deflate-{wrap}-{fmt}")
            body = pack(encode(logs_request(status(inv, "REGISTERED", now), status(inv, "PENDING", now + 1000))))
            r = httpx.post(server.otlp_http + "/v1/logs", content=body,
                           headers={**headers, "Content-Encoding": "deflate"})
            assert r.status_code == 200, r.content
            assert stored(server, inv)["status"] == "PENDING"
    r = httpx.post(server.otlp_http + "/v1/logs", content=b"\x78\x9cnot deflate at all",
                   headers={**PB, "Content-Encoding": "deflate"})
    assert r.status_code == 400 and "not valid" in status_pb2.Status.FromString(r.content).message
    record(SECTION, "Content-Encoding: deflate, zlib-wrapped and raw, protobuf and OTLP/JSON", 4,
           "200: stored each time; a body that is neither: 400")


def _sdk_exporters(server, transport: str, compression: str):
    """The OTel SDK's own log and span exporters for `transport`, set to `compression`."""
    if transport == "http":
        from opentelemetry.exporter.otlp.proto.http import Compression
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        comp = getattr(Compression, compression)
        kw = dict(headers={"authorization": "Bearer tok123"}, compression=comp)
        return (OTLPLogExporter(endpoint=server.otlp_http + "/v1/logs", **kw),
                OTLPSpanExporter(endpoint=server.otlp_http + "/v1/traces", **kw))
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    kw = dict(endpoint=server.otlp_grpc, insecure=True, headers=(("authorization", "Bearer tok123"),),
              compression=getattr(Compression, compression))
    return OTLPLogExporter(**kw), OTLPSpanExporter(**kw)


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_real_otel_exporters_with_deflate_and_gzip(server, record, transport):
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    sent = {}
    for compression in ("Deflate", "Gzip"):
        log_exp, span_exp = _sdk_exporters(server, transport, compression)
        res = Resource.create({"service.name": "delivery-sdk"})
        lp, tp = LoggerProvider(resource=res), TracerProvider(resource=res)
        lp.add_log_record_processor(SimpleLogRecordProcessor(log_exp))
        tp.add_span_processor(SimpleSpanProcessor(span_exp))
        marker = uid(f"sdk-{transport}-{compression}")
        for i in range(3):
            lp.get_logger("delivery").emit(body=f"{marker} line {i}", severity_text="INFO")
        with tp.get_tracer("delivery").start_as_current_span(marker) as sp:
            trace_id = format(sp.get_span_context().trace_id, "032x")
        lp.shutdown()
        tp.shutdown()
        sent[marker] = trace_id
    for marker, trace_id in sent.items():
        lines = server.get("/logs", params={"q": marker}).json()["items"]
        assert sorted(l["message"] for l in lines) == [f"{marker} line {i}" for i in range(3)]
        spans = server.get(f"/traces/{trace_id}").json()["resourceSpans"][0]["scopeSpans"][0]["spans"]
        assert [s["name"] for s in spans] == [marker]
    record(SECTION, f"the OTel SDK's {transport} log and span exporters with Compression.Deflate and .Gzip", 2,
           "every line and span stored and read back through the API")


def _raw_post(url: str, head: str, body_chunks, read_first: bool = False) -> bytes:
    """Send a request on a bare socket (headers as given, then the body pieces) and return the answer."""
    host, port = url.split("//")[1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(head.encode())
        if read_first:  # Expect: 100-continue: the answer comes before any body is sent
            return s.recv(65536)
        for chunk in body_chunks:
            s.sendall(chunk)
        out = b""
        while b"\r\n\r\n" not in out or len(out.split(b"\r\n\r\n", 1)[1]) < int(
                (out.split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]) if b"content-length: " in out else 0):
            got = s.recv(65536)
            if not got:
                break
            out += got
        return out


def test_oversize_post_from_a_client_that_sends_it_all_reads_413(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--max-body-bytes", str(CAP))
    try:
        big = os.urandom(CAP + (1 << 20))
        # urllib sends the whole body before reading (no Expect: 100-continue), as requests does.
        for ctype, read in (("application/json", lambda b: json.loads(b)["message"]),
                            ("application/x-protobuf", lambda b: status_pb2.Status.FromString(b).message)):
            req = urllib.request.Request(srv.otlp_http + "/v1/logs", data=big, method="POST",
                                         headers={"Content-Type": ctype, "Authorization": "Bearer tok123"})
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=30)
            assert err.value.code == 413
            assert f"over the {CAP}-byte limit" in read(err.value.read())
        # Refused for another reason before the body is read (no token, wrong type): readable all the same.
        for headers, code in (({"Content-Type": "application/x-protobuf"}, 401),
                              ({"Content-Type": "text/plain", "Authorization": "Bearer tok123"}, 415)):
            req = urllib.request.Request(srv.otlp_http + "/v1/logs", data=big, method="POST", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=30)
            assert err.value.code == code
        # Chunked (no Content-Length to refuse early): the rest is read and dropped, then the answer.
        host = srv.otlp_http.split("//")[1]
        head = (f"POST /v1/logs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer tok123\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = os.urandom(64 * 1024)
        chunks = [b"%x\r\n" % len(piece) + piece + b"\r\n"] * ((CAP + (1 << 20)) // len(piece)) + [b"0\r\n\r\n"]
        answer = _raw_post(srv.otlp_http, head, chunks)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["message"] == f"body is over the {CAP}-byte limit"
        # With Expect: 100-continue the client waits: it gets the 413 without sending the body at all.
        head = (f"POST /v1/logs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer tok123\r\nContent-Length: {len(big)}\r\nExpect: 100-continue\r\n\r\n")
        assert _raw_post(srv.otlp_http, head, [], read_first=True).startswith(b"HTTP/1.1 413")
        # Inflated sizes count in total: three gzip members of 0.4 MiB each are over 1 MiB together.
        members = b"".join(gzip.compress(b"\0" * (400 * 1024)) for _ in range(3))
        r = httpx.post(srv.otlp_http + "/v1/logs", content=members, headers={**PB, "Content-Encoding": "gzip"})
        assert r.status_code == 413 and "after gzip" in status_pb2.Status.FromString(r.content).message
        r = httpx.post(srv.otlp_http + "/v1/logs", content=zlib.compress(b"\0" * 50_000_000),
                       headers={**PB, "Content-Encoding": "deflate"})
        assert r.status_code == 413 and "after deflate" in status_pb2.Status.FromString(r.content).message
        # And the server goes on.
        inv = uid("after-413")
        r = httpx.post(srv.otlp_http + "/v1/logs", headers=PB,
                       content=logs_request(status(inv, "REGISTERED", time.time_ns())).SerializeToString())
        assert r.status_code == 200 and stored(srv, inv)
    finally:
        srv.stop()
    record(SECTION, "body 1 MiB past --max-body-bytes sent whole before reading (urllib, JSON and protobuf; "
                    "chunked on a bare socket; without a token; as text/plain)", 5,
           "413 (401, 415) with its error body read by the client (the rest of the body is read and dropped, up "
           "to 4x the limit and 5 s), not a connection reset; with Expect: 100-continue the 413 comes before "
           "the body")
    record(SECTION, "3 gzip members inflating to 1.2 MB in all; a deflate bomb (50 MB inflated)", 2,
           "413: the limit holds for the inflated total; nothing stored")


def _utf8_request(marker: str):
    """Three lines; the middle one has invalid UTF-8 in its body and in attribute 'user' (the lengths
    stay right: this is what a Go or Rust SDK sends, valid protobuf but for the strings)."""
    now = time.time_ns()
    req = logs_request(line(f"{marker} first", now), line(f"{marker} second caf##", now + 1, user="j##e"),
                       line(f"{marker} third", now + 2))
    return req.SerializeToString().replace(b"##", b"\xc3\x28")


def _lines(srv, marker):
    return {l["message"]: l for l in srv.get("/logs", params={"q": marker}).json()["items"]}


def test_invalid_utf8_in_one_record_of_three(server, record):
    marker = uid("utf8")
    r = httpx.post(server.otlp_http + "/v1/logs", content=_utf8_request(marker), headers=PB)
    assert r.status_code == 200, r.content
    ps = logs_service_pb2.ExportLogsServiceResponse.FromString(r.content).partial_success
    assert ps.rejected_log_records == 0      # nothing refused: a warning (OTLP allows it with 0)
    assert ("resource_logs[0].scope_logs[0].log_records[1].body: invalid UTF-8 replaced with U+FFFD"
            in ps.error_message)
    assert "resource_logs[0].scope_logs[0].log_records[1].attributes['user']: invalid UTF-8" in ps.error_message
    lines = _lines(server, marker)
    assert set(lines) == {f"{marker} first", f"{marker} second caf\ufffd(", f"{marker} third"}
    (attrs,), = sql(server, f"select attributes from log_records where body = '{marker} second caf\ufffd('")
    assert json.loads(attrs) == {"user": "j\ufffd(e"}

    # OTLP/JSON that is not UTF-8 (a client writing Latin-1 into its JSON): repaired the same way.
    marker = uid("utf8-json")
    doc = json.dumps(json.loads(otlp_json(logs_request(line(f"{marker} one", time.time_ns()),
                                                       line(f"{marker} two caf##", time.time_ns())))))
    r = httpx.post(server.otlp_http + "/v1/logs", content=doc.encode().replace(b"##", b"\xe9"), headers=JS)
    assert r.status_code == 200, r.content
    ps = r.json()["partialSuccess"]
    assert "rejectedLogRecords" not in ps and "logRecords[1].body: invalid UTF-8" in ps["errorMessage"]
    assert set(_lines(server, marker)) == {f"{marker} one", f"{marker} two caf\ufffd"}

    # Over gRPC, the same request and the same answer.
    marker = uid("utf8-grpc")
    with grpc.insecure_channel(server.otlp_grpc) as ch:
        export = ch.unary_unary("/opentelemetry.proto.collector.logs.v1.LogsService/Export",
                                request_serializer=lambda b: b,
                                response_deserializer=logs_service_pb2.ExportLogsServiceResponse.FromString)
        resp = export(_utf8_request(marker), metadata=GRPC_MD, timeout=10)
    assert "log_records[1].body: invalid UTF-8 replaced with U+FFFD" in resp.partial_success.error_message
    assert len(_lines(server, marker)) == 3
    record(SECTION, "invalid UTF-8 in one record of three (its body and an attribute), as protobuf over HTTP and "
                    "gRPC, and Latin-1 in an OTLP/JSON body", 3,
           "200: all records stored, the invalid bytes replaced with U+FFFD; partial_success (0 rejected) names "
           "each field, e.g. \"resource_logs[0].scope_logs[0].log_records[1].attributes['user']\"")


def test_a_corrupt_body_with_invalid_utf8_names_the_field(server):
    """A string edited in place to another length breaks every length around it: no record can be
    trusted, so it is refused, naming the string the parser stopped at."""
    inv = uid("corrupt")
    body = logs_request(status(inv, "REGISTERED", time.time_ns(), **{"tasktrail.error.message": "@@"}))
    r = httpx.post(server.otlp_http + "/v1/logs", headers=PB,
                   content=body.SerializeToString().replace(b"@@", b"\xff\xfe\xfd"))
    assert r.status_code == 400
    msg = status_pb2.Status.FromString(r.content).message
    assert "log_records[0].attributes['tasktrail.error.message'] holds invalid UTF-8" in msg
    assert stored(server, inv) is None
