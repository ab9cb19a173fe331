"""Anomalies (a first cut of issue 9): exactly the orphaned, stuck and slow invocations are flagged, each
saying why. Driven by the tasktrail.v1 emitter with controlled timestamps; the live-runner test
(a rustvello worker killed mid-task) is still to be written."""
from datetime import datetime, timedelta, timezone

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import wait_until


def test_orphaned_pending_and_slow_are_flagged_and_nothing_else(server):
    now = datetime.now(timezone.utc)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    gone = Runner("runner-gone", "PersistentProcessRunner", hostname="h1", pid=1)
    live = Runner("runner-live", "PersistentProcessRunner", hostname="h2", pid=2)
    em = Emitter(endpoint=server.otlp_http, app_id="shop", runner=live, protocol="http/protobuf", token="tok123")
    em.runner_started(gone, timestamp=ago(1300))
    em.runner_started(timestamp=ago(1300))
    for k in range(30):  # the task's history: 30 runs of about a second
        inv = f"quick-{k}"
        em.status(inv, "REGISTERED", task_id="shop.quick", timestamp=ago(1200 - k))
        em.status(inv, "RUNNING", attempt=0, timestamp=ago(1200 - k) + timedelta(milliseconds=10))
        em.status(inv, "SUCCESS", timestamp=ago(1199 - k))
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
