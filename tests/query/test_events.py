"""query/events.py: events (each one's latest state, with what it triggered), one event, trigger runs and
one trigger run with its events and invocations, and events as timeline markers."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest, NotFound

from .common import NOW, ago, iso


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("ev-app", Runner("ev-runner", "PersistentProcessRunner", hostname="h", pid=1))
    em.status("inv-src", "REGISTERED", task_id="app.pay", timestamp=ago(110))
    em.event("ev-a", "order.paid", {"v": 1}, matched_condition_ids=["c1"], valid_condition_ids=["c1", "c9"],
             emitted_by_invocation_id="inv-src", emitted_by_task_id="app.pay", timestamp=ago(100))
    em.event("ev-b", "order.paid", {"v": 0}, timestamp=ago(90))
    em.event("ev-c", "stock.low", matched_condition_ids=["c2"], timestamp=ago(80))
    em.event("ev-a", "order.paid", {"v": 2}, matched_condition_ids=["c1"], emitted_by_invocation_id="inv-src",
             emitted_by_task_id="app.pay", timestamp=ago(50))  # a later record of ev-a: its latest state
    em.trigger_run("tr-a", trigger_id="trig-1", task_id="app.ship", logic="and", condition_ids=["c1"],
                   event_ids=["ev-a"], source_invocation_ids=["inv-src"], triggered_invocation_id="inv-trig",
                   participants=[{"context_type": "EventContext", "event_id": "ev-a"}], timestamp=ago(70))
    em.trigger_run("tr-c", trigger_id="trig-2", task_id="app.restock", event_ids=["ev-c"], timestamp=ago(60))
    em.status("inv-trig", "REGISTERED", task_id="app.ship", timestamp=ago(69))
    em.shutdown()
    return local.service(clock=lambda: NOW)


def test_events_newest_first_with_their_latest_state(qs):
    evs = qs.events()
    assert [(e["event_id"], e["matched"], e["triggered"]) for e in evs] == [
        ("ev-c", True, False), ("ev-b", False, False), ("ev-a", True, True)]
    a = evs[-1]
    assert a == {"event_id": "ev-a", "app_id": "ev-app", "event_code": "order.paid", "payload": '{"v": 2}',
                 "matched_condition_ids": ["c1"], "valid_condition_ids": [],
                 "emitted_by_invocation_id": "inv-src", "emitted_by_task_id": "app.pay",
                 "emitted_by_runner_id": None, "triggered_invocation_ids": ["inv-trig"],
                 "timestamp": iso(ago(100)), "matched": True, "triggered": True}


def test_event_filters(qs):
    assert [e["event_id"] for e in qs.events(code="order.paid")] == ["ev-b", "ev-a"]
    assert [e["event_id"] for e in qs.events(matched="true")] == ["ev-c", "ev-a"]
    assert [e["event_id"] for e in qs.events(triggered="no")] == ["ev-c", "ev-b"]
    assert [e["event_id"] for e in qs.events(since=iso(ago(95)), until=iso(ago(85)))] == ["ev-b"]
    assert [e["event_id"] for e in qs.events(limit=1)] == ["ev-c"]
    with pytest.raises(BadRequest, match="matched must be true or false, got 'maybe'"):
        qs.events(matched="maybe")


def test_one_event_with_its_trigger_runs_and_invocations(qs):
    ev = qs.event("ev-a")
    assert [t["trigger_run_id"] for t in ev["trigger_runs"]] == ["tr-a"]
    assert [(i["invocation_id"], i["task_id"], i["status"]) for i in ev["invocations"]] == [
        ("inv-trig", "app.ship", "REGISTERED")]
    with pytest.raises(NotFound):
        qs.event("ev-none")


def test_trigger_runs_and_one_trigger_run(qs):
    assert [t["trigger_run_id"] for t in qs.trigger_runs()] == ["tr-c", "tr-a"]
    assert [t["trigger_run_id"] for t in qs.trigger_runs(event="ev-c")] == ["tr-c"]
    assert [t["trigger_run_id"] for t in qs.trigger_runs(invocation="inv-src")] == ["tr-a"]
    assert [t["trigger_run_id"] for t in qs.trigger_runs(invocation="inv-trig")] == ["tr-a"]
    assert [t["trigger_run_id"] for t in qs.trigger_runs(task="app.restock")] == ["tr-c"]
    # The invocation page shows the trigger runs its invocation took part in (as source or as the one created).
    for inv in ("inv-src", "inv-trig"):
        assert [t["trigger_run_id"] for t in qs.invocation_page(inv, parts=False)["trigger_runs"]] == ["tr-a"]
    tr = qs.trigger_run("tr-a")
    assert (tr["timestamp"], tr["trigger_id"], tr["logic"], tr["condition_ids"]) == (iso(ago(70)), "trig-1", "and", ["c1"])
    assert tr["participants"] == [{"context_type": "EventContext", "event_id": "ev-a"}]
    assert [i["invocation_id"] for i in tr["invocations"]] == ["inv-src", "inv-trig"]
    assert [e["event_id"] for e in tr["events"]] == ["ev-a"] and tr["events"][0]["payload"] == '{"v": 2}'
    with pytest.raises(NotFound):
        qs.trigger_run("tr-none")


def test_markers_by_state(qs):
    m = qs.event_markers()
    assert (m["total"], m["truncated"]) == (3, False)
    assert m["markers"][0] == {"event_id": "ev-a", "event_code": "order.paid", "timestamp": iso(ago(100)),
                               "matched": True, "triggered": True, "emitted_by_invocation_id": "inv-src",
                               "emitted_by_runner_context_id": None}
    assert [x["event_id"] for x in qs.event_markers(state="unmatched")["markers"]] == ["ev-b"]
    assert [x["event_id"] for x in qs.event_markers(state="untriggered")["markers"]] == ["ev-b", "ev-c"]
    assert qs.event_markers(limit=1) == {**qs.event_markers(limit=1), "total": 3, "truncated": True}
    with pytest.raises(BadRequest, match="state must be one of all, matched, unmatched"):
        qs.event_markers(state="lost")
