"""The runner mix of BENCHMARKS.md, generated deterministically as pre-serialized OTLP requests.

Per invocation, roughly what rustvello and tasktrail.v1 send: REGISTERED / PENDING /
RUNNING / SUCCESS-or-FAILED (5% retried, 3% failed) as tasktrail.v1 log events,
one span per attempt, two application log lines; plus heartbeats per runner and
atomic-service decisions. Each request holds `per_request` records (512 as the
SDKs send). `unique(body, n)` makes a request distinct without re-encoding it, so
the server's retry dedupe does not swallow a reused body.
"""
from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.trace.v1.trace_pb2 import Span

TASKS = [("shop.checkout", 0.4), ("shop.pay", 0.2), ("shop.ship", 2.0), ("mail.send", 0.05), ("report.build", 8.0)]


def _kv(key, value):
    kv = KeyValue(key=key)
    if isinstance(value, bool):
        kv.value.bool_value = value
    elif isinstance(value, int):
        kv.value.int_value = value
    elif isinstance(value, float):
        kv.value.double_value = value
    else:
        kv.value.string_value = value
    return kv


@dataclass
class Workload:
    apps: int = 2
    runners_per_app: int = 3
    workers_per_runner: int = 4
    per_request: int = 512
    seed: int = 7
    start_ns: int = 1_795_000_000_000_000_000

    def requests(self, n_records: int) -> list[tuple[str, bytes]]:
        """About `n_records` records as (signal, protobuf body) requests, logs and traces interleaved."""
        rnd = random.Random(self.seed)
        logs: list[tuple] = []   # (runner, record)
        spans: list[tuple] = []
        t = self.start_ns
        runners = [(f"app{a}", f"runner-{a}-{r}", [f"worker-{a}-{r}-{w}" for w in range(self.workers_per_runner)])
                   for a in range(self.apps) for r in range(self.runners_per_app)]
        out: list[tuple[str, bytes]] = []
        produced = 0
        inv_no = 0
        while produced < n_records:
            app, runner, workers = runners[inv_no % len(runners)]
            worker = workers[inv_no % len(workers)]
            inv_no += 1
            task, mean = TASKS[rnd.randrange(len(TASKS))]
            inv = INV_MARK.decode() + str(uuid.UUID(int=rnd.getrandbits(128)))[8:]
            trace = TRACE_MARK + rnd.getrandbits(80).to_bytes(10, "big")
            t += rnd.randrange(1_000_000, 20_000_000)
            dur = int(rnd.expovariate(1 / mean) * 1e9) + 1_000_000
            fate = rnd.random()
            attempts = 2 if fate < 0.05 else 1
            steps = [("REGISTERED", t), ("PENDING", t + 2_000_000)]
            cursor = t + 4_000_000
            spans_here = []
            for a in range(attempts):
                steps.append(("RUNNING", cursor))
                end = cursor + dur
                last = a == attempts - 1
                final = ("FAILED" if fate > 0.97 else "SUCCESS") if last else "RETRY"
                steps.append((final, end))
                sid = rnd.getrandbits(64).to_bytes(8, "big")
                spans_here.append((cursor, end, sid, a, final))
                if not last:
                    steps.append(("PENDING", end + 1_000_000))
                cursor = end + 2_000_000
            for status, ts in steps:
                rec = LogRecord(time_unix_nano=ts, event_name="tasktrail.status", severity_number=9,
                                trace_id=trace)
                rec.body.string_value = "tasktrail.status"
                rec.attributes.extend([_kv("tasktrail.invocation.id", inv), _kv("tasktrail.status", status),
                                       _kv("tasktrail.task.id", task), _kv("tasktrail.runner.id", worker),
                                       _kv("tasktrail.runner.parent.id", runner)])
                logs.append((app, runner, rec))
            for i in range(2):
                rec = LogRecord(time_unix_nano=t + 5_000_000 + i, severity_number=9, severity_text="INFO",
                                trace_id=trace, span_id=spans_here[0][2])
                rec.body.string_value = f"{task} processing item {inv_no} step {i}"
                rec.attributes.extend([_kv("tasktrail.invocation.id", inv), _kv("code.function", task)])
                logs.append((app, runner, rec))
            for start, end, sid, a, final in spans_here:
                sp = Span(trace_id=trace, span_id=sid, name=f"{task}.execute", kind=5,
                          start_time_unix_nano=start, end_time_unix_nano=end)
                sp.status.code = 2 if final == "FAILED" else 1
                sp.attributes.extend([_kv("tasktrail.invocation.id", inv), _kv("tasktrail.attempt", a)])
                spans.append((app, runner, sp))
            produced += len(steps) + 2 + len(spans_here)
            if inv_no % 50 == 0:  # heartbeats and atomic-service decisions
                for app_, runner_, _ in runners:
                    hb = LogRecord(time_unix_nano=t, event_name="tasktrail.runner.heartbeat", severity_number=9)
                    hb.attributes.extend([_kv("tasktrail.runner.id", runner_), _kv("tasktrail.runner.atomic_eligible", True)])
                    dec = LogRecord(time_unix_nano=t, event_name="tasktrail.atomic.decision", severity_number=9)
                    dec.attributes.extend([_kv("tasktrail.runner.id", runner_),
                                           _kv("tasktrail.atomic.reason", "NOT_ASSIGNED_SLOT")])
                    logs.extend([(app_, runner_, hb), (app_, runner_, dec)])
                    produced += 2
            while len(logs) >= self.per_request:
                out.append(("logs", self._logs_request(logs[:self.per_request])))
                del logs[:self.per_request]
            while len(spans) >= self.per_request:
                out.append(("traces", self._traces_request(spans[:self.per_request])))
                del spans[:self.per_request]
        if logs:
            out.append(("logs", self._logs_request(logs)))
        if spans:
            out.append(("traces", self._traces_request(spans)))
        return out

    @staticmethod
    def _resource(res, app, runner):
        res.attributes.extend([_kv("service.name", "bench-runner"), _kv("service.namespace", app),
                               _kv("tasktrail.runner.id", runner), _kv("host.name", "bench-host"),
                               _kv("telemetry.mapping.revision", "tasktrail.v1")])

    def _logs_request(self, items) -> bytes:
        req = ExportLogsServiceRequest()
        groups: dict = {}
        for app, runner, rec in items:
            groups.setdefault((app, runner), []).append(rec)
        for (app, runner), recs in groups.items():
            rl = req.resource_logs.add()
            self._resource(rl.resource, app, runner)
            sl = rl.scope_logs.add()
            sl.scope.name = "tasktrail"
            sl.log_records.extend(recs)
        return req.SerializeToString()

    def _traces_request(self, items) -> bytes:
        req = ExportTraceServiceRequest()
        groups: dict = {}
        for app, runner, sp in items:
            groups.setdefault((app, runner), []).append(sp)
        for (app, runner), sps in groups.items():
            rs = req.resource_spans.add()
            self._resource(rs.resource, app, runner)
            ss = rs.scope_spans.add()
            ss.scope.name = "bench"
            ss.spans.extend(sps)
        return req.SerializeToString()


def count_records(signal: str, body: bytes) -> int:
    if signal == "logs":
        m = ExportLogsServiceRequest.FromString(body)
        return sum(len(sl.log_records) for rl in m.resource_logs for sl in rl.scope_logs)
    m = ExportTraceServiceRequest.FromString(body)
    return sum(len(ss.spans) for rs in m.resource_spans for ss in rs.scope_spans)


# Every invocation id starts with INV_MARK and every trace id with TRACE_MARK, so `unique` can make a
# reused request carry new invocations and traces with a byte replace (same lengths, no re-encoding).
INV_MARK = b"c0c0c0c0"
TRACE_MARK = b"\xc0" * 6


def unique(body: bytes, n: int, cycle: int = 0) -> bytes:
    """`body` plus an unknown field 1000 holding `n` (so the server's retry dedupe does not swallow it), and
    for `cycle` > 0 its invocation and trace ids renamed: the k-th pass over a pool of requests sends new
    invocations, not copies of the first pass (which tasktrail would count once: at-least-once dedupe)."""
    if cycle:
        body = body.replace(INV_MARK, b"%08x" % (cycle & 0xFFFFFFFF)).replace(TRACE_MARK, cycle.to_bytes(6, "big"))
    tag = (1000 << 3) | 0
    out = bytearray()
    for v in (tag, n):
        while True:
            b = v & 0x7F
            v >>= 7
            out.append(b | (0x80 if v else 0))
            if not v:
                break
    return body + bytes(out)
