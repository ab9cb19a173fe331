"""The OTel SDK's own exporters and the tasktrail emitter deliver every tasktrail.v1 entity."""
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import sql, wait_until


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_emitter_delivers_every_entity(server, protocol):
    endpoint = f"http://{server.otlp_grpc}" if protocol == "grpc" else server.otlp_http
    app = f"shop-{protocol.split('/')[0]}"
    runner = Runner("runner-1", "PersistentProcessRunner", hostname="h1", pid=100)
    worker = Runner("worker-1", "PPRWorker", parent_id="runner-1", hostname="h1", pid=101)
    em = Emitter(endpoint=endpoint, app_id=app, runner=runner, protocol=protocol, token="tok123")
    t0 = datetime.now(timezone.utc) - timedelta(seconds=5)
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    parent, child = str(uuid.uuid4()), str(uuid.uuid4())
    em.runner_started(timestamp=at(0))
    em.runner_started(worker, timestamp=at(0.1))
    em.heartbeat(atomic_eligible=True, consumed_queues=["default", "fast"], timestamp=at(0.2))
    em.status(parent, "registered", task_id="shop.checkout", arguments={"cart": 7}, workflow_id=parent,
              workflow_type="shop.checkout", timestamp=at(1))
    em.status(parent, "PENDING", runner=worker, owner_runner_id="worker-1", timestamp=at(1.1))
    em.status(parent, "RUNNING", runner=worker, owner_runner_id="worker-1", attempt=0, timestamp=at(1.2))
    em.status(child, "REGISTERED", task_id="shop.pay", runner=worker, parent_invocation_id=parent,
              workflow_id=parent, workflow_type="shop.checkout", timestamp=at(1.3))
    em.status(child, "RUNNING", runner=worker, attempt=0, timestamp=at(1.4))
    em.status(child, "FAILED", runner=worker, attempt=0, error_type="CardDeclined", error_message="no funds",
              error_traceback="Traceback (most recent call last):\n  ...\nCardDeclined: no funds", timestamp=at(1.5))
    em.status(parent, "SUCCESS", runner=worker, result=["ok", 1], duration_s=0.9, timestamp=at(2.1))
    em.atomic_decision("LATE_START", runner=runner, cycle_start=at(0), slot_start=at(0), slot_end=at(60),
                       position=0, runner_count=1, assigned_runner_id="runner-1",
                       message="started_at consumed 60% of slot (max=50%)", timestamp=at(2.2))
    em.atomic_execution("as-run-1", "COMPLETED", runner=runner, start=at(2.3), end=at(2.4), timestamp=at(2.4))
    em.event("ev-1", "order.paid", {"order": 7}, matched_condition_ids=["c1"], valid_condition_ids=["vc1"],
             emitted_by_invocation_id=parent, emitted_by_task_id="shop.checkout",
             emitted_by_runner_id="worker-1", timestamp=at(2.5))
    em.trigger_run("tr-1", trigger_id="trig-1", task_id="shop.ship", logic="and", condition_ids=["c1"],
                   event_ids=["ev-1"], source_invocation_ids=[parent], triggered_invocation_id="inv-ship",
                   arguments_preview="{'order': 7}", claimed_at=at(2.6), executed_at=at(2.7),
                   participants=[{"context_type": "EventContext", "event_id": "ev-1"}],
                   atomic_service_run_id="as-run-1", atomic_service_runner_id="runner-1", timestamp=at(2.7))
    em.runner_stopped(worker, timestamp=at(3))
    assert em.flush()
    em.shutdown()

    detail = wait_until(lambda: server.get(f"/invocations/{parent}", params={"app": app}).json()
                        if server.get(f"/invocations/{parent}").status_code == 200 else None,
                        message="the parent invocation")
    assert detail["status"] == "SUCCESS" and detail["task_id"] == "shop.checkout"
    assert detail["arguments"] == '{"cart": 7}' and detail["result"] == '["ok", 1]'
    assert detail["workflow"]["role"] == "root" and detail["attempts"][0]["worker_id"] == "worker-1"
    hist = server.get(f"/invocations/{parent}/history").json()
    assert [h["status"] for h in hist] == ["REGISTERED", "PENDING", "RUNNING", "SUCCESS"]
    assert hist[1]["owner_runner_id"] == "worker-1" and hist[1]["runner_id"] == "runner-1"
    assert hist[1]["source"] == "tasktrail.v1"

    c = server.get(f"/invocations/{child}").json()
    assert c["status"] == "FAILED" and c["parent_invocation_id"] == parent
    assert c["error"] == {"type": "CardDeclined", "message": "no funds",
                          "traceback": "Traceback (most recent call last):\n  ...\nCardDeclined: no funds"}
    fam = server.get(f"/invocations/{child}/family").json()
    assert fam["root_id"] == parent
    assert {"parent": parent, "child": child, "kind": "direct"} in fam["edges"]
    assert {"parent": parent, "child": "inv-ship", "kind": "trigger"} in fam["edges"]

    runners = {r["runner_id"]: r for r in server.get("/runners", params={"app": app}).json()}
    assert runners["runner-1"]["runner_class"] == "PersistentProcessRunner" and runners["runner-1"]["alive"]
    assert runners["runner-1"]["last_heartbeat"] is not None
    assert runners["worker-1"]["parent_runner_id"] == "runner-1" and runners["worker-1"]["stopped_at"]
    assert not runners["worker-1"]["alive"]
    hb = server.get("/runners/runner-1").json()["heartbeats"][0]
    assert hb["atomic_eligible"] is True and hb["consumed_queues"] == ["default", "fast"]

    dec = server.get("/atomic-services/decisions", params={"app": app}).json()
    assert [(d["runner_id"], d["reason"], d["position"], d["runner_count"]) for d in dec] == [
        ("runner-1", "LATE_START", 0, 1)]
    assert dec[0]["message"].startswith("started_at consumed")
    ex = server.get("/atomic-services/executions", params={"app": app}).json()
    assert [(e["run_id"], e["runner_id"], e["status"]) for e in ex] == [("as-run-1", "runner-1", "COMPLETED")]
    assert ex[0]["start_ts"] < ex[0]["end_ts"]
    ev = server.get("/events", params={"app": app, "code": "order.paid"}).json()
    assert ev[0]["event_id"] == "ev-1" and ev[0]["payload"] == '{"order": 7}'
    assert ev[0]["matched_condition_ids"] == ["c1"] and ev[0]["emitted_by_invocation_id"] == parent
    tr = server.get("/trigger-runs", params={"app": app}).json()
    assert tr[0]["trigger_run_id"] == "tr-1" and tr[0]["source_invocation_ids"] == [parent]
    assert tr[0]["triggered_invocation_id"] == "inv-ship" and tr[0]["atomic_service_run_id"] == "as-run-1"


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_sdk_span_exporters(server, kind):
    exporter = (GrpcSpanExporter(endpoint=server.otlp_grpc, insecure=True, headers={"authorization": "Bearer tok123"})
                if kind == "grpc" else
                HttpSpanExporter(endpoint=server.otlp_http + "/v1/traces", headers={"authorization": "Bearer tok123"}))
    provider = TracerProvider(resource=Resource.create({"service.name": f"svc-{kind}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        with tracer.start_as_current_span("inner", attributes={"tasktrail.invocation.id": "inv-42", "n": 3}):
            time.sleep(0.01)
    provider.shutdown()
    trace_id = format(outer.get_span_context().trace_id, "032x")
    trace = wait_until(lambda: server.get(f"/traces/{trace_id}").json() if
                       server.get(f"/traces/{trace_id}").status_code == 200 else None, message="trace")
    spans = {s["name"]: s for rs in trace["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]}
    assert set(spans) == {"outer", "inner"}
    assert spans["inner"]["parentSpanId"] == spans["outer"]["spanId"]
    assert {"key": "n", "value": {"intValue": "3"}} in spans["inner"]["attributes"]
    assert sql(server, "select invocation_id from spans where name = 'inner'") == [["inv-42"]]
    assert sql(server, "select app_id from spans limit 1") == [[f"svc-{kind}"]]
