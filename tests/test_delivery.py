"""Histories stay true under real-world delivery (issue 14, kinds 1-3): a record delivered twice counts
once everywhere, clocks that disagree do not reorder a history, one clock tick keeps the order sent.

Real OTel SDK exporters over real sockets into a real `tasktrail serve`; each check is what a user looks
at: the history, the detail's attempts, the list, /metrics, the trace view, the logs, the runners."""
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import start_server, wait_until

TOKEN = {"Authorization": "Bearer tok123"}
S = 1_000_000_000


def history(srv, inv):
    r = srv.get(f"/invocations/{inv}/history")
    assert r.status_code == 200, r.text
    return r.json()


def listed(srv, inv):
    items = srv.get("/invocations", params={"q": inv}).json()["items"]
    return next(i for i in items if i["invocation_id"] == inv)


def metric(srv, name, **labels):
    text = httpx.get(srv.web + "/metrics", timeout=30).text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0 if want else None


def kv(k, v):
    if isinstance(v, int):
        return {"key": k, "value": {"intValue": str(v)}}
    return {"key": k, "value": {"stringValue": str(v)}}


def status_record(inv, status, ts_ns, **attrs):
    a = {"tasktrail.invocation.id": inv, "tasktrail.status": status, **attrs}
    return {"timeUnixNano": str(ts_ns), "eventName": "tasktrail.status", "body": {"stringValue": "tasktrail.status"},
            "attributes": [kv(k, v) for k, v in a.items()]}


def logs_doc(app, runner, records, host="h1"):
    res = {"service.namespace": app, "service.name": "w", "telemetry.mapping.revision": "tasktrail.v1",
           "tasktrail.runner.id": runner, "tasktrail.runner.class": "ThreadRunner", "host.name": host}
    return {"resourceLogs": [{"resource": {"attributes": [kv(k, v) for k, v in res.items()]},
                              "scopeLogs": [{"scope": {"name": "tasktrail"}, "logRecords": records}]}]}


def post_logs(srv, doc):
    r = httpx.post(srv.otlp_http + "/v1/logs", json=doc, headers=TOKEN, timeout=30)
    assert r.status_code == 200, r.text


def test_two_processors_on_one_provider_count_once(server):
    """The OTel SDK with two span processors and two log processors on one provider sends every span and
    log record twice, in different requests: each counts once in the history, attempts, list, /metrics,
    trace view and logs."""
    app = "dup-" + uuid.uuid4().hex[:6]
    # Celery-instrumented spans (the celery-otel dialect), exported by two processors.
    provider = TracerProvider(resource=Resource.create({"service.name": app, "host.name": "w1", "process.pid": 42}))
    for _ in range(2):
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=server.otlp_http + "/v1/traces",
                                                                        headers=TOKEN), schedule_delay_millis=50))
    tracer = provider.get_tracer("opentelemetry.instrumentation.celery")
    task_id = str(uuid.uuid4())
    base = {"messaging.message.id": task_id, "celery.task_name": "shop.add"}
    with tracer.start_as_current_span("apply_async/shop.add", attributes={**base, "celery.action": "apply_async"}):
        # The worker's run span is a child of the publish span (context propagated in the message).
        with tracer.start_as_current_span("run/shop.add", attributes={**base, "celery.action": "run",
                                                                      "celery.state": "SUCCESS",
                                                                      "celery.hostname": "celery@w1"}) as sp:
            trace_id = format(sp.get_span_context().trace_id, "032x")
    provider.force_flush()
    provider.shutdown()
    # tasktrail.v1 records and an application log line through the emitter, with a second processor.
    runner = Runner("r-dup", "ThreadRunner", hostname="w1", pid=43)
    logs = LoggerProvider(resource=Resource.create({"service.namespace": app, **runner.attributes()}))
    for _ in range(2):
        logs.add_log_record_processor(BatchLogRecordProcessor(
            OTLPLogExporter(endpoint=server.otlp_http + "/v1/logs", headers=TOKEN), schedule_delay_millis=50))
    em = Emitter(server.otlp_http, app_id=app, runner=runner, logger_provider=logs)
    inv = "emit-" + uuid.uuid4().hex[:8]
    t0 = time.time_ns() - 10 * S
    em.status(inv, "REGISTERED", task_id="shop.pay", timestamp=t0)
    em.status(inv, "PENDING", timestamp=t0 + S)
    em.status(inv, "RUNNING", attempt=0, timestamp=t0 + 2 * S)
    em.status(inv, "SUCCESS", attempt=0, result=1, timestamp=t0 + 3 * S)
    em.heartbeat(timestamp=t0 + 3 * S)
    em.flush()
    logs.shutdown()

    wait_until(lambda: server.get(f"/invocations/{task_id}").status_code == 200
               and server.get(f"/invocations/{inv}").json()["status"] == "SUCCESS", message="both stored")
    time.sleep(0.5)  # the second processor's copies
    for i, expected in ((task_id, ["REGISTERED", "RUNNING", "SUCCESS"]),
                        (inv, ["REGISTERED", "PENDING", "RUNNING", "SUCCESS"])):
        assert [h["status"] for h in history(server, i)] == expected
        d = server.get(f"/invocations/{i}").json()
        assert d["status"] == "SUCCESS" and len(d["attempts"]) == 1
        assert listed(server, i)["attempts"] == 1
    tr = server.get(f"/traces/{trace_id}").json()
    assert sum(len(ss["spans"]) for rs in tr["resourceSpans"] for ss in rs["scopeSpans"]) == 2
    # Two invocations (the Celery task and the emitter's), each once.
    assert metric(server, "tasktrail_invocations", app=app, status="SUCCESS") == 2
    assert metric(server, "tasktrail_status_transitions_total", app=app, status="SUCCESS") == 2
    assert metric(server, "tasktrail_status_transitions_total", app=app, status="REGISTERED") == 2
    runner = server.get("/runners/r-dup").json()
    rows = httpx.post(server.api + "/sql", json={"sql": f"SELECT heartbeats FROM runners WHERE runner_id = 'r-dup'"},
                      timeout=30).json()["rows"]
    assert runner["runner_id"] == "r-dup" and rows == [[1]]


def test_redelivery_in_other_batches_and_after_a_restart(tmp_path):
    """A collector that re-batches sends the same records in other groupings, and again after tasktrail
    restarts: with a record id or without one (content identity), each counts once."""
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123")
    app = "rebatch"
    t0 = time.time_ns() - 60 * S
    with_id = "with-id-" + uuid.uuid4().hex[:6]
    no_id = "no-id-" + uuid.uuid4().hex[:6]
    recs = []
    for k, (st, att) in enumerate((("REGISTERED", None), ("PENDING", None), ("RUNNING", 0), ("RETRY", 0),
                                   ("PENDING", None), ("RUNNING", 1), ("SUCCESS", 1))):
        extra = {"tasktrail.attempt": att} if att is not None else {}
        recs.append(status_record(with_id, st, t0 + k * S, **extra, **{"tasktrail.record.id": f"ev-{with_id}-{k}"}))
        recs.append(status_record(no_id, st, t0 + k * S, **extra))
    try:
        post_logs(srv, logs_doc(app, "r1", recs[:6]))
        post_logs(srv, logs_doc(app, "r1", recs[4:]))            # overlaps the first request
        post_logs(srv, logs_doc(app, "r1", list(reversed(recs))))  # everything again, other order
        for inv in (with_id, no_id):
            hist = [h["status"] for h in history(srv, inv)]
            assert hist == ["REGISTERED", "PENDING", "RUNNING", "RETRY", "PENDING", "RUNNING", "SUCCESS"], hist
            assert listed(srv, inv)["attempts"] == 2
    finally:
        srv.stop()
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        post_logs(srv, logs_doc(app, "r1", recs[::3]))
        for inv in (with_id, no_id):
            assert len(history(srv, inv)) == 7
            d = srv.get(f"/invocations/{inv}").json()
            assert d["status"] == "SUCCESS" and len(d["attempts"]) == 2 and listed(srv, inv)["attempts"] == 2
        assert metric(srv, "tasktrail_status_transitions_total", app=app, status="RUNNING") == 4
    finally:
        srv.stop()


def test_clocks_that_disagree(server):
    """The publisher's clock 2 s ahead of the worker's, and a worker whose clock steps back during a task:
    the histories follow causality, durations are not negative, the moved records say by how much, and
    the detail, list, /metrics and timeline agree on the current status."""
    app = "skew-" + uuid.uuid4().hex[:6]
    now = time.time_ns() - 30 * S
    ahead, back, retried = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("ahead", "back", "retried"))
    publisher = [status_record(ahead, "REGISTERED", now + 2 * S, **{"tasktrail.task.id": "shop.ship"})]
    worker = [status_record(ahead, "PENDING", now + int(0.1 * S)), status_record(ahead, "RUNNING", now + int(0.2 * S)),
              status_record(ahead, "SUCCESS", now + int(1.2 * S))]
    publisher.append(status_record(back, "REGISTERED", now))
    worker += [status_record(back, "RUNNING", now + 5 * S), status_record(back, "SUCCESS", now + 4 * S)]
    # A retry on another host whose clock is behind: attempt 1 reads earlier than attempt 0's outcome.
    publisher.append(status_record(retried, "REGISTERED", now))
    worker += [status_record(retried, "RUNNING", now + 10 * S, **{"tasktrail.attempt": 0}),
               status_record(retried, "RETRY", now + 11 * S, **{"tasktrail.attempt": 0})]
    other = [status_record(retried, "RUNNING", now + 9 * S, **{"tasktrail.attempt": 1}),
             status_record(retried, "SUCCESS", now + int(9.5 * S), **{"tasktrail.attempt": 1})]
    post_logs(server, logs_doc(app, "worker-a", worker, host="wa"))       # the worker's records arrive first
    post_logs(server, logs_doc(app, "worker-b", other, host="wb"))
    post_logs(server, logs_doc(app, "client", publisher, host="pub"))
    for inv, expected in ((ahead, ["REGISTERED", "PENDING", "RUNNING", "SUCCESS"]),
                          (back, ["REGISTERED", "RUNNING", "SUCCESS"]),
                          (retried, ["REGISTERED", "RUNNING", "RETRY", "RUNNING", "SUCCESS"])):
        hist = history(server, inv)
        assert [h["status"] for h in hist] == expected, (inv, hist)
        times = [h["timestamp"] for h in hist]
        assert times == sorted(times)
        d = server.get(f"/invocations/{inv}").json()
        assert d["status"] == "SUCCESS" and d["duration_s"] >= 0 and listed(server, inv)["status"] == "SUCCESS"
        assert d["clock_adjusted"] and d["clock_adjusted"]["max_s"] > 0
        moved = [h for h in hist if h["clock_adjustment_s"]]
        assert moved and all(h["sent_timestamp"] < h["timestamp"] for h in moved)
    ahead_hist = history(server, ahead)
    # The worker's clock is 1.8 s behind at least: its records move together, its run keeps its 1 s.
    run, done = ahead_hist[2], ahead_hist[3]
    assert abs(ahead_hist[1]["clock_adjustment_s"] - 1.9) < 1e-6
    span = datetime.fromisoformat(done["timestamp"].rstrip("Z")) - datetime.fromisoformat(run["timestamp"].rstrip("Z"))
    assert abs(span.total_seconds() - 1.0) < 1e-6
    retried_d = server.get(f"/invocations/{retried}").json()
    assert [a["status"] for a in retried_d["attempts"]] == ["RETRY", "SUCCESS"]
    assert metric(server, "tasktrail_invocations", app=app, status="SUCCESS") == 3
    assert metric(server, "tasktrail_invocations", app=app, status="RUNNING") == 0
    tl = server.get("/timeline", params={"since": datetime.fromtimestamp(now / S - 60, timezone.utc).isoformat(),
                                         "until": datetime.fromtimestamp(now / S + 60, timezone.utc).isoformat()}).json()
    seen = {}
    for lane in tl["lanes"]:
        for sub in lane["sublanes"]:
            for e in sub:
                if e["invocation_id"] in (ahead, back, retried):
                    seen.setdefault(e["invocation_id"], []).extend(e["segments"])
                    assert all(s["end"] >= s["start"] for s in e["segments"])
    # Nothing reads as still running on the timeline.
    assert seen and not any(s["ongoing"] for segs in seen.values() for s in segs)
    page = httpx.get(server.web + f"/invocations/{ahead}", timeout=30).text
    assert "Times adjusted" in page and re.search(r"\+<span class=\"dur\"[^>]*>1\.900 s", page)


def test_one_clock_tick(server):
    """A retried task whose seven statuses share one timestamp: with the emitter's seq the order sent is the
    order shown; without seq (plain OTLP/JSON) the order they arrived in; and detail, list, /metrics agree."""
    app = "tick-" + uuid.uuid4().hex[:6]
    tick = time.time_ns() - 20 * S
    em = Emitter(server.otlp_http, app_id=app, runner=Runner("tick-r", "ThreadRunner"), protocol="http/protobuf",
                 token="tok123")
    seq_inv, plain_inv = "tick-seq-" + uuid.uuid4().hex[:6], "tick-plain-" + uuid.uuid4().hex[:6]
    order = [("REGISTERED", None), ("PENDING", None), ("RUNNING", 0), ("RETRY", 0), ("PENDING", None),
             ("RUNNING", 1), ("PAUSED", 1), ("RUNNING", 1), ("FAILED", 1)]
    for st, att in order:
        em.status(seq_inv, st, attempt=att, timestamp=tick)
    em.flush()
    em.shutdown()
    post_logs(server, logs_doc(app, "tick-plain", [
        status_record(plain_inv, st, tick, **({"tasktrail.attempt": att} if att is not None else {}))
        for st, att in order]))
    wait_until(lambda: server.get(f"/invocations/{seq_inv}").status_code == 200, message="stored")
    for inv in (seq_inv, plain_inv):
        assert [h["status"] for h in history(server, inv)] == [s for s, _ in order]
        d = server.get(f"/invocations/{inv}").json()
        assert d["status"] == "FAILED" == listed(server, inv)["status"]
        assert d["duration_s"] == 0
    seqs = [h["seq"] for h in history(server, seq_inv)]
    assert all(s is not None for s in seqs) and seqs == sorted(seqs)
    assert metric(server, "tasktrail_invocations", app=app, status="FAILED") == 2
    assert metric(server, "tasktrail_invocations", app=app, status="RETRY") == 0
