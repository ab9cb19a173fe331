"""Anomalies (a first cut of issue 9): exactly the orphaned, stuck and slow invocations are flagged, each
saying why. Driven by the tasktrail.v1 emitter with controlled timestamps; the live-runner test
(a rustvello worker killed mid-task) is still to be written."""
from datetime import datetime, timedelta, timezone

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import wait_flagged, wait_until


def test_orphaned_pending_and_slow_are_flagged_and_nothing_else(server):
    now = datetime.now(timezone.utc)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    gone = Runner("runner-gone", "PersistentProcessRunner", hostname="h1", pid=1)
    live = Runner("runner-live", "PersistentProcessRunner", hostname="h2", pid=2)
    em = Emitter(endpoint=server.otlp_http, app_id="shop", runner=live, protocol="http/protobuf", token="tok123")
    em.runner_started(gone, timestamp=ago(1300))
    em.runner_started(timestamp=ago(1300))
    for k in range(30):  # the task's history: 30 runs of about 3 s ('fine' is slow only after some 9 s)
        inv = f"quick-{k}"
        em.status(inv, "REGISTERED", task_id="shop.quick", timestamp=ago(1200 - k))
        em.status(inv, "RUNNING", attempt=0, timestamp=ago(1200 - k) + timedelta(milliseconds=10))
        em.status(inv, "SUCCESS", timestamp=ago(1197 - k))
    em.status("orphan", "REGISTERED", task_id="shop.pay", runner=gone, timestamp=ago(1250))
    em.status("orphan", "RUNNING", attempt=0, runner=gone, timestamp=ago(1240))
    em.runner_stopped(gone, timestamp=ago(1230))  # its process went away mid-task
    em.status("stuck", "REGISTERED", task_id="shop.ship", timestamp=ago(900))
    em.status("stuck", "PENDING", timestamp=ago(899))
    em.status("slow", "REGISTERED", task_id="shop.quick", timestamp=ago(70))
    em.status("slow", "RUNNING", attempt=0, timestamp=ago(60))
    em.status("fine", "REGISTERED", task_id="shop.quick", timestamp=ago(1))
    em.status("fine", "RUNNING", attempt=0, timestamp=ago(0.5))
    em.heartbeat(timestamp=ago(0))
    assert em.flush()

    def flagged():
        a = server.get("/anomalies").json()
        return a if len(a["items"]) >= 3 else None

    a = wait_until(flagged, timeout=20, message="anomalies")
    by = {(x["kind"], x.get("invocation_id") or x.get("runner_id")): x for x in a["items"]}
    assert set(by) == {("orphaned", "orphan"), ("pending_too_long", "stuck"), ("slow", "slow")}, by
    assert "runner-gone" in by[("orphaned", "orphan")]["why"] and "stopped" in by[("orphaned", "orphan")]["why"]
    assert "p99" in by[("slow", "slow")]["why"] and by[("slow", "slow")]["link"] == "/invocations/slow"
    assert a["counts"] == {"orphaned": 1, "pending_too_long": 1, "slow": 1}
    # The page lists them, filtered by kind, and its twin is the API's answer.
    import httpx
    page = httpx.get(server.web + "/anomalies", params={"kind": "orphaned"}).text
    assert page.count('<tr data-kind="orphaned"') == 1 and 'data-kind="slow"' not in page.split("<tbody>")[1]
    assert 'data-invocation-id="orphan"' in page
    twin = httpx.get(server.web + "/anomalies?format=json").json()
    assert {(x["kind"], x.get("invocation_id")) for x in twin["items"]} == set(by)
    em.shutdown()


def test_failure_spike_and_silent_scheduler_are_flagged(server):
    now = datetime.now(timezone.utc)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    r = Runner("runner-s", "PersistentProcessRunner", hostname="h3", pid=3)
    em = Emitter(endpoint=server.otlp_http, app_id="mail", runner=r, protocol="http/protobuf", token="tok123")
    em.runner_started(timestamp=ago(7200))

    def run(inv, start, outcome):
        em.status(inv, "REGISTERED", task_id="mail.send", timestamp=ago(start))
        em.status(inv, "RUNNING", attempt=0, timestamp=ago(start - 0.1))
        em.status(inv, outcome, error_type="SMTPError" if outcome == "FAILED" else None, timestamp=ago(start - 0.2))
    for k in range(100):  # the day before: 2 failures in 100
        run(f"base-{k}", 3600 + k * 30, "FAILED" if k in (10, 60) else "SUCCESS")
    for k in range(12):  # the last 15 minutes: 9 of 12 fail
        run(f"now-{k}", 600 - k * 30, "FAILED" if k < 9 else "SUCCESS")
    for k in range(10):  # the scheduler fired every second, then stopped 60 s ago
        em.atomic_decision("claimed", timestamp=ago(70 - k))
    em.heartbeat(timestamp=ago(0))
    assert em.flush()
    # Another app whose scheduler stopped with its runner (a stop between rounds): not an anomaly.
    r2 = Runner("runner-done", "ThreadRunner", hostname="h4", pid=4)
    em2 = Emitter(endpoint=server.otlp_http, app_id="batch", runner=r2, protocol="http/protobuf", token="tok123")
    em2.runner_started(timestamp=ago(80))
    for k in range(10):
        em2.atomic_decision("claimed", timestamp=ago(70 - k))
    em2.runner_stopped(timestamp=ago(60))
    assert em2.flush()
    em2.shutdown()
    a = wait_until(lambda: (lambda x: x if len(x["items"]) >= 2 else None)(server.get("/anomalies").json()),
                   timeout=20, message="a spike and a silent scheduler")
    assert {x["kind"] for x in a["items"]} == {"failure_spike", "scheduler_silent"}, a["items"]
    spike = next(x for x in a["items"] if x["kind"] == "failure_spike")
    assert spike["task_id"] == "mail.send" and "9 of 12" in spike["why"] and spike["link"] == "/tasks/mail.send"
    assert sorted(spike["invocation_ids"]) == sorted(f"now-{k}" for k in range(9))  # the failures involved
    sched = next(x for x in a["items"] if x["kind"] == "scheduler_silent")
    assert sched["app_id"] == "mail" and server.get("/anomalies", params={"app": "batch"}).json()["items"] == []
    assert "every 1.0 s" in sched["why"] and sched["link"] == "/atomic-services"
    em.shutdown()


# --- work that never starts, and the contexts that only submit it (issue 14, kind 7) ------------------

def _kv(key, value):
    v = {"intValue": str(value)} if isinstance(value, int) else {"stringValue": str(value)}
    return {"key": key, "value": v}


def _post(server, signal, doc):
    import httpx
    r = httpx.post(f"{server.otlp_http}/v1/{signal}", json=doc, timeout=30,
                   headers={"authorization": "Bearer tok123"})
    assert r.status_code == 200, r.text


def _celery_span(when, action, task_id, task, queue, hostname=None, state=None):
    """One span of opentelemetry-instrumentation-celery as OTLP/JSON (`when` a datetime)."""
    import os
    ns = int(when.timestamp() * 1e9)
    attrs = {"celery.action": action, "messaging.message.id": task_id, "celery.task_name": task,
             "messaging.destination": queue}
    if hostname:
        attrs["celery.hostname"] = hostname
    if state:
        attrs["celery.state"] = state
    return {"traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": f"{action}/{task}",
            "kind": 4 if action == "apply_async" else 5, "startTimeUnixNano": str(ns),
            "endTimeUnixNano": str(ns + 2_000_000), "attributes": [_kv(k, v) for k, v in attrs.items()]}


def _celery(server, host, pid, spans):
    _post(server, "traces", {"resourceSpans": [{
        "resource": {"attributes": [_kv("service.name", "shop"), _kv("service.namespace", "live"),
                                    _kv("host.name", host), _kv("process.pid", pid)]},
        "scopeSpans": [{"scope": {"name": "opentelemetry.instrumentation.celery"}, "spans": spans}]}]})


def _rustvello(server, worker_id, cls, pid, records, parent=None):
    """rustvello-otel.v1 lifecycle log records from one process: (when, event, attributes)."""
    res = {"rustvello.app.id": "live", "rustvello.worker.id": worker_id, "rustvello.worker.class": cls,
           "host.name": "rv-host", "process.pid": pid}
    if parent:
        res["rustvello.worker.parent.id"] = parent
    _post(server, "logs", {"resourceLogs": [{
        "resource": {"attributes": [_kv(k, v) for k, v in res.items()]},
        "scopeLogs": [{"scope": {"name": "rustvello.lifecycle"}, "logRecords": [
            {"timeUnixNano": str(int(when.timestamp() * 1e9)), "body": {"stringValue": event},
             "attributes": [_kv("rustvello.event", event)] + [_kv(k, v) for k, v in attrs.items()]}
            for when, event, attrs in records]}]}]})


def test_work_never_picked_up_is_flagged_and_submitting_contexts_are_never_silent(server):
    """Celery and rustvello have no PENDING stage: a task nobody consumes stays REGISTERED, and past
    --max-pending it is flagged, naming its queue and whether anyone took work from it. The contexts that
    only submitted work (Celery's publishing client, rustvello's and pynenc's ExternalRunner, a tasktrail.v1
    script of any class) are clients: never runner_silent, however old their last record; a worker that
    went quiet still is."""
    now = datetime.now(timezone.utc)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    # Celery: one task to a queue no worker consumes (2 h), one to a queue a worker took other work from
    # since (a backlog: 1 h), one sent a minute ago, one that ran.
    _celery(server, "web-1", 77, [
        _celery_span(ago(7200), "apply_async", "cel-nobody", "shop.export", "reports"),
        _celery_span(ago(3600), "apply_async", "cel-backlog", "shop.mail", "default"),
        _celery_span(ago(60), "apply_async", "cel-fresh", "shop.mail", "default"),
        _celery_span(ago(7000), "apply_async", "cel-done", "shop.mail", "default")])
    _celery(server, "worker-1", 501, [
        _celery_span(ago(6990), "run", "cel-done", "shop.mail", "default", "celery@worker-1", "SUCCESS"),
        _celery_span(ago(1800), "run", "cel-other", "shop.mail", "default", "celery@worker-1", "SUCCESS")])
    # rustvello: a submitting process (its ExternalRunner) sends a task to a queue no worker runs; a
    # worker that ran a task 2 h ago has been silent since (no pulse, no heartbeats: it did work).
    _rustvello(server, "rv-client", "ExternalRunner", 300, [
        (ago(5400), "task.submitted", {"rustvello.invocation.id": "rv-never", "rustvello.task.id": "app.hang",
                                       "rustvello.queue": "doomed"})])
    _rustvello(server, "rv-w1", "PersistentTokioWorker", 301, [
        (ago(7300), "worker.started", {}),
        (ago(7200), "task.started", {"rustvello.invocation.id": "rv-ran", "rustvello.task.id": "app.work",
                                     "rustvello.queue": "default"}),
        (ago(7199), "task.succeeded", {"rustvello.invocation.id": "rv-ran", "rustvello.task.id": "app.work"})],
        parent="rv-r1")
    # tasktrail.v1: a script (a class no rule knows) that only registered work, 3 h ago; pynenc's
    # ExternalRunner registering work a live runner took but never started (PENDING too long); a runner
    # whose heartbeats stopped 2 h ago.
    em = Emitter(endpoint=server.otlp_http, app_id="live", protocol="http/protobuf", token="tok123")
    script = Runner("script-1", "NightlyImport", hostname="cron-1", pid=12)
    client = Runner("ExternalRunner@web-2-33", "ExternalRunner", hostname="web-2", pid=33)
    taker = Runner("thr-live", "ThreadRunner", hostname="h-live", pid=40)
    gone = Runner("thr-dead", "ThreadRunner", hostname="h-dead", pid=41)
    em.status("tt-never", "REGISTERED", task_id="imp.load", runner=script, timestamp=ago(10800))
    em.status("pn-pending", "REGISTERED", task_id="pn.job", runner=client, timestamp=ago(900))
    em.status("pn-pending", "PENDING", runner=taker, timestamp=ago(890))
    em.runner_started(gone, timestamp=ago(7300))
    em.heartbeat(gone, timestamp=ago(7200))
    em.runner_started(taker, timestamp=ago(1000))
    em.heartbeat(taker, timestamp=ago(1))
    assert em.flush()
    em.shutdown()

    invocations = {("pending_too_long", i) for i in ("cel-nobody", "cel-backlog", "rv-never", "tt-never", "pn-pending")}
    a = wait_flagged(server, invocations | {("runner_silent", None)}, timeout=30)
    about_work = {(x["kind"], x["invocation_id"]): x for x in a["items"] if x.get("invocation_id")}
    assert set(about_work) == invocations, about_work
    why = {i: about_work[("pending_too_long", i)]["why"] for _, i in invocations}
    assert why["cel-nobody"].startswith("registered 2 h ago") and \
        "never picked up: no runner consumes queue 'reports'" in why["cel-nobody"], why
    assert "never picked up, though 1 runner took work from queue 'default' since" in why["cel-backlog"], why
    assert "no runner consumes queue 'doomed'" in why["rv-never"], why
    assert why["tt-never"].startswith("registered 3 h ago") and "queue" not in why["tt-never"], why
    assert why["pn-pending"].startswith("PENDING since"), why
    assert about_work[("pending_too_long", "cel-nobody")]["queue"] == "reports"
    assert about_work[("pending_too_long", "cel-nobody")]["link"] == "/invocations/cel-nobody"
    silent = {x["runner_id"] for x in a["items"] if x["kind"] == "runner_silent"}
    assert {"thr-dead", "rv-w1"} <= silent, silent
    clients = {"shop@web-1-77", "rv-client", "script-1", "ExternalRunner@web-2-33"}
    assert not silent & clients, silent
    runners = {r["runner_id"]: r for r in server.get("/runners", params={"app": "live"}).json()}
    assert {rid for rid, r in runners.items() if r["role"] == "client"} == clients, runners
    assert runners["thr-dead"]["role"] == runners["rv-w1"]["role"] == runners["thr-live"]["role"] == "runner"
    ov = server.get("/overview", params={"app": "live"}).json()
    assert ov["runners"]["clients"] == 4 and ov["anomalies"]["pending_too_long"] == 5
    import httpx
    page = httpx.get(server.web + "/runners", params={"app": "live"}, timeout=30).text
    assert page.count('<span class="badge client"') == 4
