"""What the reliability tests share: numbered requests whose records can be counted back, and the
recorder that turns what they tried into docs/reliability.md."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2

PB = {"Content-Type": "application/x-protobuf", "Authorization": "Bearer tok123"}
DOC = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"


def numbered_request(i: int, records: int = 50, pad: int = 0) -> bytes:
    """An OTLP logs request whose `records` lines say `req-<i>-<j>`; `pad` random bytes per line
    (incompressible, to fill a disk)."""
    res = resource_pb2.Resource(attributes=[common_pb2.KeyValue(
        key="service.name", value=common_pb2.AnyValue(string_value="reliability"))])
    lines = []
    for j in range(records):
        body = f"req-{i}-{j}" + ((" " + os.urandom(pad // 2).hex()) if pad else "")
        lines.append(logs_pb2.LogRecord(time_unix_nano=1_790_000_000_000_000_000 + i * 1000 + j,
                                        severity_number=9, body=common_pb2.AnyValue(string_value=body)))
    req = logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=res, scope_logs=[logs_pb2.ScopeLogs(log_records=lines)])])
    return req.SerializeToString()


def stored_lines(srv) -> dict[int, int]:
    """{request number: lines stored} read back through the SQL endpoint."""
    q = ("select split_part(body, '-', 2)::INTEGER AS i, count(*) from log_records "
         "where starts_with(body, 'req-') group by 1")
    r = httpx.post(srv.api + "/sql", json={"sql": q}, timeout=60).json()
    return {int(i): int(n) for i, n in r["rows"]}


@dataclass
class Recorder:
    """Rows of docs/reliability.md: what was tried, how often, and what came of it."""
    rows: list = field(default_factory=list)
    sections: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, section: str, what: str, tries: int, result: str) -> None:
        with self.lock:
            self.rows.append((section, what, tries, result))
            self.sections.add(section)

    def render(self) -> str:
        out = ["# Reliability: what was tried and what came of it",
               "",
               "Written by the test suite (test_reliability, test_bad_input, test_fuzz, test_openapi, test_security,",
               "test_ducklake, test_values) on every full green run; each row is one test's own count, not a claim "
               "made by hand.",
               ""]
        for section in ("Faults and load", "Bad input", "Fuzzing", "API", "Security"):
            rows = [r for r in self.rows if r[0] == section]
            if not rows:
                continue
            out += [f"## {section}", "", "| tried | times | result |", "|---|---|---|"]
            out += [f"| {what} | {tries} | {result} |" for _, what, tries, result in rows]
            out.append("")
        return "\n".join(out)


RECORDER = Recorder()
EXPECTED_SECTIONS = {"Faults and load", "Bad input", "Fuzzing", "API", "Security"}
