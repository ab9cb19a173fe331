"""query/workflows.py and query/workflow_compare.py over tests/workflow_data.py's scenario (10 checkout
runs of a reserve and two ships; run 7's ships wait 28.3 s PENDING; run 0 starts a refund sub-workflow),
stored through the local emitter: every figure is worked out from the scenario."""
import pytest

from tasktrail.query.errors import BadRequest, NotFound

from .. import workflow_data as wd
from .common import NOW, ago


@pytest.fixture(scope="module")
def scenario(local):
    sent = wd.send(None, base=ago(7200), connect=local.emitter)
    return local.service(clock=lambda: NOW), sent


def test_types_and_runs(scenario):
    qs, sent = scenario
    types = {t["workflow_type"]: t for t in qs.workflow_types(since="all")["items"]}
    assert (types["shop.checkout"]["runs"], types["shop.checkout"]["members"]) == (10, 30)
    assert types["shop.checkout"]["counts_by_status"] == {"SUCCESS": 10} and types["shop.refund"]["runs"] == 1
    # The scenario ends 37 min before the clock: every type is still listed, idle, with its latest run ever.
    idle = {t["workflow_type"]: t for t in qs.workflow_types(since="-30m")["items"]}
    assert set(idle) == set(types) and all(t["runs"] == 0 and t["counts_by_status"] == {} for t in idle.values())
    assert all(idle[k]["last_run_at"] == types[k]["last_run_at"] is not None for k in types)
    runs = qs.workflow_runs(workflow_type="shop.checkout")
    assert [r["workflow_id"] for r in runs["items"]] == [f"wf-{k}" for k in reversed(range(10))]
    assert not runs["truncated"] and all(r["members"] == 3 and r["failed_members"] == 0 for r in runs["items"])
    for r in runs["items"]:
        assert r["duration_s"] == pytest.approx(sent["runs"][r["workflow_id"]]["duration_s"], abs=1e-5)
    refund = qs.workflow_runs(workflow_type="shop.refund")["items"][0]
    assert (refund["workflow_id"], refund["parent_workflow_id"]) == ("wf-0-refund", "wf-0")
    assert qs.workflow_runs(workflow_type="shop.checkout", limit=2)["truncated"]
    assert qs.workflow_runs(status=["FAILED"])["items"] == []


def test_one_run(scenario):
    qs, sent = scenario
    run = qs.workflow_run("wf-7")
    members = {m["invocation_id"]: m for m in run["members_list"]}
    assert sorted(members) == ["wf-7-reserve", "wf-7-ship-a", "wf-7-ship-b"]
    for inv, m in members.items():
        expected = sent["runs"]["wf-7"]["members"][inv]["intervals"]
        spent = {c: sum(b - a for s, a, b in expected if s == c) for c in ("REGISTERED", "PENDING", "RUNNING")}
        assert m["time_in"] == pytest.approx(spent, abs=1e-4), inv
    assert run["window"]["since"] == run["created_at"] and run["sub_workflows"] == []
    assert [s["workflow_id"] for s in qs.workflow_run("wf-0")["sub_workflows"]] == ["wf-0-refund"]
    with pytest.raises(NotFound):
        qs.workflow_run("nope")


def test_histograms_follow_pynmon(scenario):
    qs, sent = scenario
    for cats in (("PENDING", "RUNNING"), ("REGISTERED",)):
        h = qs.workflow_run("wf-3", histogram_status=[",".join(c.lower() for c in cats)])["histogram"]
        assert h["bucket_s"] == 0.25 and h["categories"] == [c.lower() for c in cats]
        assert {s["task_id"]: s["counts"] for s in h["series"]} == wd.expected_histogram(sent["runs"]["wf-3"], cats)
    with pytest.raises(BadRequest, match="histogram_status must be among registered, pending, running"):
        qs.workflow_run("wf-3", histogram_status=["sleeping"])
    t = qs.workflow_type("shop.checkout", since="all")
    assert [h["workflow_id"] for h in t["histograms"]] == ["wf-9", "wf-8", "wf-7"]  # the latest 3
    assert t["summary"]["runs"] == 10
    chosen = qs.workflow_type("shop.checkout", histogram_runs=["wf-1,wf-2"])
    assert [h["workflow_id"] for h in chosen["histograms"]] == ["wf-1", "wf-2"]
    with pytest.raises(NotFound):
        qs.workflow_type("shop.nothing")


def test_compare_finds_where_the_slow_run_lost_its_time(scenario):
    qs, sent = scenario
    ids = [f"wf-{k}" for k in range(10)]
    c = qs.workflow_compare([",".join(ids[:5]), *ids[5:], "wf-1"])  # comma lists and repeats, each run once
    assert [r["workflow_id"] for r in c["runs"]] == ids and c["same_type"]
    ship = next(t for t in c["tasks"] if t["task_id"] == "shop.ship")
    assert ship["runs"]["wf-7"]["time_in"]["PENDING"] == pytest.approx(2 * (28.3 + 0.3), abs=1e-4)
    slow = c["slowest"]
    assert (slow["workflow_id"], slow["mostly"]) == ("wf-7", {"task_id": "shop.ship", "status": "PENDING"})
    assert slow["excess_s"] == pytest.approx(28.3, abs=1e-4)
    assert slow["by_task"][0]["excess_s"] == pytest.approx(2 * 28.3, abs=1e-4)
    with pytest.raises(BadRequest, match="at most 10 runs can be compared, got 11"):
        qs.workflow_compare(ids + ["wf-0-refund"])
    with pytest.raises(BadRequest, match="runs is required"):
        qs.workflow_compare([])
