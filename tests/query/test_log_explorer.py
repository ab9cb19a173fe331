"""query/explore.py: pasted log lines (pynenc's text format, a traceback, a line in no format) with every
runner, invocation, task and `kind:value` they mention resolved against the store: an exact id or a
prefix of one stored id resolves, a prefix of several lists them, nothing is guessed; and the timeline
window around the invocations named."""
import pytest

from tasktrail.proto.emitter import Runner

from .common import NOW, ago, iso

RUNNER = "dd18ec03-aebe-4643-987e-36823fb9c76b"
TWIN = "dd18ffff-aebe-4643-987e-36823fb9c76b"       # shares the prefix dd18
INV = "c0f8bd92-7ef6-415e-a24f-79cf93925798"
PARENT = "a0000000-7ef6-415e-a24f-79cf93925798"
UNKNOWN = "11111111-2222-3333-4444-555555555555"
PASTED = f"""\
2026-06-01 11:58:20.000+00:00 INFO     pynenc.x [TR(dd18ec03)] Starting ThreadRunner runner:{RUNNER}
2026-06-01 11:58:40.000+00:00 INFO     pynenc.x [TR(dd18)] NEW task:demo.child invocation:{INV} REGISTERED
Traceback (most recent call last):
ValueError: boom
2026-06-01 11:58:50.000+00:00 INFO     pynenc.x [PPR(dd18ec03).PPRW(dd18ffff){INV}:demo.child] running
something about {INV} and {UNKNOWN} with event:ev-x trigger-run:tr-x trigger-run:tr-none task:demo.none
"""


@pytest.fixture(scope="module")
def explored(local):
    em = local.emitter("exp", Runner(RUNNER, "ThreadRunner", hostname="h", pid=1))
    em.runner_started(timestamp=ago(100))
    em.runner_started(Runner(TWIN, "PPRWorker", hostname="h", pid=2), timestamp=ago(100))
    em.status(PARENT, "REGISTERED", task_id="demo.root", timestamp=ago(90))
    em.status(PARENT, "SUCCESS", timestamp=ago(50))
    em.status(INV, "REGISTERED", task_id="demo.child", parent_invocation_id=PARENT, timestamp=ago(80))
    em.status(INV, "RUNNING", attempt=0, timestamp=ago(70))
    em.event("ev-x", "tick", timestamp=ago(60))
    em.trigger_run("tr-x", task_id="demo.child", timestamp=ago(60))
    em.shutdown()
    return local.service(clock=lambda: NOW).explore(PASTED)


def _view(ref):
    return {k: ref[k] for k in ("resolved", "id", "link", "candidates")}


def test_lines_and_continuations(explored):
    lines = explored["lines"]
    assert [ln["line_no"] for ln in lines] == [1, 2, 5, 6]
    assert lines[1]["continuation"] == ["Traceback (most recent call last):", "ValueError: boom"]
    assert (lines[0]["format"], lines[0]["level"], lines[0]["logger"], lines[0]["timestamp"]) == (
        "text", "INFO", "pynenc.x", "2026-06-01 11:58:20.000+00:00")
    assert explored["counts"] == {"lines": 4, "runners": {"resolved": 3, "total": 4},
                                  "invocations": {"resolved": 1, "total": 1}}


def test_runners_resolve_by_exact_id_or_unique_prefix(explored):
    first, second, third, _ = explored["lines"]
    assert first["runners"] == [{"class": "TR", "value": "dd18ec03", "resolved": True, "id": RUNNER,
                                 "link": f"/runners/{RUNNER}", "candidates": [], "reason": None}]
    assert _view(second["runners"][0]) == {"resolved": False, "id": None, "link": None, "candidates": [RUNNER, TWIN]}
    assert [r["id"] for r in third["runners"]] == [RUNNER, TWIN]


def test_invocations_tasks_and_other_references(explored):
    _, second, third, plain = explored["lines"]
    assert third["invocation"] == {"value": INV, "resolved": True, "id": INV, "link": f"/invocations/{INV}",
                                   "candidates": [], "reason": None, "status": "RUNNING", "task_id": "demo.child"}
    assert third["task"] == {"value": "demo.child", "resolved": True, "id": "demo.child",
                             "link": "/invocations?task=demo.child", "candidates": [], "reason": None}
    assert {(r["kind"], r["value"]): r["resolved"] for r in second["refs"]} == {
        ("task", "demo.child"): True, ("invocation", INV): True}
    refs = {(r["kind"], r["value"]): _view(r) for r in plain["refs"]}
    assert refs == {
        ("event", "ev-x"): {"resolved": True, "id": "ev-x", "link": "/events/ev-x", "candidates": []},
        ("trigger-run", "tr-x"): {"resolved": True, "id": "tr-x", "link": "/trigger-runs/tr-x", "candidates": []},
        ("trigger-run", "tr-none"): {"resolved": False, "id": None, "link": None, "candidates": []},
        ("task", "demo.none"): {"resolved": False, "id": None, "link": None, "candidates": []},
        ("invocation", INV): {"resolved": True, "id": INV, "link": f"/invocations/{INV}", "candidates": []},
        ("id", UNKNOWN): {"resolved": False, "id": None, "link": None, "candidates": []}}


def test_timeline_window_around_the_invocations_and_their_parents(explored):
    # Their transitions span -90 s to -50 s; padded by 10 % (4 s) each side.
    assert explored["timeline"] == {"since": iso(ago(94)), "until": iso(ago(46)), "invocations": [PARENT, INV]}


def test_unresolved_references_say_why(explored):
    _, second, _, plain = explored["lines"]
    assert second["runners"][0]["reason"] == "ambiguous: 2 stored ids start with it"
    reasons = {(r["kind"], r["value"]): r["reason"] for r in plain["refs"]}
    assert reasons[("trigger-run", "tr-none")] == reasons[("id", UNKNOWN)] == "not in this store"
    assert reasons[("event", "ev-x")] is None
