"""What the delivery tests share: tasktrail.v1 status records built as OTLP, read back through the API."""
from __future__ import annotations

import base64
import json
import uuid

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from .helpers import PB, sql  # noqa: F401  (the delivery tests import both from here)

JS = {**PB, "Content-Type": "application/json"}
GRPC_MD = (("authorization", "Bearer tok123"),)


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def kv(key: str, value) -> common_pb2.KeyValue:
    v = common_pb2.AnyValue(int_value=value) if isinstance(value, int) else common_pb2.AnyValue(string_value=value)
    return common_pb2.KeyValue(key=key, value=v)


def status(inv: str, st: str, ts_ns: int, **attrs) -> logs_pb2.LogRecord:
    """One tasktrail.v1 status record of invocation `inv` at `ts_ns`."""
    a = [kv("tasktrail.invocation.id", inv), kv("tasktrail.status", st), kv("tasktrail.task.id", "delivery.task")]
    a += [kv(k, v) for k, v in attrs.items()]
    return logs_pb2.LogRecord(time_unix_nano=ts_ns, event_name="tasktrail.status", severity_number=9,
                              attributes=a)


def line(body: str, ts_ns: int, **attrs) -> logs_pb2.LogRecord:
    """One plain log line (no dialect consumes it: it is stored as a line)."""
    return logs_pb2.LogRecord(time_unix_nano=ts_ns, severity_number=9, severity_text="INFO",
                              body=common_pb2.AnyValue(string_value=body),
                              attributes=[kv(k, v) for k, v in attrs.items()])


def logs_request(*records, app: str = "delivery") -> logs_service_pb2.ExportLogsServiceRequest:
    res = [kv("service.namespace", app), kv("service.name", "delivery-worker"),
           kv("telemetry.mapping.revision", "tasktrail.v1")]
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": res}, scope_logs=[logs_pb2.ScopeLogs(scope={"name": "tasktrail"},
                                                                     log_records=list(records))])])


def otlp_json(msg) -> bytes:
    """A request as OTLP/JSON: protobuf's JSON mapping, but trace and span ids in hex."""
    def hex_ids(node):
        if isinstance(node, dict):
            return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") else hex_ids(v))
                    for k, v in node.items()}
        return [hex_ids(v) for v in node] if isinstance(node, list) else node
    return json.dumps(hex_ids(json_format.MessageToDict(msg))).encode()


def stored(srv, inv: str) -> dict | None:
    """The invocation as the API reads it, or None when it is not stored."""
    r = srv.get(f"/invocations/{inv}")
    return r.json() if r.status_code == 200 else None
