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

from google.protobuf import json_format
from google.protobuf.message import DecodeError as _PbDecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

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
_ID_KEYS = {"traceId": 16, "spanId": 8, "parentSpanId": 8, "trace_id": 16, "span_id": 8, "parent_span_id": 8}


class DecodeError(ValueError):
    """The body is not a valid OTLP request; the message says what is wrong."""


class TooLarge(ValueError):
    """The body, compressed or not, is over the size limit."""


def gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip without ever holding more than `limit` bytes (a gzip bomb stops here)."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as exc:
        raise DecodeError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise TooLarge(f"body is over the {limit}-byte limit after gzip decompression")
    if not d.eof:
        raise DecodeError("gzip body is truncated")
    return out


def decode(signal: str, body: bytes, fmt: str):
    """Decode one Export*ServiceRequest. `fmt` is "protobuf" or "json"."""
    cls = REQUEST[signal]
    if fmt == "json":
        return _decode_json(cls, body)
    msg = cls()
    try:
        msg.ParseFromString(body)
    except _PbDecodeError as exc:
        why = ("messages nest deeper than protobuf's limit of 100 levels" if "MaxDepth" in str(exc) else str(exc))
        raise DecodeError(f"body is not a valid protobuf {cls.DESCRIPTOR.name}: {why}") from None
    except RecursionError:
        raise DecodeError(f"body nests too deeply for {cls.DESCRIPTOR.name}") from None
    return msg


def _decode_json(cls, body: bytes):
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError(f"OTLP/JSON body must be an object ({cls.DESCRIPTOR.name}), got {type(doc).__name__}")
    try:
        _hex_ids_to_base64(doc, 0)
        return json_format.ParseDict(doc, cls(), ignore_unknown_fields=True)
    except DecodeError:
        raise
    except RecursionError:
        raise DecodeError("OTLP/JSON body nests too deeply") from None
    except (json_format.ParseError, ValueError, TypeError) as exc:
        raise DecodeError(f"body is not a valid OTLP/JSON {cls.DESCRIPTOR.name}: {exc}") from None


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
    """An Export*ServiceResponse, with partial_success when some records were rejected."""
    resp = RESPONSE[signal]()
    if rejected:
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
