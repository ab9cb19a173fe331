"""The one OTLP decoder: bytes (protobuf or OTLP/JSON, maybe gzip) to request messages.

Only this module imports the `opentelemetry-proto` message classes; the gRPC and
HTTP receivers move bytes and map errors. OTLP/JSON differs from protobuf's JSON
mapping in one way that matters: trace and span ids are hex, not base64, so ids
are converted here before `ParseDict` (which would silently mis-decode them).
"""
from __future__ import annotations

import base64
import json
import zlib
from typing import NamedTuple

from google.protobuf import json_format
from google.protobuf.message import DecodeError as _PbDecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from . import utf8

SIGNALS = ("traces", "logs", "metrics")
REQUEST = {
    "traces": trace_service_pb2.ExportTraceServiceRequest,
    "logs": logs_service_pb2.ExportLogsServiceRequest,
    "metrics": metrics_service_pb2.ExportMetricsServiceRequest,
}
RESPONSE = {
    "traces": trace_service_pb2.ExportTraceServiceResponse,
    "logs": logs_service_pb2.ExportLogsServiceResponse,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse,
}
_REJECTED_FIELD = {"traces": "rejected_spans", "logs": "rejected_log_records", "metrics": "rejected_data_points"}
GZIP_FEED = 16 * 1024
MAX_GZIP_MEMBERS = 100_000  # bgzip's 64 KiB blocks make ~1,000 members per 64 MiB; empty members are a trick
MAX_NOTES = 10          # refusals and repairs named one by one in a response; the count says how many
_ID_KEYS = {"traceId": 16, "spanId": 8, "parentSpanId": 8, "trace_id": 16, "span_id": 8, "parent_span_id": 8}


class DecodeError(ValueError):
    """The body is not a valid OTLP request; the message says what is wrong."""


class TooLarge(ValueError):
    """The body, compressed or not, is over the size limit."""


class Decoded(NamedTuple):
    """A decoded request and what had to be repaired in it to decode at all."""
    message: object
    repaired: int = 0                   # string fields whose invalid UTF-8 was replaced with U+FFFD
    notes: tuple[str, ...] = ()         # the first few of them, each naming the field's path


# Compressed bodies: the size cap holds for the inflated total, and inflating stops as soon as it is
# passed, so a small body cannot make the server hold more than the cap (a "zip bomb").
def gunzip(data: bytes, limit: int) -> bytes:
    """Inflate a gzip body of one or more members (RFC 1952 allows several back to back; `cat a.gz b.gz`,
    Go's gzip.Reader and Python's gzip.decompress read them all). Returns the members' data joined.
    Raises TooLarge past `limit` bytes inflated in total, DecodeError for a body that is not gzip, is cut
    short, has more than MAX_GZIP_MEMBERS members, or has trailing bytes that are not another member
    (zero padding is allowed).

    The input is fed in GZIP_FEED-byte pieces: what a finished member's decompressor holds past its end
    is then at most one piece, so many small members cost linear time, not a copy of the rest each."""
    view, n = memoryview(data), len(data)
    out: list[bytes] = []
    total, member, pos = 0, 1, 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    piece = b""
    while True:
        if not piece:
            if pos >= n:
                break
            piece, pos = view[pos:pos + GZIP_FEED], min(pos + GZIP_FEED, n)
        try:
            got = d.decompress(piece, limit - total + 1)
        except zlib.error as exc:
            raise DecodeError(f"body is not valid gzip (member {member}): {exc}") from None
        total += len(got)
        if total > limit:
            raise TooLarge(f"body is over the {limit}-byte limit after gzip decompression")
        out.append(got)
        piece = b""
        if d.eof:
            rest = d.unused_data
            if not rest.strip(b"\0") and data.count(b"\0", pos) == n - pos:
                return b"".join(out)
            if (rest + bytes(view[pos:pos + 2]))[:2] != b"\x1f\x8b":
                raise DecodeError(f"gzip body has {len(rest) + n - pos} bytes after member {member} that are not "
                                  f"another gzip member")
            member += 1
            if member > MAX_GZIP_MEMBERS:
                raise DecodeError(f"gzip body has more than {MAX_GZIP_MEMBERS} members")
            d, piece = zlib.decompressobj(16 + zlib.MAX_WBITS), rest
    raise DecodeError("gzip body is truncated" if n else "body is empty, not gzip")


def inflate(data: bytes, limit: int) -> bytes:
    """Inflate a `Content-Encoding: deflate` body: zlib-wrapped (RFC 1950, what HTTP means by deflate and
    what the OTel Python exporters send with Compression.Deflate) or raw deflate (RFC 1951, which some
    clients send instead). Raises TooLarge past `limit` bytes inflated, DecodeError when it is neither."""
    zlib_header = (len(data) >= 2 and data[0] & 0x0F == 8 and data[0] >> 4 <= 7
                   and ((data[0] << 8) | data[1]) % 31 == 0)
    attempts = (zlib.MAX_WBITS, -zlib.MAX_WBITS) if zlib_header else (-zlib.MAX_WBITS,)
    for i, wbits in enumerate(attempts):
        try:
            out, rest = _inflate(data, wbits, limit, limit, "deflate", "zlib" if wbits > 0 else "raw deflate")
        except DecodeError:
            if i + 1 < len(attempts):
                continue
            raise
        if rest.strip(b"\0"):
            raise DecodeError(f"deflate body has {len(rest)} bytes after the end of its stream")
        return out
    raise AssertionError("unreachable")


def _inflate(data: bytes, wbits: int, room: int, limit: int, encoding: str, what: str) -> tuple[bytes, bytes]:
    """One compressed stream inflated into at most `room` bytes (of the body's `limit`): (its data, the
    bytes after the stream)."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, room + 1)
    except zlib.error as exc:
        raise DecodeError(f"body is not valid {what}: {exc}") from None
    if len(out) > room or d.unconsumed_tail:
        raise TooLarge(f"body is over the {limit}-byte limit after {encoding} decompression")
    if not d.eof:
        raise DecodeError(f"{what} body is truncated")
    return out, d.unused_data


def decode(signal: str, body: bytes, fmt: str):
    """Decode one Export*ServiceRequest. `fmt` is "protobuf" or "json". Raises DecodeError."""
    return decode_request(signal, body, fmt).message


def decode_request(signal: str, body: bytes, fmt: str) -> Decoded:
    """Decode one Export*ServiceRequest (`fmt` "protobuf" or "json"), repairing invalid UTF-8.

    Protobuf's parser refuses a whole request for one string field with invalid UTF-8 (Go and Rust SDKs
    let such strings through), and a JSON body with invalid UTF-8 is not JSON. Either way every other
    record would be lost; instead the invalid bytes are replaced with U+FFFD (what opentelemetry-proto
    recommends) and the repairs are returned with the path of each field, for partial_success's
    error_message. Raises DecodeError for anything else that is not a valid request."""
    cls = REQUEST[signal]
    if fmt == "json":
        return _decode_json(cls, body)
    msg = cls()
    try:
        msg.ParseFromString(body)
        return Decoded(msg)
    except _PbDecodeError as exc:
        why = ("messages nest deeper than protobuf's limit of 100 levels" if "MaxDepth" in str(exc) else str(exc))
        problem = f"body is not a valid protobuf {cls.DESCRIPTOR.name}: {why}"
        if "UTF-8" not in why:
            raise DecodeError(problem) from None
    except RecursionError:
        raise DecodeError(f"body nests too deeply for {cls.DESCRIPTOR.name}") from None
    return _repaired_protobuf(cls, body, problem)


def _repaired_protobuf(cls, body: bytes, problem: str) -> Decoded:
    found: list[str] = []
    try:
        fixed = utf8.repair(body, cls.DESCRIPTOR, found)
    except utf8.Malformed as exc:
        # Broken past the bad string too (e.g. a string edited in place to a different length): name
        # the string the parser stopped at, and what else is wrong.
        where = f"{found[0]} holds invalid UTF-8, and " if found else ""
        raise DecodeError(f"{problem}: {where}{exc}") from None
    if fixed is None:
        raise DecodeError(problem)
    msg = cls()
    try:
        msg.ParseFromString(fixed)
    except (_PbDecodeError, RecursionError):
        raise DecodeError(problem + (f": {found[0]} holds invalid UTF-8" if found else "")) from None
    return Decoded(msg, len(found), tuple(f"{p}: invalid UTF-8 replaced with U+FFFD" for p in found[:MAX_NOTES]))


def _decode_json(cls, body: bytes) -> Decoded:
    found: list[str] = []
    try:
        try:
            doc = json.loads(body)
        except UnicodeDecodeError:
            # Not UTF-8: read the invalid bytes as lone surrogates, then replace them string by string.
            doc = _repair_json(json.loads(body.decode("utf-8", "surrogateescape")), "", found, 0)
    except DecodeError:
        raise
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"OTLP/JSON body must be an object ({cls.DESCRIPTOR.name}), got {type(doc).__name__}")
    try:
        _hex_ids_to_base64(doc, 0)
        msg = json_format.ParseDict(doc, cls(), ignore_unknown_fields=True)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("OTLP/JSON body nests too deeply") from None
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise DecodeError(f"body is not a valid OTLP/JSON {cls.DESCRIPTOR.name}: {exc}") from None
    return Decoded(msg, len(found), tuple(f"{p}: invalid UTF-8 replaced with U+FFFD" for p in found[:MAX_NOTES]))


def _repair_json(node, path: str, found: list[str], depth: int):
    """`node` with every string holding invalid UTF-8 (read as surrogates) repaired; paths go to `found`."""
    if depth > 200:
        raise DecodeError("OTLP/JSON body nests too deeply")
    if isinstance(node, str):
        if _has_surrogate(node):
            found.append(utf8.readable(path, (".value.stringValue", ".stringValue")))
            return _unsurrogate(node)
        return node
    if isinstance(node, list):
        out = []
        for i, item in enumerate(node):
            key = item.get("key") if isinstance(item, dict) else None
            name = f"{path}[{_unsurrogate(key)!r}]" if isinstance(key, str) else f"{path}[{i}]"
            out.append(_repair_json(item, name, found, depth + 1))
        return out
    if isinstance(node, dict):
        return {(_unsurrogate(k) if _has_surrogate(k) else k): _repair_json(v, f"{path}.{k}" if path else k, found,
                                                                            depth + 1)
                for k, v in node.items()}
    return node


def _has_surrogate(s: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in s)


def _unsurrogate(s: str) -> str:
    try:
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate sent as a \uXXXX escape: not UTF-8 either
        return "".join("\ufffd" if "\ud800" <= c <= "\udfff" else c for c in s)


def _hex_ids_to_base64(node, depth: int) -> None:
    """Rewrite OTLP/JSON's hex ids to the base64 that protobuf's JSON parser expects."""
    if depth > 200:
        raise DecodeError("OTLP/JSON body nests too deeply")
    if isinstance(node, dict):
        for key, value in node.items():
            size = _ID_KEYS.get(key)
            if size is not None and isinstance(value, str):
                node[key] = _hex_to_b64(key, value, size)
            elif isinstance(value, (dict, list)):
                _hex_ids_to_base64(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                _hex_ids_to_base64(item, depth + 1)


def _hex_to_b64(key: str, value: str, size: int) -> str:
    if value == "":
        return ""
    if len(value) != size * 2:
        raise DecodeError(f"{key} must be {size * 2} hex characters, got {len(value)}: {value[:80]!r}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise DecodeError(f"{key} is not hex: {value[:80]!r}") from None
    return base64.b64encode(raw).decode("ascii")


def success(signal: str, fmt: str, rejected: int = 0, message: str = "") -> bytes:
    """An Export*ServiceResponse, serialized as `fmt` ("protobuf" or "json"): empty when everything was
    stored as sent; else its partial_success holds `rejected` (the records refused: rejected_spans,
    rejected_log_records or rejected_data_points; JSON rejectedSpans, rejectedLogRecords, ...) and
    `message`. With rejected 0 and a message it is a warning, as OTLP allows (something was repaired)."""
    resp = RESPONSE[signal]()
    if rejected or message:
        setattr(resp.partial_success, _REJECTED_FIELD[signal], rejected)
        resp.partial_success.error_message = message
    if fmt == "json":
        return json_format.MessageToJson(resp, indent=None).encode()
    return resp.SerializeToString()


def rpc_status(http_status: int, message: str, fmt: str, retry_after_s: float | None = None) -> bytes:
    """A google.rpc.Status body for an HTTP error answer, as OTLP/HTTP asks."""
    code = {400: code_pb2.INVALID_ARGUMENT, 401: code_pb2.UNAUTHENTICATED, 413: code_pb2.INVALID_ARGUMENT,
            415: code_pb2.INVALID_ARGUMENT, 429: code_pb2.RESOURCE_EXHAUSTED,
            503: code_pb2.UNAVAILABLE}.get(http_status, code_pb2.UNKNOWN)
    st = status_pb2.Status(code=code, message=message)
    if retry_after_s is not None:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromNanoseconds(int(retry_after_s * 1e9))
        st.details.add().Pack(info)
    if fmt == "json":
        return json_format.MessageToJson(st, indent=None).encode()
    return st.SerializeToString()


def retry_info_bytes(retry_after_s: float) -> bytes:
    """The serialized RetryInfo for gRPC's `google.rpc.retryinfo-bin` trailer."""
    info = error_details_pb2.RetryInfo()
    info.retry_delay.FromNanoseconds(int(retry_after_s * 1e9))
    return info.SerializeToString()
