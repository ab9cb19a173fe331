"""Issue 17: one liveness word (alive / stopped / dead, query/liveness.Liveness.state) on every read model
(/runners, the overview, /ops, the anomalies, /metrics, the atomic schedule), runner labels read by the ids a
page shows (query/runners.labels), and a runner's activity in cursor pages."""
import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest

from .common import NOW, ago

APP = "live-app"
PPR = Runner("ppr-6f1c2a9e-0001", "PersistentProcessRunner", hostname="h1", pid=10)
PPR_W = Runner("ppr-6f1c2a9e-0002", "PPRWorker", parent_id=PPR.runner_id, hostname="h1", pid=11)
TR = Runner("ThreadRunner-0b7d44e1", "ThreadRunner", hostname="h2", pid=20)       # stops
TR_W = Runner("ThreadRunner-0b7d9999", "ThreadRunner", parent_id=TR.runner_id, hostname="h2", pid=20)
GONE = Runner("gone-aaaa", "PersistentProcessRunner", hostname="h3", pid=30)      # killed: no stop
CLIENT = Runner("ExternalRunner@h4-40", "ExternalRunner", hostname="h4", pid=40)  # its script ended
CLIENT_LIVE = Runner("ExternalRunner@h5-50", "ExternalRunner", hostname="h5", pid=50)
CLIENT_TR = Runner("ExternalRunner@h2-20-5e0c1d2b", "ExternalRunner", hostname="h2", pid=20)  # TR's process
ONE_BEAT = Runner("one-beat-1", "PersistentProcessRunner", hostname="h6", pid=60)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter(APP, PPR)
    em.runner_started(timestamp=ago(900))
    em.runner_started(PPR_W, timestamp=ago(899))
    for s in (40, 30, 20, 10):
        em.heartbeat(timestamp=ago(s))
    for k in range(5):  # five transitions the worker made, for the activity's pages
        em.status(f"act-{k}", "REGISTERED", task_id="app.job", runner=CLIENT, timestamp=ago(800 - k))
        em.status(f"act-{k}", "RUNNING", runner=PPR_W, attempt=0, timestamp=ago(700 - 10 * k))
    em.runner_started(TR, timestamp=ago(500))
    for s in (90, 80, 70, 60):
        em.heartbeat(TR, timestamp=ago(s))
    em.status("tw-1", "REGISTERED", task_id="app.job", runner=TR, timestamp=ago(60))
    em.status("tw-1", "RUNNING", runner=TR_W, attempt=0, timestamp=ago(55))  # the worker, 5 s before its runner stops
    em.status("tw-2", "REGISTERED", task_id="app.job", runner=CLIENT_TR, timestamp=ago(52))
    em.runner_stopped(TR, timestamp=ago(50))
    em.runner_started(GONE, timestamp=ago(5000))
    for s in (4020, 4010, 4000):
        em.heartbeat(GONE, timestamp=ago(s))
    em.heartbeat(ONE_BEAT, timestamp=ago(5))
    em.shutdown()
    em = local.emitter(APP, CLIENT_LIVE)  # a client script whose process is still there
    em.status("c-1", "REGISTERED", task_id="app.job", timestamp=ago(3000))
    em.log("still submitting", timestamp=ago(20))
    em.shutdown()
    return local.service(clock=lambda: NOW, runner_dead_after_s=600)


def _states(qs) -> dict:
    return {r["runner_id"]: r["state"] for r in qs.runners(APP)}


def test_one_word_per_runner(qs):
    assert _states(qs) == {
        PPR.runner_id: "alive", PPR_W.runner_id: "alive",
        TR.runner_id: "stopped",
        TR_W.runner_id: "stopped",         # sent 5 s before its runner stopped: it does not outlive it
        GONE.runner_id: "dead",            # heartbeats stopped over an hour ago, no stop
        CLIENT.runner_id: "stopped",       # a client whose process went silent: not alive, and not dead
        CLIENT_LIVE.runner_id: "alive",    # its process (host + pid) still sends
        CLIENT_TR.runner_id: "stopped",    # heard from 2 s before the runner of its process stopped
        ONE_BEAT.runner_id: "alive"}
    by_id = {r["runner_id"]: r for r in qs.runners(APP)}
    assert not by_id[CLIENT.runner_id]["alive"] and by_id[CLIENT.runner_id]["role"] == "client"
    assert not by_id[TR_W.runner_id]["alive"]


def test_the_same_word_on_the_overview_anomalies_and_metrics(qs):
    ov = qs.overview(APP)
    assert ov["runners"] == {"alive": 3, "stopped": 2, "dead": 1, "clients": 3}
    an = qs.anomalies(APP)
    silent = [a for a in an["items"] if a["kind"] == "runner_silent"]
    assert [(a["runner_id"], a["runner_state"]) for a in silent] == [(GONE.runner_id, "dead")]
    # The worker under the stopped runner is not silent; what it ran is orphaned, and says its runner's word.
    orphaned = {a["invocation_id"]: a["runner_state"] for a in an["items"] if a["kind"] == "orphaned"}
    assert orphaned == {"tw-1": "stopped"}
    gauge = {state: n for app, state, n in qs.metrics_snapshot()["runners"] if app == APP}
    assert gauge == {"alive": 3, "stopped": 2, "dead": 1, "client": 3}  # clients counted apart


def test_ops_a_stopped_runner_is_not_late_and_no_zero_interval(qs):
    beats = {h["runner_id"]: h for h in qs.ops(APP)["heartbeats"]}
    assert beats[TR.runner_id]["state"] == "stopped" and beats[TR.runner_id]["late"] is False
    assert beats[GONE.runner_id]["state"] == "dead" and beats[GONE.runner_id]["late"] is True
    assert beats[PPR.runner_id]["state"] == "alive" and beats[PPR.runner_id]["every_s"] == 10.0
    assert beats[ONE_BEAT.runner_id]["every_s"] is None  # one beat: no interval (shown "—", never "0 s")


def test_labels_read_by_the_ids_shown(qs):
    ids = [PPR.runner_id, PPR_W.runner_id, TR.runner_id, TR_W.runner_id, CLIENT.runner_id, CLIENT_TR.runner_id,
           "never-seen-runner"]
    labels = qs.runner_labels(ids)
    assert {i: l["label"] for i, l in labels.items()} == {
        PPR.runner_id: "PersistentProcessRunner h1/10 ppr-6f1c2a9e-0001",  # a shared prefix: up to where they part
        PPR_W.runner_id: "PPRWorker h1/11 ppr-6f1c2a9e-0002",
        TR.runner_id: "ThreadRunner h2/20 0b7d44",                          # the class prefix is not repeated
        TR_W.runner_id: "ThreadRunner h2/20 0b7d99",
        CLIENT.runner_id: "ExternalRunner h4/40",                          # its id is only its class, host and pid
        CLIENT_TR.runner_id: "ExternalRunner h2/20 5e0c1d",                # ... and what follows them
        "never-seen-runner": "never-seen-runner"}                            # nothing else known: the whole id
    assert len({l["label"] for l in labels.values()}) == len(ids)
    # Unique among the ids asked about: alone, a runner's short id is six characters.
    assert qs.runner_labels([PPR.runner_id])[PPR.runner_id]["short"] == "ppr-6f"
    assert qs.runner_labels([]) == {}


def test_activity_pages(qs):
    first = qs.runner(PPR_W.runner_id, limit=2)
    seen = [(a["invocation_id"], a["status"]) for a in first["recent_activity"]]
    cursor = first["next_cursor"]
    while cursor:
        page = qs.runner(PPR_W.runner_id, limit=2, cursor=cursor)
        assert len(page["recent_activity"]) <= 2
        seen += [(a["invocation_id"], a["status"]) for a in page["recent_activity"]]
        cursor = page["next_cursor"]
    whole = qs.runner(PPR_W.runner_id, limit=100)
    assert whole["next_cursor"] is None
    assert seen == [(a["invocation_id"], a["status"]) for a in whole["recent_activity"]]
    assert seen == [(f"act-{k}", "RUNNING") for k in range(4, -1, -1)]
    with pytest.raises(BadRequest):
        qs.runner(PPR_W.runner_id, cursor="not-a-cursor")
