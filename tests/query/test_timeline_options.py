"""The timeline's options (issue 18; query/timeline_options.py, query/occupancy.py): the true peak
concurrency against a brute-force count over time points, the occupancy stacked by task and status against
the scenario's own intervals, hiding system tasks and the atomic-service lane, resolution.

The scenario: four workers each run 30 back-to-back 100 ms invocations (each PENDING 50 ms before it runs,
so a worker holds two at a time for a moment) while one `app.loop` runs for minutes: the window is minutes
long, its occupancy buckets are seconds wide, and a bucket is touched by well over a hundred intervals
while never more than a handful are in flight at once."""
from datetime import datetime, timedelta

import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest
from tasktrail.query.workflows import bucket_size

from .common import ago, iso

R = Runner("occ-R", "PersistentProcessRunner", hostname="h", pid=1)
WORKERS = [Runner(f"occ-W{k}", "PPRWorker", parent_id="occ-R", hostname="h", pid=2 + k) for k in range(4)]
WINDOW = {"since": iso(ago(600)), "until": iso(ago(0))}
CATS = {"registered": {"REGISTERED", "REROUTED", "CONCURRENCY_CONTROLLED"},
        "pending": {"PENDING", "PENDING_RECOVERY", "RETRY"}, "running": {"RUNNING", "RUNNING_RECOVERY"}}
# Task ids and whether they are system tasks (proto/system_tasks.py's rule).
SYSTEM = {"pynenc.core_tasks.recover_pending_invocations": True, "rust::core_tasks.recover_running": True,
          "python::rvpkg.core_tasks.sweep": True, "celery.backend_cleanup": True,
          "app.core_tasks_helper.x": False, "core_tasks": False, "myapp.celery.debug_task": False}


@pytest.fixture(scope="module")
def scenario(local):
    em = local.emitter("occ", R)
    records: list[tuple[str, str, str, datetime]] = []  # (invocation, task, status, time): what was sent

    def send(inv, task, status, t, runner, **kw):
        em.status(inv, status, task_id=task, runner=runner, timestamp=t, **kw)
        records.append((inv, task, status, t))

    for r in [R, *WORKERS]:
        em.runner_started(r, timestamp=ago(1000))
    send("occ-loop", "app.loop", "REGISTERED", ago(420), R)
    send("occ-loop", "app.loop", "PENDING", ago(419), WORKERS[0])
    send("occ-loop", "app.loop", "RUNNING", ago(418), WORKERS[0], attempt=0)
    send("occ-loop", "app.loop", "SUCCESS", ago(250), WORKERS[0])
    for k, w in enumerate(WORKERS):
        for j in range(30):
            inv, task = f"occ-{k}-{j:02d}", ("app.fast", "app.slow")[k % 2]
            s = ago(300) + timedelta(milliseconds=13 * k + 100 * j)
            send(inv, task, "REGISTERED", s - timedelta(milliseconds=80), R)
            send(inv, None, "PENDING", s - timedelta(milliseconds=50), w)
            send(inv, None, "RUNNING", s, w, attempt=0)
            send(inv, None, "SUCCESS", s + timedelta(milliseconds=100), w)
    # A retried run: RUNNING → RETRY → PENDING → RUNNING → FAILED (RETRY and PENDING touch, one category).
    for n, (st, dt) in enumerate((("REGISTERED", 0), ("PENDING", 1), ("RUNNING", 2), ("RETRY", 2.5), ("PENDING", 2.6),
                                  ("RUNNING", 3), ("FAILED", 4))):
        send("occ-retry", "app.flaky" if n == 0 else None, st, ago(290) + timedelta(seconds=dt), WORKERS[1],
             **({"attempt": 0} if st == "RUNNING" else {}))
    # System tasks (task id on REGISTERED only, as a client sends it) and look-alikes that are not.
    for i, task in enumerate(SYSTEM):
        inv = f"occ-sys-{i}"
        send(inv, task, "REGISTERED", ago(280) + timedelta(seconds=i), R)
        send(inv, None, "RUNNING", ago(279.5) + timedelta(seconds=i), WORKERS[2], attempt=0)
        send(inv, None, "SUCCESS", ago(279) + timedelta(seconds=i), WORKERS[2])
    em.atomic_execution("occ-as", "completed", runner=R, start=ago(270), end=ago(260), timestamp=ago(260))
    em.shutdown()
    from .common import NOW
    return local.service(clock=lambda: NOW), records


def _intervals(records, categories, until: datetime):
    """Each sent history's status intervals of `categories`: (invocation, task, category, start, end) from
    one sent record to the next (the last to the window's end unless final), worked out from what was sent."""
    by_inv: dict[str, list] = {}
    for inv, task, status, t in records:
        by_inv.setdefault(inv, []).append((t, status, task))
    out = []
    for inv, hist in by_inv.items():
        hist.sort(key=lambda x: x[0])
        task = next(t for _, _, t in hist if t)
        for k, (t, status, _) in enumerate(hist):
            cat = next((c for c in categories if status in CATS[c]), None)
            end = hist[k + 1][0] if k + 1 < len(hist) else until
            if cat and end > t:
                out.append((inv, task, cat, t, end))
    return out


def _at(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=ago(0).tzinfo)


def _brute_peak(intervals) -> int:
    """The most intervals open at one instant: checked at every start and end (and just before each)."""
    points = {t for _, _, _, a, b in intervals for t in (a, b, a - timedelta(microseconds=1), b - timedelta(microseconds=1))}
    return max((sum(1 for *_, a, b in intervals if a <= p < b) for p in points), default=0)


@pytest.mark.parametrize("cats", [("pending", "running"), ("running",), ("registered", "pending", "running")])
def test_peak_is_the_most_in_flight_at_once_not_a_bucket_count(scenario, cats):
    qs, records = scenario
    occ = qs.timeline(**WINDOW, histogram_status=",".join(cats))["occupancy"]
    ivs = _intervals(records, cats, _at(WINDOW["until"]))
    size = timedelta(seconds=occ["bucket_s"])
    touching = max(sum(1 for *_, a, b in ivs if a < _at(s) + size and b > _at(s)) for s in occ["buckets"])
    want = _brute_peak(ivs)
    assert occ["categories"] == list(cats)
    assert occ["peak"]["in_flight"] == want
    assert touching > 5 * want, (touching, want)  # the bucket-touch count would have said far more
    for c in cats:
        assert occ["peak"]["by_status"][c] == _brute_peak([iv for iv in ivs if iv[2] == c]), c
    # In flight at the peak's instant: exactly the peak.
    at = _at(occ["peak"]["at"])
    assert sum(1 for *_, a, b in ivs if a <= at < b) == want


def test_occupancy_stacked_by_task_and_status_matches_the_intervals(scenario):
    qs, records = scenario
    tl = qs.timeline(**WINDOW, histogram_status="registered,pending,running")
    occ = tl["occupancy"]
    cats = ["registered", "pending", "running"]
    ivs = _intervals(records, cats, _at(WINDOW["until"]))
    v0, v1 = _at(tl["view"]["since"]), _at(tl["view"]["until"])
    assert (occ["since"], occ["until"]) == (tl["view"]["since"], tl["view"]["until"])
    assert occ["bucket_s"] == bucket_size((v1 - v0).total_seconds())
    size = timedelta(seconds=occ["bucket_s"])
    starts = [_at(s) for s in occ["buckets"]]
    assert starts[0] == v0 and starts[-1] < v1 <= starts[-1] + size + timedelta(microseconds=1)

    def distinct(task, cat=None):  # invocations of `task` in a chosen status during each bucket
        return [len({inv for inv, t, c, a, b in ivs if t == task and (cat is None or c == cat) and a < s + size and b > s})
                for s in starts]
    tasks = sorted({t for _, t, *_ in ivs})
    assert len(tasks) < 12  # no "Other"
    assert sorted(s["task_id"] for s in occ["series"]) == tasks
    for s in occ["series"]:
        assert s["counts"] == distinct(s["task_id"]), s["task_id"]
    assert [(b["task_id"], b["status"]) for b in occ["by_status"]] == [(s["task_id"], c) for s in occ["series"] for c in cats]
    for b in occ["by_status"]:
        assert b["counts"] == distinct(b["task_id"], b["status"]), (b["task_id"], b["status"])
    totals = [sum(s["counts"][i] for s in occ["series"]) for i in range(len(starts))]
    assert occ["max"] == max(totals)
    # Busiest first: the stack's order.
    sums = [sum(s["counts"]) for s in occ["series"]]
    assert sums == sorted(sums, reverse=True)


def test_no_status_chosen_draws_nothing(scenario):
    qs, _ = scenario
    occ = qs.timeline(**WINDOW, histogram_status="")["occupancy"]
    assert (occ["categories"], occ["series"], occ["peak"]["in_flight"]) == ([], [], 0)
    assert qs.timeline(**WINDOW)["occupancy"]["categories"] == ["pending", "running"]  # pynmon's default


def _drawn(tl) -> set:
    return {e["invocation_id"] for ln in tl["lanes"] for sub in ln["sublanes"] for e in sub}


def test_hide_system_tasks(scenario):
    qs, _ = scenario
    shown = qs.timeline(**WINDOW)
    hidden = qs.timeline(**WINDOW, show_system="0")
    sys_ids = {f"occ-sys-{i}" for i, task in enumerate(SYSTEM) if SYSTEM[task]}
    other_ids = {f"occ-sys-{i}" for i, task in enumerate(SYSTEM) if not SYSTEM[task]}
    assert sys_ids | other_ids <= _drawn(shown)
    assert _drawn(hidden) == _drawn(shown) - sys_ids
    assert (hidden["total"], hidden["options"]["system_hidden"]) == (shown["total"] - len(sys_ids), len(sys_ids))
    assert shown["options"]["show_system"] is True and hidden["options"]["show_system"] is False
    # Out of the occupancy too, and the limit counts what is left.
    assert {s["task_id"] for s in hidden["occupancy"]["series"]}.isdisjoint(t for t, s in SYSTEM.items() if s)
    few = qs.timeline(**WINDOW, show_system="0", limit=hidden["total"] - 1)
    assert (few["total"], few["shown"]) == (hidden["total"], hidden["total"] - 1)


def test_hide_the_atomic_service_lane(scenario):
    qs, _ = scenario
    assert [w["run_id"] for w in qs.timeline(**WINDOW)["atomic_windows"]] == ["occ-as"]
    tl = qs.timeline(**WINDOW, show_atomic_service="0")
    assert tl["atomic_windows"] == [] and tl["options"]["show_atomic_service"] is False


def test_resolution_and_fit(scenario):
    qs, _ = scenario
    tl = qs.timeline(**WINDOW, resolution="30s")
    assert (tl["options"]["resolution"], tl["options"]["resolution_s"], tl["occupancy"]["bucket_s"]) == ("30s", 30, 30)
    fine = qs.timeline(**WINDOW, resolution="100ms")["occupancy"]  # widened to at most 240 buckets
    assert len(fine["buckets"]) <= 240 and fine["bucket_s"] > 0.1
    whole = qs.timeline(**WINDOW, fit="0")
    assert (whole["view"]["since"], whole["view"]["until"], whole["view"]["fit"]) == (
        WINDOW["since"], WINDOW["until"], False)
    fitted = qs.timeline(**WINDOW)["view"]
    assert WINDOW["since"] < fitted["since"] <= iso(ago(420)) and iso(ago(250)) <= fitted["until"] < WINDOW["until"]
    # The peak does not depend on the range drawn.
    assert whole["occupancy"]["peak"] == qs.timeline(**WINDOW)["occupancy"]["peak"]


@pytest.mark.parametrize("bad", [{"resolution": "7s"}, {"histogram_status": "done"}, {"show_system": "maybe"},
                                 {"show_atomic_service": "2"}, {"fit": "x"}])
def test_bad_options_are_refused(scenario, bad):
    qs, _ = scenario
    with pytest.raises(BadRequest) as e:
        qs.timeline(**WINDOW, **bad)
    assert next(iter(bad)) in str(e.value)
