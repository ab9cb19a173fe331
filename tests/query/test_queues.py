"""Issue 18, queues: the depth per queue over a window and who consumes it now (query/queues.py), from
tasktrail.queue.depth records and heartbeats sent through the emitter, ingest's decode and map, and the
writer. Each figure is compared with what was sent and with a scan of the log."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest, NotFound

from ..helpers import json_attributes
from .common import NOW, ago, iso

APP = "queues-app"
W = Runner("worker-q-1", "PersistentProcessRunner", hostname="h1", pid=10)       # alive, consumes `fast`
S = Runner("stopped-q-2", "PersistentProcessRunner", hostname="h2", pid=20)      # consumed `orphan`, stopped
NAMED = Runner("named-q-3", "ThreadRunner", hostname="h3", pid=30)               # named by a record only
FAST = [(1800 - 60 * k, (k * 7) % 11) for k in range(30)]  # (seconds ago, depth) every minute for 30 min


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter(APP, W)
    em.runner_started(timestamp=ago(2000))
    for s in range(1800, 0, -60):
        em.heartbeat(consumed_queues=["fast"], timestamp=ago(s))
    for s, depth in FAST:
        em.queue_depth("fast", depth, timestamp=ago(s))
    for s in (300, 200, 100):
        em.queue_depth("orphan", 5 + s // 100, consumers=[], timestamp=ago(s))   # nobody consumes it
        em.queue_depth("drained", 0, timestamp=ago(s))                          # empty: not flagged
        em.queue_depth("counted", 3, consumer_count=2, timestamp=ago(s))        # the broker counts consumers
        em.queue_depth("named", 4, consumers=[NAMED.runner_id], timestamp=ago(s))
        em.queue_depth("negative", 2, consumer_count=-9, timestamp=ago(s))     # a count below 0 means nothing
    em.queue_depth("old", 9, consumers=[NAMED.runner_id], timestamp=ago(7200))   # before the default window
    em.runner_started(S, timestamp=ago(900))
    em.heartbeat(S, consumed_queues=["orphan"], timestamp=ago(800))
    em.runner_stopped(S, timestamp=ago(700))
    em.shutdown()
    # A rustvello worker (no heartbeats) that started work from `busy` 2 min ago: a consumer by its work.
    for rid, event, s in (("rv-inv-1", "task.started", 120), ("rv-inv-1", "task.succeeded", 60)):
        local.send("logs", {"resourceLogs": [{"resource": {"attributes": json_attributes({
            "rustvello.app.id": APP, "rustvello.worker.id": "rv-w-1", "rustvello.worker.class": "PersistentTokioWorker",
            "host.name": "rv-host", "process.pid": 40})},
            "scopeLogs": [{"scope": {"name": "rustvello.lifecycle"}, "logRecords": [{
                "timeUnixNano": str(int(ago(s).timestamp() * 1e9)), "body": {"stringValue": event},
                "attributes": json_attributes({"rustvello.event": event, "rustvello.invocation.id": rid,
                                               "rustvello.task.id": "app.work", "rustvello.queue": "busy"})}]}]}]})
    em = local.emitter(APP, W)
    em.queue_depth("busy", 12, timestamp=ago(30))
    em.shutdown()
    return local.service(clock=lambda: NOW, runner_dead_after_s=600)


def _by_queue(out: dict) -> dict:
    return {i["queue"]: i for i in out["queues"] if i["app_id"] == APP}


def test_latest_depth_series_and_consumers(qs, local):
    out = qs.queues(app=APP)
    got = _by_queue(out)
    assert set(got) == {"fast", "orphan", "drained", "counted", "named", "negative", "busy"}  # `old` is older
    # The latest depth of each queue is the last one its log holds (a scan of the table, not the read model).
    scan = dict(local.store.query("""SELECT queue, arg_max(depth, ts) FROM queue_depths
                                    WHERE app_id = ? AND ts >= ? GROUP BY 1""", [APP, NOW.replace(hour=11)]).rows)
    assert {q: i["depth"] for q, i in got.items()} == scan
    fast = got["fast"]
    assert fast["depth"] == FAST[-1][1] and fast["at"] == iso(ago(FAST[-1][0]))
    assert fast["reported_by"] == W.runner_id
    # One record a minute, buckets of 15 s over the hour: the series is what was sent, in order.
    assert out["step_s"] == 15
    assert fast["series"]["depth"] == [d for _, d in FAST] == fast["series"]["peak"]
    assert fast["consumers"] == [{"runner_id": W.runner_id, "via": ["heartbeat"]}]
    assert not fast["unconsumed"]


def test_nobody_consumes_is_flagged(qs):
    got = _by_queue(qs.queues(app=APP))
    # The stopped runner's heartbeat listed `orphan`: a stopped runner consumes nothing now.
    assert got["orphan"]["depth"] == 6 and got["orphan"]["consumers"] == [] and got["orphan"]["unconsumed"]
    assert got["drained"]["depth"] == 0 and not got["drained"]["unconsumed"]
    assert got["counted"]["consumer_count"] == 2 and not got["counted"]["unconsumed"]
    assert got["named"]["consumers"] == [{"runner_id": NAMED.runner_id, "via": ["report"]}]
    assert not got["named"]["unconsumed"]
    assert got["busy"]["consumers"] == [{"runner_id": "rv-w-1", "via": ["work"]}] and not got["busy"]["unconsumed"]
    # A negative consumer count is stored as unknown: it cannot hide that nobody consumes the queue.
    assert got["negative"]["consumer_count"] is None and got["negative"]["unconsumed"]
    assert qs.queues(app=APP)["unconsumed"] == 2


def test_window_bounds_the_series(qs):
    out = qs.queues(app=APP, since="-10m")
    fast = _by_queue(out)["fast"]
    assert fast["series"]["depth"] == [d for s, d in FAST if s <= 600]
    old = _by_queue(qs.queues(app=APP, since="-3h"))["old"]
    # In the window, but the record naming its consumer is two hours old: nobody is known to consume it now.
    assert old["depth"] == 9 and old["consumers"] == [] and old["unconsumed"]


def test_one_queue_and_bad_input(qs):
    one = qs.queues(app=APP, queue="fast", one=True)
    assert one["queue"] == "fast" and one["series"]["depth"][-1] == FAST[-1][1] and one["since"]
    with pytest.raises(NotFound):
        qs.queues(app=APP, queue="no-such-queue", one=True)
    with pytest.raises(BadRequest):
        qs.queues(app=APP, since="yesterday-ish")
    with pytest.raises(BadRequest, match="after until"):
        qs.queues(app=APP, since="-15m", until="-1h")
