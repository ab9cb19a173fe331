"""query/family.py: the tree around an invocation by its three edge kinds (a direct child, a child of an
event the parent emitted, an invocation a trigger run of it created), walked up to the root from any
member, capped in depth and size; and Celery's parents, found by trace context (a task sent from inside
another task's span)."""
import os

import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import NotFound

from ..helpers import json_attributes
from .common import NOW, ago

CELERY = "opentelemetry.instrumentation.celery"


def _celery_span(trace, span, parent, when, action, task_id, task, hostname=None):
    """One span of opentelemetry-instrumentation-celery as OTLP/JSON, 2 s long."""
    ns = int(when.timestamp() * 1e9)
    attrs = {"celery.action": action, "messaging.message.id": task_id, "celery.task_name": task}
    if hostname:
        attrs.update({"celery.hostname": hostname, "celery.state": "SUCCESS"})
    return {"traceId": trace, "spanId": span, "parentSpanId": parent or "", "name": f"{action}/{task}",
            "kind": 4 if action == "apply_async" else 5, "startTimeUnixNano": str(ns),
            "endTimeUnixNano": str(ns + 2_000_000_000), "attributes": json_attributes(attrs)}


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("fam", Runner("fam-runner", "PersistentProcessRunner", hostname="h", pid=1))
    em.status("fam-root", "REGISTERED", task_id="app.order", timestamp=ago(60))
    em.status("fam-kid", "REGISTERED", task_id="app.pay", parent_invocation_id="fam-root", timestamp=ago(59))
    em.event("fam-ev", "paid", emitted_by_invocation_id="fam-kid", matched_condition_ids=["c"], timestamp=ago(58))
    em.status("fam-by-event", "REGISTERED", task_id="app.mail", parent_event_id="fam-ev", timestamp=ago(57))
    em.trigger_run("fam-tr", task_id="app.ship", source_invocation_ids=["fam-by-event"],
                   triggered_invocation_id="fam-by-trigger", timestamp=ago(56))
    em.status("fam-by-trigger", "REGISTERED", task_id="app.ship", timestamp=ago(56))
    for k in range(3):
        em.status(f"fam-leaf-{k}", "REGISTERED", task_id="app.leaf", parent_invocation_id="fam-root",
                  timestamp=ago(55 - k))
    em.status("fam-root", "SUCCESS", timestamp=ago(40))
    em.shutdown()
    # Celery: `cel-parent` runs and sends `cel-child` from inside its run span (same trace).
    trace, run_span, send_span = os.urandom(16).hex(), os.urandom(8).hex(), os.urandom(8).hex()
    local.send("traces", {"resourceSpans": [{
        "resource": {"attributes": json_attributes({"service.name": "celery", "service.namespace": "cel",
                                                    "host.name": "w1", "process.pid": 7})},
        "scopeSpans": [{"scope": {"name": CELERY}, "spans": [
            _celery_span(os.urandom(16).hex(), os.urandom(8).hex(), None, ago(30), "apply_async", "cel-parent", "t.outer"),
            _celery_span(trace, run_span, None, ago(29), "run", "cel-parent", "t.outer", "celery@w1"),
            _celery_span(trace, send_span, run_span, ago(28.5), "apply_async", "cel-child", "t.inner"),
            _celery_span(os.urandom(16).hex(), os.urandom(8).hex(), None, ago(20), "run", "cel-child", "t.inner",
                         "celery@w1")]}]}]})
    return local.service(clock=lambda: NOW)


def _edges(tree):
    return {(e["parent"], e["child"], e["kind"]) for e in tree["edges"]}


def test_the_tree_is_the_same_from_any_member(qs):
    whole = qs.family("fam-root")
    assert whole["root_id"] == "fam-root" and not whole["truncated"]
    assert _edges(whole) == {("fam-root", "fam-kid", "direct"), ("fam-kid", "fam-by-event", "event"),
                             ("fam-by-event", "fam-by-trigger", "trigger")} | {
        ("fam-root", f"fam-leaf-{k}", "direct") for k in range(3)}
    depth = {n["invocation_id"]: n["depth"] for n in whole["nodes"]}
    assert depth == {"fam-root": 0, "fam-kid": 1, "fam-leaf-0": 1, "fam-leaf-1": 1, "fam-leaf-2": 1,
                     "fam-by-event": 2, "fam-by-trigger": 3}
    root = next(n for n in whole["nodes"] if n["invocation_id"] == "fam-root")
    assert root == {"invocation_id": "fam-root", "task_id": "app.order", "status": "SUCCESS",
                    "created_at": "2026-06-01T11:59:00.000000Z", "updated_at": "2026-06-01T11:59:20.000000Z",
                    "duration_s": 20.0, "is_final": True, "workflow_id": None, "depth": 0}
    # Tree order, as the graph draws it: each parent before its children, siblings by creation time.
    assert [n["invocation_id"] for n in whole["nodes"]] == [
        "fam-root", "fam-kid", "fam-by-event", "fam-by-trigger", "fam-leaf-0", "fam-leaf-1", "fam-leaf-2"]
    assert qs.family("fam-by-trigger") == whole  # walked up: trigger run, event, parent
    with pytest.raises(NotFound):
        qs.family("nope")


def test_depth_and_size_caps_say_truncated(local, qs):
    shallow = local.service(clock=lambda: NOW, family_max_depth=2).family("fam-root")
    assert shallow["truncated"] and max(n["depth"] for n in shallow["nodes"]) == 2
    assert "fam-by-trigger" not in {n["invocation_id"] for n in shallow["nodes"]}
    small = local.service(clock=lambda: NOW, family_max_nodes=3).family("fam-root")
    assert small["truncated"] and len(small["nodes"]) == 3


def test_a_family_cut_by_the_row_cap_says_truncated(local, monkeypatch):
    """More edges than one read may return (MAX_ROWS, 100,000): the family shows what it read and says it is
    cut, instead of dropping children silently (here the cap is 2 rows a read)."""
    from tasktrail.query.reader import Reader

    whole = local.service(clock=lambda: NOW).family("fam-root")
    assert not whole["truncated"] and len(whole["nodes"]) > 3
    monkeypatch.setattr(Reader.__call__, "__defaults__", ((), 2))
    cut = local.service(clock=lambda: NOW).family("fam-root")
    assert cut["truncated"] and len(cut["nodes"]) < len(whole["nodes"])


def test_celery_parents_come_from_trace_context(qs):
    assert qs.trace_parents(children=["cel-child"]) == [("cel-child", "cel-parent")]
    assert qs.trace_parents(parents=["cel-parent"]) == [("cel-child", "cel-parent")]
    assert qs.invocation("cel-child")["parent_invocation_id"] == "cel-parent"
    tree = qs.family("cel-child")
    assert tree["root_id"] == "cel-parent" and _edges(tree) == {("cel-parent", "cel-child", "direct")}
    # Runners that say parents (tasktrail.v1 here) never need the span join, and find nothing by it.
    assert qs.trace_parents(children=["fam-kid"]) == []


def test_a_child_stamped_before_its_root_by_a_slow_clock_is_in_the_family(local):
    """The walk down reads edges from the family's start (the root's first record) less a day of slack:
    a child whose host clock runs two hours slow is still the root's child; the page twin and /family
    agree, and the walk reads each invocation's parents with its range (one read) from any member."""
    em = local.emitter("skewfam", Runner("skew-runner", "PersistentProcessRunner", hostname="h", pid=2))
    em.status("skew-root", "REGISTERED", task_id="app.root", timestamp=ago(30))
    em.status("skew-kid", "REGISTERED", task_id="app.kid", parent_invocation_id="skew-root", timestamp=ago(7230))
    em.status("skew-kid", "SUCCESS", timestamp=ago(7220))
    em.status("skew-grandkid", "REGISTERED", task_id="app.gk", parent_invocation_id="skew-kid", timestamp=ago(25))
    em.status("skew-root", "SUCCESS", timestamp=ago(10))
    em.shutdown()
    qs = local.service(clock=lambda: NOW)
    for member in ("skew-root", "skew-kid", "skew-grandkid"):
        tree = qs.family(member)
        assert tree["root_id"] == "skew-root" and not tree["truncated"], member
        assert [(n["invocation_id"], n["depth"]) for n in tree["nodes"]] == [
            ("skew-root", 0), ("skew-kid", 1), ("skew-grandkid", 2)], member
        assert qs.invocation_page(member)["family"] == tree
