"""query/runners.py (with the liveness rule of query/anomalies.Liveness): which runner contexts are alive,
which are clients, what runs on each; one runner's workers, recent activity and heartbeats."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import NotFound

from .common import NOW, ago, iso

LIVE = Runner("live-1", "PersistentProcessRunner", hostname="h1", pid=10)
WORKER = Runner("live-1-w", "PPRWorker", parent_id="live-1", hostname="h1", pid=11)
GONE = Runner("gone-1", "PersistentProcessRunner", hostname="h2", pid=20)
STOPPED = Runner("stopped-1", "ThreadRunner", hostname="h3", pid=30)
CLIENT = Runner("client-1", "ExternalRunner", hostname="h4", pid=40)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("run-app", LIVE)
    em.runner_started(timestamp=ago(3000))
    em.runner_started(WORKER, timestamp=ago(2999))
    for s in (90, 60, 30):
        em.heartbeat(atomic_eligible=True, consumed_queues=["default"], timestamp=ago(s))
    em.status("job-1", "REGISTERED", task_id="app.job", runner=CLIENT, timestamp=ago(2100))
    em.status("job-1", "RUNNING", runner=WORKER, attempt=0, timestamp=ago(2000))  # still running, silent since
    em.status("job-2", "REGISTERED", task_id="app.job", runner=CLIENT, timestamp=ago(1900))
    em.status("job-2", "RUNNING", runner=WORKER, attempt=0, timestamp=ago(1899))
    em.status("job-2", "SUCCESS", runner=WORKER, timestamp=ago(1890))
    em.runner_started(GONE, timestamp=ago(5000))
    em.heartbeat(GONE, timestamp=ago(4000))
    em.runner_started(STOPPED, timestamp=ago(500))
    em.runner_stopped(STOPPED, timestamp=ago(400))
    em.shutdown()
    return local.service(clock=lambda: NOW, runner_dead_after_s=600)


def test_liveness_and_roles(qs):
    got = {r["runner_id"]: (r["alive"], r["role"]) for r in qs.runners()}
    assert got == {"live-1": (True, "runner"),       # heartbeats
                   "live-1-w": (True, "runner"),     # silent, but its parent heartbeats
                   "client-1": (False, "client"),    # only submitted work: a client, whatever its age
                   "gone-1": (False, "runner"),      # heartbeats stopped an hour ago
                   "stopped-1": (False, "runner")}   # said it stopped


def test_a_runner_as_listed(qs):
    live = next(r for r in qs.runners("run-app") if r["runner_id"] == "live-1")
    # The emitter's own context (its resource) is seen from the earliest record of the request it sent.
    assert live == {"runner_id": "live-1", "app_id": "run-app", "runner_class": "PersistentProcessRunner",
                    "parent_runner_id": None, "hostname": "h1", "pid": 10, "first_seen": iso(ago(5000)),
                    "last_heartbeat": iso(ago(30)), "last_activity": iso(ago(30)), "stopped_at": None,
                    "alive": True, "role": "runner", "state": "alive", "running_invocations": ["job-1"],
                    "runner_label": "PersistentProcessRunner h1/10 live-1"}
    worker = next(r for r in qs.runners() if r["runner_id"] == "live-1-w")
    assert worker["running_invocations"] == ["job-1"] and worker["parent_runner_id"] == "live-1"
    assert qs.runners("another-app") == []


def test_runner_detail(qs):
    d = qs.runner("live-1")
    assert [w["runner_id"] for w in d["workers"]] == ["live-1-w"]
    assert d["recent_activity"] == [
        {"timestamp": iso(ago(1890)), "invocation_id": "job-2", "task_id": None, "status": "SUCCESS"},
        {"timestamp": iso(ago(1899)), "invocation_id": "job-2", "task_id": None, "status": "RUNNING"},
        {"timestamp": iso(ago(2000)), "invocation_id": "job-1", "task_id": None, "status": "RUNNING"}]
    assert d["heartbeats"] == [{"timestamp": iso(ago(s)), "atomic_eligible": True, "consumed_queues": ["default"]}
                               for s in (30, 60, 90)]
    assert qs.runner("stopped-1")["stopped_at"] == iso(ago(400))
    with pytest.raises(NotFound):
        qs.runner("nobody")


def test_labels_that_would_read_the_same_show_whole_ids():
    from tasktrail.query.runners import label_rows
    ids = ["Foo-abc123", "Foo@abc123", "ExternalRunner@h-1", "ExternalRunner:h-1", "h-1", "Bar-zz9999"]
    found = {i: ("Foo", "samehost", 4242) for i in ids[:2]} | {i: ("ExternalRunner", "h", 1) for i in ids[2:5]}
    found["Bar-zz9999"] = ("Bar", "h", 2)
    labels = {rid: d["label"] for rid, d in label_rows(ids, found).items()}
    assert len(set(labels.values())) == len(ids), labels
    assert labels["Bar-zz9999"] == "Bar h/2 zz9999"  # a label that is unique keeps its short form


def test_the_list_stays_whole_when_the_row_cap_cuts_its_one_read(qs):
    """listing_all reads every runner context and every RUNNING invocation at once; past the row cap (here
    3 rows, in production 100,000) it must not drop runners: it reads the list and the liveness apart."""
    from tasktrail.query.runners import listing_all

    def capped(sql, params=(), max_rows=None):
        return qs._q(sql, params, max_rows=3 if "UNION ALL BY NAME" in sql else (max_rows or 100_000))

    whole, _ = listing_all(qs._q, qs._dead())
    cut, _ = listing_all(capped, qs._dead())
    assert len(whole) == 5 and cut == whole       # alive, state and running invocations included


def test_activity_and_heartbeats_spread_over_years_page_as_one_read(tmp_path):
    """A runner's page of activity is read over windows widening back from its last activity: rows far
    older than the first window, a lull of years, and a last-activity hint that is wrong must still come,
    in the same order as one plain read, page after page."""
    from ..helpers import LocalStore

    store = LocalStore(tmp_path / "spread.duckdb")
    try:
        em = store.emitter("spread-app", LIVE)
        em.runner_started(timestamp=ago(5 * 365 * 86400))
        offsets = [4 * 365 * 86400 + k * 7 for k in range(30)] + [400 * 86400 + k for k in range(15)] \
            + [k * 60 for k in range(1, 12)]
        for k, s in enumerate(offsets):
            em.status(f"job-{k}", "RUNNING", task_id="app.job", runner=LIVE, attempt=0, timestamp=ago(s))
        for s in (3 * 365 * 86400, 90 * 86400, 120):
            em.heartbeat(timestamp=ago(s))
        em.shutdown()
        qs = store.service(clock=lambda: NOW, runner_dead_after_s=600)
        want = [{"timestamp": iso(ago(s)), "invocation_id": f"job-{k}", "task_id": "app.job", "status": "RUNNING"}
                for k, s in sorted(enumerate(offsets), key=lambda ks: ks[1])]
        got, cursor = [], None
        while True:
            page = qs.runner("live-1", cursor=cursor, limit=20)
            got += page["recent_activity"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == want
        assert [h["timestamp"] for h in qs.runner("live-1")["heartbeats"]] == \
            [iso(ago(s)) for s in (120, 90 * 86400, 3 * 365 * 86400)]
        store.store.on_writer(lambda con: con.execute(   # a wrong hint: more reads, the same rows
            "UPDATE runner_state SET last_transition = TIMESTAMP '2001-01-01', last_heartbeat = TIMESTAMP '2001-01-01'"))
        assert qs.runner("live-1", limit=100)["recent_activity"] == want
        assert len(qs.runner("live-1")["heartbeats"]) == 3
    finally:
        store.close()
