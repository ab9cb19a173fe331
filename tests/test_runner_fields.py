"""A record that knows less must not erase what another said (issue 14, kind 10).

A process that names a runner context it does not hold (pynenc's parent reporting its workers'
heartbeats, an atomic-service decision) used to send the placeholder class `Runner`, an empty host and
pid 0. Whatever order such records and the context's own records arrive in (within one batch, across
batches, across a restart), /runners, the overview's JSON twin and the timeline's lanes show the class,
host and pid the context said itself; and between two real reports the later one wins."""
from datetime import datetime, timedelta, timezone

import httpx

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import start_server, wait_until

PLACEHOLDER = {"runner_class": "Runner", "hostname": "", "pid": 0}  # what the old pynenc exporter sent


def _emitter(srv, app):
    return Emitter(endpoint=srv.otlp_http, app_id=app, protocol="http/protobuf", token="tok123")


def _placeholder(rid, parent=None):
    return Runner(rid, PLACEHOLDER["runner_class"], parent_id=parent, hostname=PLACEHOLDER["hostname"],
                  pid=PLACEHOLDER["pid"])


def _runners(srv, app):
    return {r["runner_id"]: r for r in srv.get("/runners", params={"app": app}).json()}


def _shown(srv, app, want: dict) -> dict:
    """Wait until /runners shows every runner of `want` with the given fields; returns /runners."""
    def ok():
        got = _runners(srv, app)
        return got if all(rid in got and all(got[rid][k] == v for k, v in fields.items())
                          for rid, fields in want.items()) else None
    try:
        return wait_until(ok, timeout=20, message=f"/runners showing {want}")
    except AssertionError:
        raise AssertionError(f"/runners shows {_runners(srv, app)}, wanted {want}") from None


def test_placeholders_never_hide_a_runners_own_class_host_and_pid(tmp_path):
    now = datetime.now(timezone.utc)
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        em = _emitter(srv, "fields")
        # 1. Placeholder first (its own batch), the context's own word later in another batch, then more
        #    placeholders: a parent's heartbeats for its worker, which registered itself in its own process.
        worker = Runner("ppr-w1", "PPRWorker", parent_id="ppr-1", hostname="host-a", pid=4101)
        em.heartbeat(_placeholder("ppr-w1"), timestamp=ago(120))
        assert em.flush()
        _shown(srv, "fields", {"ppr-w1": {"runner_class": "Runner"}})  # all that is known yet
        em.runner_started(worker, timestamp=ago(119))
        em.runner_started(Runner("ppr-1", "PersistentProcessRunner", hostname="host-a", pid=4100), timestamp=ago(121))
        em.status("inv-1", "REGISTERED", task_id="shop.pay", runner=worker, timestamp=ago(118))
        em.status("inv-1", "RUNNING", attempt=0, runner=worker, timestamp=ago(117))
        assert em.flush()
        em.heartbeat(_placeholder("ppr-w1"), timestamp=ago(60))
        em.atomic_decision("not_assigned_slot", runner=_placeholder("ppr-w1"), timestamp=ago(59))
        #    The parent's own process (its resource names it, with its host and pid) reports the worker by
        #    id alone: the parent's pid is not the worker's.
        parent = Emitter(endpoint=srv.otlp_http, app_id="fields", protocol="http/protobuf", token="tok123",
                         runner=Runner("ppr-1", "PersistentProcessRunner", hostname="host-a", pid=4100))
        parent.heartbeat(Runner("ppr-w1", None, hostname=None, pid=None), timestamp=ago(50))
        assert parent.flush()
        parent.shutdown()
        # 2. Real then placeholder within one batch, and a placeholder that is the latest record.
        em.runner_started(Runner("thr-1", "ThreadRunner", hostname="host-b", pid=5200), timestamp=ago(100))
        em.heartbeat(_placeholder("thr-1"), timestamp=ago(10))
        em.status("inv-2", "REGISTERED", task_id="shop.ship", runner=Runner("thr-1", "ThreadRunner",
                                                                             hostname="host-b", pid=5200),
                  timestamp=ago(90))
        em.status("inv-2", "RUNNING", attempt=0, runner=_placeholder("thr-1"), timestamp=ago(80))
        # 3. Two real reports arriving newest first: the later report (by its time) wins.
        em.runner_started(Runner("mt-1", "MultiThreadRunner", hostname="host-new", pid=7002), timestamp=ago(30))
        assert em.flush()
        em.runner_started(Runner("mt-1", "ThreadRunner", hostname="host-old", pid=7001), timestamp=ago(300))
        em.heartbeat(Runner("mt-1", None, hostname=None, pid=None), timestamp=ago(5))  # the id alone
        assert em.flush()
        want = {"ppr-w1": {"runner_class": "PPRWorker", "hostname": "host-a", "pid": 4101, "parent_runner_id": "ppr-1"},
                "thr-1": {"runner_class": "ThreadRunner", "hostname": "host-b", "pid": 5200},
                "mt-1": {"runner_class": "MultiThreadRunner", "hostname": "host-new", "pid": 7002}}
        _shown(srv, "fields", want)
        # The overview's JSON twin and the timeline's lanes read the same.
        ov = httpx.get(srv.web + "/", params={"format": "json", "app": "fields"}, timeout=30).json()
        listed = {r["runner_id"]: r for r in ov["runner_list"]}
        assert all(listed[rid][k] == v for rid, f in want.items() for k, v in f.items()), listed
        lanes = {lane["runner_id"]: lane for lane in srv.get("/timeline", params={
            "app": "fields", "since": ago(600).isoformat(), "until": now.isoformat()}).json()["lanes"]}
        assert lanes["ppr-w1"]["runner_class"] == "PPRWorker" and lanes["ppr-w1"]["hostname"] == "host-a"
        assert lanes["ppr-w1"]["parent_runner_id"] == "ppr-1"
        assert lanes["thr-1"]["runner_class"] == "ThreadRunner" and lanes["thr-1"]["hostname"] == "host-b"
        page = httpx.get(srv.web + "/runners", params={"app": "fields"}, timeout=30).text
        assert "PPRWorker" in page and ">Runner<" not in page
        em.shutdown()
    finally:
        srv.stop()

    # 4. Across a restart: the cache on disk keeps the real values, and placeholders sent after the
    #    restart (older and newer than the real reports) do not replace them.
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        em = _emitter(srv, "fields")
        em.heartbeat(_placeholder("ppr-w1"), timestamp=ago(1))
        em.heartbeat(_placeholder("mt-1"), timestamp=ago(400))
        em.runner_started(_placeholder("thr-1"), timestamp=ago(0))
        assert em.flush()
        wait_until(lambda: _runners(srv, "fields")["ppr-w1"]["last_heartbeat"] >= ago(2).replace(tzinfo=None)
                   .isoformat()[:19], timeout=20, message="the heartbeats sent after the restart")
        _shown(srv, "fields", want)
        # A real report later than the kept one still wins (the newest word of the context itself).
        em.runner_started(Runner("thr-1", "ThreadRunner", hostname="host-c", pid=5300), timestamp=now)
        assert em.flush()
        _shown(srv, "fields", {"thr-1": {"runner_class": "ThreadRunner", "hostname": "host-c", "pid": 5300}})
        em.shutdown()
    finally:
        srv.stop()
