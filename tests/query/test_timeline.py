"""query/timeline.py: lanes per runner context (workers under their runner), sub-lanes that keep
overlapping work apart, bars and points clipped to the window, work open across its start, event
markers and atomic-service windows; filters, limits and the default window."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest

from .common import NOW, ago, iso

R1 = Runner("R1", "PersistentProcessRunner", hostname="h1", pid=1)
W1 = Runner("W1", "PPRWorker", parent_id="R1", hostname="h1", pid=2)
R2 = Runner("R2", "PersistentProcessRunner", hostname="h2", pid=3)
W2 = Runner("W2", "PPRWorker", parent_id="R2", hostname="h2", pid=4)
WINDOW = {"since": iso(ago(600)), "until": iso(ago(0))}


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("tl", R1)
    for r in (R1, W1, R2, W2):
        em.runner_started(r, timestamp=ago(1000))
    em.status("tl-open", "REGISTERED", task_id="app.long", timestamp=ago(900))  # runs across the window's start
    em.status("tl-open", "PENDING", runner=W1, timestamp=ago(800))
    em.status("tl-open", "RUNNING", runner=W1, attempt=0, timestamp=ago(700))
    em.status("tl-open", "SUCCESS", runner=W1, timestamp=ago(500))
    em.status("tl-a", "REGISTERED", task_id="app.a", timestamp=ago(400))
    em.status("tl-a", "RUNNING", runner=W1, attempt=0, timestamp=ago(390))
    em.status("tl-a", "SUCCESS", runner=W1, timestamp=ago(300))
    em.status("tl-b", "REGISTERED", task_id="app.b", parent_invocation_id="tl-a", timestamp=ago(395))
    em.status("tl-b", "RUNNING", runner=W1, attempt=0, timestamp=ago(350))  # overlaps tl-a on W1
    em.status("tl-b", "FAILED", runner=W1, timestamp=ago(250))
    em.status("tl-c", "REGISTERED", task_id="app.c", runner=R2, timestamp=ago(200))
    em.status("tl-c", "RUNNING", runner=W2, attempt=0, timestamp=ago(100))  # still running
    em.status("tl-old", "REGISTERED", task_id="app.a", timestamp=ago(9000))
    em.status("tl-old", "SUCCESS", timestamp=ago(8990))
    em.event("tl-ev", "tick", timestamp=ago(150))
    em.atomic_execution("tl-as", "completed", runner=R2, start=ago(120), end=ago(110), timestamp=ago(110))
    em.shutdown()
    return local.service(clock=lambda: NOW)


def _bars(lane):
    return [[(e["invocation_id"], [(s["status"], s["start"], s["end"], s["ongoing"]) for s in e["segments"]],
              [(p["status"], p["timestamp"]) for p in e["points"]]) for e in sub] for sub in lane["sublanes"]]


def test_lanes_sublanes_bars_and_points(qs):
    tl = qs.timeline(**WINDOW)
    assert (tl["since"], tl["until"], tl["total"], tl["shown"], tl["truncated"]) == (
        iso(ago(600)), iso(ago(0)), 4, 4, False)
    lanes = {ln["runner_id"]: ln for ln in tl["lanes"]}
    assert [ln["runner_id"] for ln in tl["lanes"]] == ["R1", "W1", "R2", "W2"]  # workers under their runner
    assert {k: lanes["W1"][k] for k in ("runner_class", "hostname", "pid", "parent_runner_id")} == {
        "runner_class": "PPRWorker", "hostname": "h1", "pid": 2, "parent_runner_id": "R1"}
    assert lanes["W1"]["parent_runner_class"] == "PersistentProcessRunner"
    assert _bars(lanes["W1"]) == [
        [("tl-open", [("RUNNING", iso(ago(600)), iso(ago(500)), False)], [("SUCCESS", iso(ago(500)))]),
         ("tl-a", [("RUNNING", iso(ago(390)), iso(ago(300)), False)], [("SUCCESS", iso(ago(300)))])],
        [("tl-b", [("RUNNING", iso(ago(350)), iso(ago(250)), False)], [("FAILED", iso(ago(250)))])]]
    assert _bars(lanes["R1"]) == [[("tl-a", [], [("REGISTERED", iso(ago(400)))]),
                                   ("tl-b", [], [("REGISTERED", iso(ago(395)))])]]
    assert _bars(lanes["W2"]) == [[("tl-c", [("RUNNING", iso(ago(100)), iso(ago(0)), True)], [])]]
    assert tl["edges"] == [{"parent": "tl-a", "child": "tl-b"}]
    assert [m["event_id"] for m in tl["markers"]["markers"]] == ["tl-ev"]
    assert tl["atomic_windows"] == [{"run_id": "tl-as", "runner_id": "R2", "status": "COMPLETED", "reason": None,
                                     "start": iso(ago(120)), "end": iso(ago(110))}]


def test_filters_and_limit(qs):
    def shown(**kw):
        return sorted({e["invocation_id"] for ln in qs.timeline(**WINDOW, **kw)["lanes"]
                       for sub in ln["sublanes"] for e in sub})
    assert shown(task="app.a") == ["tl-a"]
    assert shown(runner="W2") == ["tl-c"]
    assert shown(invocations="tl-a, tl-c") == ["tl-a", "tl-c"]
    assert shown(invocations=["tl-b"]) == ["tl-b"]
    assert shown(app="other") == []
    few = qs.timeline(**WINDOW, limit=2)
    assert (few["total"], few["shown"], few["truncated"]) == (4, 2, True)


def test_windows(qs):
    assert qs.timeline(until=iso(ago(0)))["since"] == iso(ago(3600))  # one bound: an hour from it
    assert qs.timeline(since=iso(ago(60)))["until"] == iso(NOW)       # until: the service's clock
    assert qs.timeline()["until"] == iso(NOW)                          # data in the last hour: that hour
    with pytest.raises(BadRequest, match="until must be after since"):
        qs.timeline(since=iso(ago(10)), until=iso(ago(20)))
    with pytest.raises(BadRequest, match="limit must be between 1 and 20000, got 20001"):
        qs.timeline(limit=20_001)
