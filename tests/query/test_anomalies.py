"""query/anomalies.py: one case of every kind (orphaned, pending too long, never picked up, slow, failure
spike, silent runner, silent scheduler) and none where the work is fine, each saying why and linking to
what it is about."""
from datetime import timedelta

import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.anomalies import AnomalySettings

from .common import NOW, ago, iso

LIVE = Runner("live-r", "PersistentProcessRunner", hostname="h1", pid=1)
GONE = Runner("gone-r", "PersistentProcessRunner", hostname="h2", pid=2)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("anom", LIVE)
    for s in (30, 20, 10):
        em.heartbeat(timestamp=ago(s))
    for s in (2200, 2100, 2000):
        em.heartbeat(GONE, timestamp=ago(s))
    em.status("orphan", "REGISTERED", task_id="app.pay", timestamp=ago(2150))
    em.status("orphan", "RUNNING", runner=GONE, attempt=0, timestamp=ago(2100))
    em.status("stuck", "REGISTERED", task_id="app.pay", timestamp=ago(950))
    em.status("stuck", "PENDING", timestamp=ago(900))
    em.status("never", "REGISTERED", task_id="app.mail", timestamp=ago(1000))
    em.status("fresh", "REGISTERED", task_id="app.mail", timestamp=ago(10))   # waiting, but not for long
    for k in range(20):  # app.quick takes 1 s
        em.status(f"quick-{k}", "RUNNING", task_id="app.quick", attempt=0, timestamp=ago(5000 + 10 * k))
        em.status(f"quick-{k}", "SUCCESS", timestamp=ago(4999 + 10 * k))
    em.status("slowpoke", "RUNNING", task_id="app.quick", attempt=0, timestamp=ago(100))
    for k in range(30):  # app.flaky: fine for a day, then six failures in the last quarter hour
        em.status(f"flaky-{k}", "RUNNING", task_id="app.flaky", attempt=0, timestamp=ago(20_000 + 60 * k))
        em.status(f"flaky-{k}", "SUCCESS", timestamp=ago(19_999 + 60 * k))
    for k in range(6):
        em.status(f"flaked-{k}", "RUNNING", task_id="app.flaky", attempt=0, timestamp=ago(600 - 60 * k))
        em.status(f"flaked-{k}", "FAILED", error_type="IOError", timestamp=ago(599 - 60 * k))
    for s in (430, 420, 410, 400):  # the scheduler fired every 10 s, then stopped
        em.atomic_decision("assigned", position=0, runner_count=1, timestamp=ago(s))
    em.shutdown()
    return local.service(clock=lambda: NOW)


def test_every_kind_once(qs):
    a = qs.anomalies()
    found = sorted((x["kind"], x.get("invocation_id") or x.get("runner_id") or x.get("task_id")) for x in a["items"])
    assert found == [("failure_spike", "app.flaky"), ("orphaned", "orphan"), ("pending_too_long", "never"),
                     ("pending_too_long", "stuck"), ("runner_silent", "gone-r"), ("scheduler_silent", "live-r"),
                     ("slow", "slowpoke")]
    assert a["counts"] == {"orphaned": 1, "pending_too_long": 2, "slow": 1, "failure_spike": 1, "runner_silent": 1,
                           "scheduler_silent": 1}
    assert a["now"] == iso(NOW) and a["thresholds"]["max_pending_s"] == 300.0
    assert [x["since"] for x in a["items"]] == sorted((x["since"] for x in a["items"]), reverse=True)


def test_each_says_why_and_links(qs):
    by = {(x["kind"], x.get("invocation_id") or x.get("task_id") or x.get("runner_id")): x
          for x in qs.anomalies()["items"]}
    orphan = by[("orphaned", "orphan")]
    assert (orphan["runner_id"], orphan["since"], orphan["link"]) == ("gone-r", iso(ago(2100)), "/invocations/orphan")
    assert "whose heartbeats stopped at" in orphan["why"] and "dead after 600 s" in orphan["why"]
    assert by[("pending_too_long", "stuck")]["why"].startswith("PENDING since 2026-06-01 11:45:00, longer than")
    assert by[("pending_too_long", "never")]["why"] == ("registered 17 min ago (2026-06-01 11:43:20) and never "
                                                       "picked up (limit 300 s)")
    slow = by[("slow", "slowpoke")]
    assert slow["why"] == "RUNNING for 100 s, over 3 × its task's p99 of 1.00 s (20 finished)"
    spike = by[("failure_spike", "app.flaky")]
    assert (spike["link"], len(spike["invocation_ids"]), spike["since"]) == ("/tasks/app.flaky", 6, iso(ago(599)))
    assert spike["why"] == "6 of 6 failed in the last 15 min (100%), against 1% before"
    assert by[("runner_silent", "gone-r")]["link"] == "/runners/gone-r"
    assert by[("scheduler_silent", "live-r")]["link"] == "/atomic-services"


def test_a_spike_names_its_latest_failures_first(qs):
    """The failures of a spiking task are read after the counts, latest first, at most `limit`."""
    from tasktrail.query import anomalies
    spike = next(x for x in qs.anomalies()["items"] if x["kind"] == "failure_spike")
    since = NOW.replace(tzinfo=None) - timedelta(minutes=15)
    two = anomalies._recent_failures(qs._q, spike["app_id"], "app.flaky", since, limit=2)
    latest = [r[0] for r in qs._q("""SELECT invocation_id FROM invocation_state WHERE task_id = 'app.flaky'
                                     AND status = 'FAILED' ORDER BY updated_at DESC, invocation_id""").rows]
    assert two == spike["invocation_ids"][:2] == latest[:2] and len(set(spike["invocation_ids"])) == 6
    assert spike["invocation_ids"] == latest[:len(spike["invocation_ids"])]
    assert anomalies._recent_failures(qs._q, spike["app_id"], None, since) == []


def test_app_filter_and_settings(qs):
    assert qs.anomalies("another")["items"] == []
    patient = qs.anomalies(settings=AnomalySettings(max_pending_s=2000, slow_factor=1000, spike_min_failures=10,
                                                    runner_dead_after_s=3000, scheduler_min_silence_s=1000))
    assert [x["kind"] for x in patient["items"]] == []
    assert patient["thresholds"]["runner_dead_after_s"] == 3000


def test_a_spike_of_invocations_without_a_task_links_to_their_failures(tmp_path):
    """Invocations that name no task can spike too: the anomaly lists them and links to the app's FAILED
    invocations, latest failure first (not to an unrelated page), and that list begins with them."""
    from ..helpers import LocalStore

    store = LocalStore(tmp_path / "notask.duckdb")
    try:
        em = store.emitter("bare", LIVE)
        for k in range(5):
            em.status(f"bare-{k}", "RUNNING", attempt=0, timestamp=ago(500 - 60 * k))
            em.status(f"bare-{k}", "FAILED", error_type="OSError", timestamp=ago(499 - 60 * k))
        em.shutdown()
        qs = store.service(clock=lambda: NOW)
        spike = next(x for x in qs.anomalies()["items"] if x["kind"] == "failure_spike")
        assert spike["task_id"] is None and sorted(spike["invocation_ids"]) == [f"bare-{k}" for k in range(5)]
        assert spike["link"] == "/invocations?status=FAILED&app=bare&sort=-updated_at"
        listed = qs.invocations(app="bare", status=["FAILED"], sort="-updated_at")["items"]
        assert [i["invocation_id"] for i in listed] == spike["invocation_ids"] == [f"bare-{k}" for k in (4, 3, 2, 1, 0)]
    finally:
        store.close()
