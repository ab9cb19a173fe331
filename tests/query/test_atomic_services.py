"""query/atomic.py: atomic-service executions and the scheduler's decisions (newest first, filtered by
window, runner, status or reason), and the current schedule (each runner's latest decision)."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest

from .common import NOW, ago, iso

A = Runner("as-a", "PersistentProcessRunner", hostname="h", pid=1)
B = Runner("as-b", "PersistentProcessRunner", hostname="h", pid=2)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("atom", A)
    for k in range(3):  # three cycles of 60 s: A holds the first slot, B the second
        cycle = ago(300 - 60 * k)
        for runner, position in ((A, 0), (B, 1)):
            slot = ago(300 - 60 * k - 30 * position)
            em.atomic_decision("assigned" if position == k % 2 else "not_assigned_slot", runner=runner,
                               cycle_start=cycle, slot_start=slot, slot_end=ago(300 - 60 * k - 30 * position - 30),
                               position=position, runner_count=2, assigned_runner_id=runner.runner_id,
                               timestamp=ago(300 - 60 * k - position))
        em.atomic_execution(f"run-{k}", "completed" if k < 2 else "running", runner=(A, B)[k % 2],
                            start=ago(299 - 60 * k), end=ago(290 - 60 * k) if k < 2 else None,
                            timestamp=ago(290 - 60 * k))
    em.shutdown()
    return local.service(clock=lambda: NOW)


def test_executions_newest_first_with_filters(qs):
    runs = qs.atomic_executions()
    assert [(r["run_id"], r["runner_id"], r["status"]) for r in runs] == [
        ("run-2", "as-a", "RUNNING"), ("run-1", "as-b", "COMPLETED"), ("run-0", "as-a", "COMPLETED")]
    assert runs[1] == {"app_id": "atom", "run_id": "run-1", "runner_id": "as-b", "start_ts": iso(ago(239)),
                       "end_ts": iso(ago(230)), "status": "COMPLETED", "reason": None}
    assert [r["run_id"] for r in qs.atomic_executions(status="completed")] == ["run-1", "run-0"]
    assert [r["run_id"] for r in qs.atomic_executions(runner="as-a", limit=1)] == ["run-2"]
    assert [r["run_id"] for r in qs.atomic_executions(since=iso(ago(250)), until=iso(ago(200)))] == ["run-1"]
    assert qs.atomic_executions(app="other") == []
    with pytest.raises(BadRequest, match="limit must be between 1 and 1000"):
        qs.atomic_executions(limit=1001)


def test_decisions_filter_by_reason_and_runner(qs):
    assigned = qs.atomic_decisions(reason="assigned")
    assert [(d["runner_id"], d["ts"]) for d in assigned] == [("as-a", iso(ago(180))), ("as-b", iso(ago(239))),
                                                            ("as-a", iso(ago(300)))]
    assert {d["reason"] for d in qs.atomic_decisions(runner="as-b")} == {"ASSIGNED", "NOT_ASSIGNED_SLOT"}
    assert len(qs.atomic_decisions(since="-200s")) == 2  # relative to the service's clock


def test_schedule_is_each_runners_latest_decision(qs):
    s = qs.atomic_schedule()
    assert s["cycle_start"] == iso(ago(180))
    assert [(d["runner_id"], d["reason"], d["position"], d["slot_start"]) for d in s["slots"]] == [
        ("as-a", "ASSIGNED", 0, iso(ago(180))), ("as-b", "NOT_ASSIGNED_SLOT", 1, iso(ago(150)))]
    assert qs.atomic_schedule("other") == {"cycle_start": None, "slots": [], "left": 0}


def _pages(fetch, kind, qs, limit):
    """Every page of `fetch(limit=, cursor=)`, following next cursors to the end."""
    pages, cursor = [], None
    while True:
        rows = fetch(limit=limit, cursor=cursor)
        pages.append(rows)
        cursor = qs.atomic_next_cursor(rows, limit, kind)
        if cursor is None:
            return pages


def test_executions_and_decisions_page_by_cursor_without_gap_or_overlap(qs):
    whole = qs.atomic_executions(limit=100)
    pages = _pages(qs.atomic_executions, "executions", qs, 2)
    assert [len(p) for p in pages] == [2, 1] and [r for p in pages for r in p] == whole
    whole = qs.atomic_decisions(limit=100)
    pages = _pages(qs.atomic_decisions, "decisions", qs, 4)
    assert [len(p) for p in pages] == [4, 2] and [r for p in pages for r in p] == whole
    # A page that ends exactly at the last row says so on the next read: an empty page, no cursor.
    pages = _pages(qs.atomic_decisions, "decisions", qs, 3)
    assert [len(p) for p in pages] == [3, 3, 0]
    with pytest.raises(BadRequest, match="cursor"):
        qs.atomic_executions(cursor="not-a-cursor")
