"""query/invocation_read.py: an invocation's time range and records in one statement and the context of each
in one more, the same answer as reading them one by one, in one app when asked, and with the range still pruning the log
(DuckDB pushes it into the scan of `transitions`)."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query import invocation_read
from tasktrail.query.errors import NotFound

from .common import NOW, ago

RUNNER = Runner("rr-1", "PersistentProcessRunner", hostname="h1", pid=10, thread_id=100)
WORKER = Runner("rr-1-w0", "PPRWorker", parent_id="rr-1", hostname="h1", pid=11, thread_id=110)
OTHER = Runner("zz-1", "ThreadRunner", hostname="h9", pid=90, thread_id=900)


def at(seconds: float):
    """`ago(seconds)` as the store gives times back (naive UTC)."""
    return ago(seconds).replace(tzinfo=None)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("shop", RUNNER)
    em.status("shared", "REGISTERED", task_id="shop.pay", runner=RUNNER, arguments='{"n": 1}', timestamp=ago(300))
    em.status("shared", "RUNNING", runner=WORKER, timestamp=ago(299))
    em.status("shared", "SUCCESS", runner=WORKER, result='"ok"', timestamp=ago(298))
    em.status("later", "REGISTERED", task_id="shop.pay", runner=RUNNER, timestamp=ago(100))
    em.shutdown()
    other = local.emitter("billing", OTHER)  # the same invocation id in another app
    other.status("shared", "REGISTERED", task_id="bill.run", runner=OTHER, timestamp=ago(200))
    other.status("shared", "FAILED", runner=OTHER, error_type="KeyError", timestamp=ago(199))
    other.shutdown()
    return local.service(clock=lambda: NOW)


class Counting:
    """The service's reader, counting the statements it runs."""

    def __init__(self, q):
        self.q, self.statements = q, 0

    def __call__(self, *args, **kw):
        self.statements += 1
        return self.q(*args, **kw)


def test_two_statements_give_range_records_and_contexts(qs):
    q = Counting(qs._q)
    got = invocation_read.read(q, "shared", "shop", qs.settings.previews, with_detail=True)
    assert q.statements == 2
    assert [r["status"] for r in got.raw] == ["REGISTERED", "RUNNING", "SUCCESS"]
    assert (got.rng.first, got.rng.last, got.rng.final) == (at(300), at(298), True)
    assert got.contexts["rr-1-w0"] == {"runner_class": "PPRWorker", "hostname": "h1", "pid": 11, "thread_id": 110}
    assert got.contexts["rr-1"]["runner_class"] == "PersistentProcessRunner"
    assert got.call_id is None and got.commands is False and got.triggers is False
    assert str(got.raw[0]["arguments"]) == '{"n": 1}' and str(got.raw[2]["result"]) == '"ok"'


def test_every_app_or_one(qs):
    both = invocation_read.read(qs._q, "shared", None, qs.settings.previews)
    assert sorted(r["app_id"] for r in both.raw) == ["billing", "billing", "shop", "shop", "shop"]
    assert (both.rng.first, both.rng.last) == (at(300), at(199))
    assert both.contexts["zz-1"]["hostname"] == "h9"  # each record's context in its own app
    billing = invocation_read.read(qs._q, "shared", "billing", qs.settings.previews)
    assert [r["status"] for r in billing.raw] == ["REGISTERED", "FAILED"] and "rr-1" not in billing.contexts
    with pytest.raises(NotFound, match="invocation nope is not in the log"):
        invocation_read.read(qs._q, "nope", None, qs.settings.previews)
    with pytest.raises(NotFound):
        invocation_read.read(qs._q, "later", "billing", qs.settings.previews)


def test_the_history_reads_its_columns_only_and_answers_the_same(qs):
    q = Counting(qs._q)
    narrow = invocation_read.read(q, "shared", "shop", qs.settings.previews, history_only=True)
    whole = invocation_read.read(qs._q, "shared", "shop", qs.settings.previews)
    assert q.statements == 2 and "trace_id" not in narrow.raw[0] and "trace_id" in whole.raw[0]
    assert qs.history("shared", "shop") == qs.invocation_page("shared", "shop", parts=False)["history"]
    assert [(h["status"], h["runner_class"], h["thread_id"]) for h in qs.history("shared", "shop")] == [
        ("REGISTERED", "PersistentProcessRunner", 100), ("RUNNING", "PPRWorker", 110), ("SUCCESS", "PPRWorker", 110)]


def test_records_in_arrival_order_and_contexts_only_where_known(local):
    """The records come in arrival order (batch, then position), whatever their timestamps say; a context
    runner_state knows nothing of is left out, and records that name none cost no second statement."""
    ghost = Runner("gh-1", "GhostRunner", hostname="h7", pid=70, thread_id=700)
    em = local.emitter("ord", RUNNER)
    em.status("late-first", "REGISTERED", task_id="o.t", runner=RUNNER, timestamp=ago(50))
    em.flush()
    em.status("late-first", "RUNNING", runner=ghost, timestamp=ago(60))  # an earlier clock, a later arrival
    em.shutdown()
    svc = local.service(clock=lambda: NOW)
    got = invocation_read.read(svc._q, "late-first", "ord", svc.settings.previews)
    assert [r["status"] for r in got.raw] == ["REGISTERED", "RUNNING"]
    assert got.contexts["rr-1"]["hostname"] == "h1"
    assert invocation_read._contexts(svc._q, [{"app_id": "ord", "worker_id": None, "runner_id": None}]) == {}
    assert invocation_read._contexts(svc._q, [{"app_id": "nowhere", "worker_id": None, "runner_id": "rr-1"}]) == {}


def pushed_range(q, sql: str, params: dict) -> bool:
    """Whether DuckDB ran `sql` with the range pushed into a scan as a dynamic filter on ts."""
    plan = "\n".join(r[1] for r in q("EXPLAIN ANALYZE " + sql, params).rows).replace(" ", "")
    return "DynamicFilters" in plan and "ts>=" in plan[plan.index("DynamicFilters"):]


def test_the_range_prunes_the_scan_of_the_log(qs):
    """The range reaches the scan of `transitions` as a filter on ts, as a constant would: zone maps then skip
    the row groups outside it (at 4M rows: 4 ms, where scalar subqueries in WHERE took 53)."""
    sql = invocation_read._sql(qs.settings.previews, False, False, False)
    assert pushed_range(qs._q, sql, {"id": "shared"})
