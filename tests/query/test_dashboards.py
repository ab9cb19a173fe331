"""query/dashboards.py and query/metrics.py: the apps seen, the overview, the technical dashboard (/ops)
and the log-derived figures behind /metrics, for two apps with work in every state."""
import pytest

from tasktrail.proto.emitter import Runner

from ..helpers import json_attributes
from .common import NOW, ago, iso

ON_TIME = Runner("on-time", "PersistentProcessRunner", hostname="h1", pid=1)
LATE = Runner("late", "PersistentProcessRunner", hostname="h2", pid=2)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("dash-a", ON_TIME)
    for s in (30, 20, 10):
        em.heartbeat(timestamp=ago(s))
    for s in (65, 55, 45):  # every 10 s, silent for 45 s: late past two intervals
        em.heartbeat(LATE, timestamp=ago(s))
    em.status("d1", "REGISTERED", task_id="app.ok", timestamp=ago(300))
    em.status("d1", "RUNNING", attempt=0, timestamp=ago(290))
    em.status("d1", "SUCCESS", timestamp=ago(280))
    em.status("d2", "REGISTERED", task_id="app.bad", timestamp=ago(210))
    em.status("d2", "FAILED", error_type="ValueError", timestamp=ago(200))
    em.status("d3", "REGISTERED", task_id="app.slow", timestamp=ago(120))
    em.status("d3", "RUNNING", attempt=0, timestamp=ago(100))
    for s in (90, 60, 30):
        em.atomic_decision("assigned", position=0, runner_count=1, timestamp=ago(s))
    em.shutdown()
    em = local.emitter("dash-b", Runner("b-runner", "ThreadRunner", hostname="h3", pid=3))
    em.status("e1", "REGISTERED", task_id="app.wait", timestamp=ago(50))
    em.status("e1", "PENDING", timestamp=ago(40))
    em.shutdown()
    local.send("logs", {"resourceLogs": [{"resource": {"attributes": json_attributes({"service.namespace": "dash-c"})},
                                          "scopeLogs": [{"logRecords": [{
                                              "timeUnixNano": str(int(ago(500).timestamp() * 1e9)),
                                              "body": {"stringValue": "only a line"}}]}]}]})
    return local.service(clock=lambda: NOW, runner_dead_after_s=600)


def test_apps(qs):
    apps = {a["app_id"]: a for a in qs.apps()}
    assert sorted(apps) == ["dash-a", "dash-b", "dash-c"]
    assert apps["dash-a"]["invocations"] == 3 and apps["dash-a"]["last_seen"] == iso(ago(10))
    assert apps["dash-c"] == {"app_id": "dash-c", "first_seen": iso(ago(500)), "last_seen": iso(ago(500)),
                              "invocations": 0}


def test_overview(qs):
    ov = qs.overview("dash-a")
    assert {s: n for s, n in ov["counts_by_status"].items() if n} == {"SUCCESS": 1, "FAILED": 1, "RUNNING": 1}
    assert ov["in_flight"] == 1 and ov["runners"] == {"alive": 2, "stopped": 0, "dead": 0, "clients": 0}
    assert ov["anomalies"] == {"orphaned": 0, "pending_too_long": 0, "slow": 0, "failure_spike": 0,
                               "runner_silent": 0, "scheduler_silent": 0}
    assert ov["last_ingest_at"] is not None and [a["app_id"] for a in ov["apps"]] == ["dash-a", "dash-b", "dash-c"]
    assert qs.overview()["in_flight"] == 2  # d3 RUNNING, e1 PENDING


def test_ops(qs):
    ops = qs.ops("dash-a")
    assert ops["now"] == iso(NOW)
    assert [(i["invocation_id"], i["elapsed_s"]) for i in ops["in_flight"]] == [("d3", 120.0)]
    assert [i["invocation_id"] for i in ops["recent_failures"]] == ["d2"]
    assert ops["heartbeats"] == [
        {"runner_id": "on-time", "last": iso(ago(10)), "every_s": 10.0, "state": "alive", "next_expected": iso(ago(0)),
         "late": False},
        {"runner_id": "late", "last": iso(ago(45)), "every_s": 10.0, "state": "alive", "next_expected": iso(ago(35)),
         "late": True}]
    assert ops["scheduler"] == {"last_fire": iso(ago(30)), "every_s": 30.0, "next_expected": iso(ago(0)),
                                "late": False}
    # The ledger's times are the wall clock's, later than this service's clock: every request is "recent".
    assert ops["ingest"]["requests_1m"] == 3 and ops["ingest"]["last_batch"] == 3
    assert ops["ingest"]["records_per_s_1m"] == pytest.approx((6 + 3 + 7 + 2 + 1) / 60)
    assert [i["invocation_id"] for i in qs.ops()["in_flight"]] == ["d3", "e1"]


def test_metrics_snapshot(qs):
    snap = qs.metrics_snapshot()
    by_status = {(a, s): n for a, s, n in snap["invocations_by_status"] if n}
    assert by_status == {("dash-a", "SUCCESS"): 1, ("dash-a", "FAILED"): 1, ("dash-a", "RUNNING"): 1,
                         ("dash-b", "PENDING"): 1}
    assert sorted(snap["transitions"]) == [("dash-a", "FAILED", 1), ("dash-a", "REGISTERED", 3),
                                           ("dash-a", "RUNNING", 2), ("dash-a", "SUCCESS", 1),
                                           ("dash-b", "PENDING", 1), ("dash-b", "REGISTERED", 1)]
    assert sorted(snap["finished"]) == [("dash-a", "app.bad", "FAILED", 1), ("dash-a", "app.ok", "SUCCESS", 1)]
    durations = {(a, t): (n, total) for a, t, _, n, total in snap["durations"]}
    assert durations == {("dash-a", "app.ok"): (1, 10.0), ("dash-a", "app.bad"): (1, 10.0)}
    runners = {(a, s): n for a, s, n in snap["runners"] if n}
    assert runners == {("dash-a", "alive"): 2, ("dash-b", "alive"): 1}
    assert dict(snap["app_last_record"])["dash-c"] == pytest.approx(ago(500).timestamp())


def test_last_ingest_reads_the_last_hour_first_and_the_whole_ledger_when_silent(qs):
    """The overview's last ingest is the ledger's newest request whether the last hour before `now` holds
    it (the bounded read) or the ledger was silent for that hour (read whole)."""
    from datetime import timedelta

    from tasktrail.query import dashboards
    from tasktrail.query.params import iso as api_iso

    newest = qs._q("SELECT max(received_at) FROM ingest_ledger").rows[0][0]
    assert newest is not None
    for now in (newest, newest + timedelta(minutes=59), newest + timedelta(hours=2), newest - timedelta(days=1)):
        assert dashboards.last_ingest(qs._q, now) == newest, now
    assert qs.overview()["last_ingest_at"] == api_iso(newest)
