"""Logs, live tail, log explorer, runs, ops, /metrics and retention, against a served tasktrail."""
import json
import re
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from tasktrail.demo import RUSTVELLO_RUN
from tasktrail.proto.emitter import Emitter, Runner

from . import pynenc_fixture_store
from .helpers import PB, fixture_requests, sql, start_server, wait_until


def app_logger(srv, app="logs-app", runner="w-1", parent="r-1"):
    provider = LoggerProvider(resource=Resource.create({
        "service.name": app, "tasktrail.runner.id": runner, "tasktrail.runner.parent.id": parent}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=srv.otlp_http + "/v1/logs", headers={"authorization": "Bearer tok123"})))
    return provider


LEVEL = {"DEBUG": SeverityNumber.DEBUG, "INFO": SeverityNumber.INFO, "WARN": SeverityNumber.WARN,
         "ERROR": SeverityNumber.ERROR}


def emit(provider, message, level="INFO", **attrs):
    provider.get_logger("app").emit(body=message, severity_text=level, severity_number=LEVEL[level],
                                    attributes=attrs)


def test_log_search_filters_and_pages(server):
    p = app_logger(server)
    for i in range(30):
        emit(p, f"charging card {i}", "INFO", invocation_id="inv-a", task_id="shop.pay")
    emit(p, "card declined for order 7", "ERROR", invocation_id="inv-b", task_id="shop.pay")
    emit(p, "Retrying soon", "WARN", invocation_id="inv-b", task_id="shop.pay")
    p.shutdown()
    wait_until(lambda: len(server.get("/logs", params={"limit": 100}).json()["items"]) == 32, message="32 lines")
    assert [l["message"] for l in server.get("/logs", params={"q": "DECLINED"}).json()["items"]] == [
        "card declined for order 7"]
    assert {l["message"] for l in server.get("/logs", params={"level": "warn"}).json()["items"]} == {
        "card declined for order 7", "Retrying soon"}
    assert len(server.get("/logs", params={"invocation": "inv-a", "limit": 100}).json()["items"]) == 30
    lines = server.get("/logs", params={"runner": "r-1", "limit": 100}).json()["items"]
    assert len(lines) == 32 and {l["worker_id"] for l in lines} == {"w-1"}
    seen, cursor = [], None
    while True:
        page = server.get("/logs", params={"limit": 7, **({"cursor": cursor} if cursor else {})}).json()
        seen += [l["message"] for l in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 32 and len(set(seen)) == 32
    assert server.get("/logs", params={"level": "LOUD"}).status_code == 400


def test_tail_streams_new_lines_within_a_second(server):
    got, opened = [], threading.Event()

    def listen():
        with httpx.stream("GET", server.api + "/logs/tail", params={"q": "tail-me", "level": "INFO"},
                          timeout=30) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            opened.set()
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "log":
                    got.append((time.monotonic(), json.loads(line[6:])))
                    if len(got) == 2:
                        return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert opened.wait(10)
    time.sleep(0.3)
    p = app_logger(server)
    emit(p, "ignored: not matching", "INFO")
    emit(p, "tail-me debug, below the level", "DEBUG")
    sent = time.monotonic()
    emit(p, "tail-me first", "INFO", invocation_id="inv-t")
    emit(p, "tail-me second", "ERROR")
    p.shutdown()
    t.join(10)
    assert [g[1]["message"] for g in got] == ["tail-me first", "tail-me second"]
    assert got[0][1]["invocation_id"] == "inv-t"
    # The runner context that wrote it, labelled as every page labels runners (the tail's rows use it).
    assert all("w-1" in g[1]["runner_label"] for g in got)
    assert got[-1][0] - sent < 1.0, "a committed line reaches the tail within a second"


def test_explorer_resolves_real_pynenc_logs(server):
    names = ["text.log", "json.log", "ppr_text.log", "ppr_json.log", "trig_text.log", "trig_json.log"]
    loaded = pynenc_fixture_store.load(server, names)
    wait_until(lambda: all(server.get(f"/invocations/{i}").status_code == 200 for i in loaded["finals"]),
               timeout=20, message="the pynenc facts")
    for name in names:
        text = (pynenc_fixture_store.LOGS / name).read_text()
        res = httpx.post(server.api + "/log-explorer", content=text, headers={"Content-Type": "text/plain"},
                         timeout=60).json()
        lines = res["lines"]
        assert len(lines) > 40
        checked_runners = checked_invs = 0
        for line in lines:
            for r in line["runners"]:
                assert r["resolved"], (name, line["raw"], r)
                assert r["id"].startswith(r["value"]) and r["id"] in loaded["runners"]
                checked_runners += 1
            inv = line["invocation"]
            if inv:
                assert inv["resolved"] and inv["id"] == inv["value"]
                assert inv["status"] == server.get(f"/invocations/{inv['id']}").json()["status"]
                checked_invs += 1
            for ref in line["refs"]:
                if ref["kind"] == "invocation" and ref["value"] in loaded["finals"]:
                    assert ref["resolved"] and ref["link"] == f"/invocations/{ref['value']}"
                if ref["kind"] == "task" and ref["resolved"]:
                    assert server.get("/invocations", params={"task": ref["value"]}).json()["items"]
        assert checked_runners > 20 and checked_invs > 10, name
        # Tracebacks stay with their line.
        if name == "text.log":
            exc = next(l for l in lines if l["message"].endswith("EXCEPTION"))
            assert exc["continuation"] and exc["continuation"][0].startswith("Traceback")
    # Unknown ids are shown as such, never guessed.
    res = httpx.post(server.api + "/log-explorer", json={"text": (
        "2026-11-22 10:25:22.648+00:00 INFO     pynenc.x [TR(deadbeef)00000000-0000-4000-8000-000000000000:x.y] "
        "invocation:00000000-0000-4000-8000-000000000000 status:running")}).json()
    line = res["lines"][0]
    assert line["runners"][0]["resolved"] is False and line["invocation"]["resolved"] is False
    assert res["timeline"] is None


def test_explorer_resolves_live_rustvello_lines(server, tmp_path):
    proc = subprocess.run([sys.executable, str(RUSTVELLO_RUN), server.otlp_http,
                           "tok123", str(tmp_path / "rv.db"), "5"], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    wait_until(lambda: all(server.get(f"/invocations/{i}").status_code == 200 for i in theirs), message="rv data")
    stderr = proc.stderr
    assert "[R]" in stderr
    res = httpx.post(server.api + "/log-explorer", content=stderr, headers={"Content-Type": "text/plain"}).json()
    rv_lines = [l for l in res["lines"] if l["format"] == "rustvello"]
    with_inv = [l for l in rv_lines if l["invocation"]]
    assert len(with_inv) >= len(theirs)
    runners = {r["runner_id"] for r in server.get("/runners").json()}
    for line in rv_lines:
        for r in line["runners"]:
            assert r["resolved"] and r["id"] in runners and r["id"].startswith(r["value"])
    for line in with_inv:
        assert line["invocation"]["resolved"]
        assert line["invocation"]["status"] == theirs.get(line["invocation"]["id"], line["invocation"]["status"])
    assert res["timeline"] and set(theirs) <= set(res["timeline"]["invocations"])


def test_runs_and_ops(server):
    em = Emitter(f"http://{server.otlp_grpc}", "runs-app", Runner("r-9", "ThreadRunner"), token="tok123")
    now = datetime.now(timezone.utc)
    parent, child, triggered, running = (str(uuid.uuid4()) for _ in range(4))
    em.heartbeat(timestamp=now - timedelta(seconds=60))
    em.heartbeat(timestamp=now - timedelta(seconds=30))
    em.status(parent, "REGISTERED", task_id="t.parent", timestamp=now - timedelta(seconds=50))
    em.status(parent, "RUNNING", timestamp=now - timedelta(seconds=49))
    em.status(child, "REGISTERED", task_id="t.child", parent_invocation_id=parent, timestamp=now - timedelta(seconds=48))
    em.status(child, "RUNNING", timestamp=now - timedelta(seconds=47))
    em.status(child, "RETRY", timestamp=now - timedelta(seconds=46))
    em.status(child, "RUNNING", timestamp=now - timedelta(seconds=45))
    em.status(child, "SUCCESS", timestamp=now - timedelta(seconds=44))
    em.status(parent, "FAILED", error_type="E", timestamp=now - timedelta(seconds=40))
    em.event("ev-r", "go", {}, emitted_by_invocation_id=parent, timestamp=now - timedelta(seconds=39))
    em.status(triggered, "REGISTERED", task_id="t.reactor", parent_event_id="ev-r", timestamp=now - timedelta(seconds=38))
    em.trigger_run("tr-r", task_id="t.reactor", event_ids=["ev-r"], triggered_invocation_id=triggered,
                   participants=[{"context_type": "EventContext", "event_id": "ev-r"}], timestamp=now - timedelta(seconds=38))
    em.status(running, "REGISTERED", task_id="t.long", timestamp=now - timedelta(seconds=20))
    em.status(running, "RUNNING", timestamp=now - timedelta(seconds=19))
    em.atomic_decision("ASSIGNED", timestamp=now - timedelta(seconds=40))
    em.atomic_decision("ASSIGNED", timestamp=now - timedelta(seconds=10))
    assert em.flush()
    em.shutdown()
    wait_until(lambda: len(server.get("/runs", params={"app": "runs-app"}).json()["items"]) == 4, message="runs")
    runs = server.get("/runs", params={"app": "runs-app"}).json()
    by = {r["invocation_id"]: r for r in runs["items"]}
    assert [r["invocation_id"] for r in runs["items"]] == [running, triggered, child, parent]  # started, newest first
    assert by[child]["started_by"] == {"kind": "child", "ref": parent} and by[child]["retried"]
    # Started by the event, through the trigger run that names it (shown by its condition, here none).
    assert by[triggered]["started_by"] == {"kind": "event", "ref": "ev-r", "trigger_run_id": "tr-r",
                                           "trigger_id": None, "condition_ids": []}
    assert by[parent]["started_by"] == {"kind": "submitted", "ref": None}
    assert by[child]["duration_s"] == pytest.approx(3.0, abs=0.01) and by[running]["duration_s"] is None
    assert runs["running"] is True
    failed = server.get("/runs", params={"app": "runs-app", "status": "FAILED"}).json()["items"]
    assert [r["invocation_id"] for r in failed] == [parent]
    ops = server.get("/ops", params={"app": "runs-app"}).json()
    assert [i["invocation_id"] for i in ops["in_flight"]] == [running]
    assert 18 < ops["in_flight"][0]["elapsed_s"] < 120
    assert [f["invocation_id"] for f in ops["recent_failures"]] == [parent]
    hb = ops["heartbeats"][0]
    assert hb["runner_id"] == "r-9" and hb["every_s"] == pytest.approx(30, abs=0.01)
    assert ops["scheduler"]["every_s"] == pytest.approx(30, abs=0.01) and ops["scheduler"]["late"] is False
    assert ops["ingest"]["requests_1m"] >= 1 and ops["ingest"]["queue_capacity"] > 0


def test_metrics_match_the_api(server):
    for sig, body in fixture_requests():
        assert httpx.post(f"{server.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
    assert httpx.post(f"{server.otlp_http}/v1/logs", content=b"\xff\xff", headers=PB).status_code == 400
    time.sleep(5.1)  # past the collector's cache
    text = httpx.get(server.web + "/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    counts = server.get("/overview", params={"app": "demo"}).json()["counts_by_status"]
    inv = {s.labels["status"]: s.value for s in fams["tasktrail_invocations"].samples if s.labels["app"] == "demo"}
    assert inv == counts  # every status, 0 included
    tr = {s.labels["status"]: s.value for s in fams["tasktrail_status_transitions"].samples
          if s.name.endswith("_total")}
    assert tr == dict(sql(server, "select status, count(*) from transitions group by 1"))
    req = sum(s.value for s in fams["tasktrail_ingest_requests"].samples if s.name.endswith("_total"))
    assert req == sql(server, "select count(*) from ingest_ledger")[0][0] == len(fixture_requests())
    rej = [s for s in fams["tasktrail_ingest_rejected_requests"].samples if s.name.endswith("_total") and s.value]
    assert [(s.labels["reason"], s.value) for s in rej] == [("bad_data", 1.0)]
    dur = [s for s in fams["tasktrail_task_duration_seconds"].samples
           if s.name.endswith("_count") and s.labels["task"] == "python::rvapp.add"]
    assert dur[0].value == 4
    assert "tasktrail_store_batch_commit_seconds" in fams and "tasktrail_ingest_queue_records" in fams
    # The figures come from the log: a restart keeps them.
    server.stop()
    again = start_server(server.db, "--ingest-token", "tok123")
    try:
        fams2 = {f.name: f for f in text_string_to_metric_families(httpx.get(again.web + "/metrics").text)}
        req2 = sum(s.value for s in fams2["tasktrail_ingest_requests"].samples if s.name.endswith("_total"))
        assert req2 == req
    finally:
        again.stop()


def test_retention_keeps_recent_and_failed_and_ingest_goes_on(tmp_path):
    from tasktrail.ingest.pipeline import Ingestor
    from tasktrail.store.duckdb import DuckDBStore
    from tasktrail.store.retention import RetentionPolicy

    db = str(tmp_path / "r.duckdb")
    srv = start_server(db, "--ingest-token", "tok123")
    em = Emitter(f"http://{srv.otlp_grpc}", "ret", Runner("r", "ThreadRunner"), token="tok123")
    now = datetime.now(timezone.utc)
    ids = {}
    for name, age, final in (("old_ok", 100, "SUCCESS"), ("old_failed", 100, "FAILED"),
                             ("ancient_failed", 200, "FAILED"), ("recent", 1, "SUCCESS")):
        ids[name] = str(uuid.uuid4())
        t0 = now - timedelta(days=age)
        em.status(ids[name], "REGISTERED", task_id="t", timestamp=t0)
        em.status(ids[name], final, timestamp=t0 + timedelta(seconds=1))
    assert em.flush()
    em.shutdown()
    wait_until(lambda: srv.get(f"/invocations/{ids['recent']}").status_code == 200, message="data")
    srv.stop()
    # Retention counts from arrival too (what was acknowledged today stays a whole window): make the
    # store say all of it arrived 200 days ago.
    import duckdb
    con = duckdb.connect(db)
    con.execute("UPDATE ingest_ledger SET received_at = received_at - INTERVAL 200 DAY")
    con.close()
    # Retention runs at start: 90 days kept, failed ones 150.
    srv = start_server(db, "--ingest-token", "tok123", "--retention-days", "90", "--keep-failed-days", "150")
    try:
        wait_until(lambda: srv.get(f"/invocations/{ids['old_ok']}").status_code == 404, message="retention")
        assert srv.get(f"/invocations/{ids['recent']}").json()["status"] == "SUCCESS"
        assert srv.get(f"/invocations/{ids['old_failed']}").json()["status"] == "FAILED"
        assert srv.get(f"/invocations/{ids['ancient_failed']}").status_code == 404
        listed = {i["invocation_id"] for i in srv.get("/invocations", params={"app": "ret"}).json()["items"]}
        assert listed == {ids["recent"], ids["old_failed"]}  # the list's cache follows retention
    finally:
        srv.stop()
    # Ingest goes on while a retention pass runs (its own connection; appends never conflict).
    store = DuckDBStore(db)
    ing = Ingestor(store)
    reqs = fixture_requests()
    store._con.execute("INSERT INTO log_records (batch, ts, app_id, invocation_id, body) SELECT 1, now()::TIMESTAMP,"
                       " 'ret', 'capped', 'line ' || i FROM range(50000) t(i)")
    done = threading.Event()
    report = {}
    t = threading.Thread(target=lambda: (report.update(r=store.retain(RetentionPolicy(90, 150, 100))), done.set()))
    t.start()
    acks = []
    for sig, body in reqs:
        rows, n, entry = ing.prepare(sig, body, "protobuf", "test")
        acks.append(store.submit(rows, n, entry).result(10))
    t.join(60)
    assert done.is_set() and report["r"].truncated_invocations == 1
    assert all(not a.duplicate for a in acks)
    assert store.query("select count(*) from transitions where app_id = 'demo'").rows[0][0] == 24
    marker = store.query("select body from log_records where invocation_id = 'capped' "
                         "and event_name = 'tasktrail.truncated'").rows
    assert marker and re.search(r"49900 log lines .* removed", marker[0][0])
    assert store.query("select count(*) from log_records where invocation_id = 'capped'").rows[0][0] == 101
    store.close()


def test_lines_join_their_invocation_by_trace_context_and_colours_are_stripped(server):
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    tp = TracerProvider(resource=Resource.create({"service.name": "traced"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.otlp_http + "/v1/traces",
                                                               headers={"authorization": "Bearer tok123"})))
    lp = app_logger(server, app="traced")
    with tp.get_tracer("t").start_as_current_span("work", attributes={"tasktrail.invocation.id": "inv-traced"}):
        # No invocation attribute: only the trace context ties this line to the invocation.
        lp.get_logger("app").emit(body="inside the span", severity_text="INFO", severity_number=SeverityNumber.INFO,
                                  context=trace.set_span_in_context(trace.get_current_span()))
    tp.shutdown()
    lp.shutdown()
    lines = wait_until(lambda: server.get("/logs", params={"invocation": "inv-traced"}).json()["items"],
                       message="the traced line")
    assert [(l["message"], l["invocation_id"]) for l in lines] == [("inside the span", "inv-traced")]
    # pynenc's coloured TEXT format parses like the plain one.
    line = (pynenc_fixture_store.LOGS / "text.log").read_text().splitlines()[1]
    coloured = "\x1b[32m" + line[:29] + "\x1b[0m \x1b[1;32mINFO    \x1b[0m" + line[37:]
    plain, ansi = (httpx.post(server.api + "/log-explorer", json={"text": t}).json()["lines"][0] for t in (line, coloured))
    assert ansi["runners"] == plain["runners"] and ansi["refs"] == plain["refs"] and ansi["level"] == "INFO"
