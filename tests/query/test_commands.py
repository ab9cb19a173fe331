"""Commands (issue 19): the desk (tasktrail/commands.py) appending through the one writer, agents' reports
through ingest's decode and map (tasktrail.v1 `tasktrail.command`), and the read model (query/commands.py,
the SQL view `commands`), each checked against a scan of the log's `command_records`."""
import time
import uuid

import pytest

from tasktrail.commands import CommandDesk
from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import Conflict, NotFound


@pytest.fixture
def world(local):
    app = "cmd-" + uuid.uuid4().hex[:6]
    em = local.emitter(app, Runner("agent-1", "RustvelloAgent"))
    now = time.time()
    em.status("run-1", "REGISTERED", task_id="m.slow", timestamp=now - 5)
    em.status("run-1", "RUNNING", attempt=0, timestamp=now - 4)
    em.status("bad-1", "REGISTERED", task_id="m.fail", arguments={"x": 1}, timestamp=now - 5)
    em.status("bad-1", "FAILED", error_type="ValueError", timestamp=now - 3)
    em.flush()
    qs = local.service()
    return app, em, qs, CommandDesk(local.store, qs, ttl_s=600)


def _log(local, command_id):
    """The command's records as the log holds them: (state, runner_id), in order."""
    return local.store.query("SELECT state, runner_id FROM command_records WHERE command_id = ? ORDER BY ts, state",
                             [command_id]).rows


def test_request_hand_out_report_and_links(local, world):
    app, em, qs, desk = world
    abort = desk.request("abort", "invocation", "run-1", "local")
    rerun = desk.request("rerun", "invocation", "bad-1", "api")
    assert _log(local, abort["command_id"]) == [("requested", None)]     # durable when answered
    with pytest.raises(Conflict):
        desk.request("abort", "invocation", "bad-1", "local")          # finished: cannot be aborted
    with pytest.raises(Conflict):
        desk.request("rerun", "invocation", "run-1", "local")          # unfinished: cannot be re-run
    with pytest.raises(NotFound):
        desk.request("abort", "invocation", "nope", "local")
    assert {c["command_id"] for c in qs.pending_commands(app)} == {abort["command_id"], rerun["command_id"]}

    got = desk.hand_out(app, "agent-1")
    assert {c["command_id"] for c in got} == {abort["command_id"], rerun["command_id"]}
    assert desk.hand_out(app, "agent-2") == []                          # handed out once, to one agent
    assert _log(local, abort["command_id"]) == [("requested", None), ("delivered", "agent-1")]
    params = next(c for c in got if c["kind"] == "rerun")["parameters"]
    assert params["task_id"] == "m.fail" and params["invocations"] == ["bad-1"]

    em.command(abort["command_id"], "done", reason="cancelled")
    em.command(rerun["command_id"], "done", new_invocation_id="bad-2")
    em.status("bad-2", "REGISTERED", task_id="m.fail", timestamp=time.time())
    em.flush()
    one = qs.command(rerun["command_id"])
    assert (one["state"], one["runner_id"], one["requested_by"], one["new_invocation_id"]) == \
        ("done", "agent-1", "api", "bad-2")
    assert [r["state"] for r in one["records"]] == [s for s, _ in _log(local, rerun["command_id"])]
    assert qs.invocation("bad-2")["rerun_of"] == "bad-1"
    # The runs table links the re-run back to its original (and only that row).
    rows = {r["invocation_id"]: r["rerun_of"] for r in qs.runs(app=app, since="all")["items"]}
    assert rows == {"bad-2": "bad-1", "bad-1": None, "run-1": None}
    assert "bad-2" in qs.invocation("bad-1")["reruns"] and "fake-1" not in qs.invocation("bad-1")["reruns"]
    assert [c["command_id"] for c in qs.invocation("run-1")["commands"]] == [abort["command_id"]]
    listed = qs.commands(app=app, state="done")["items"]
    assert {c["command_id"] for c in listed} == {abort["command_id"], rerun["command_id"]}
    page1 = qs.commands(app=app, limit=1)
    page2 = qs.commands(app=app, limit=1, cursor=page1["next_cursor"])
    assert {page1["items"][0]["command_id"], page2["items"][0]["command_id"]} == \
        {abort["command_id"], rerun["command_id"]}


def test_expiry_once_and_a_late_report_wins(local, world):
    app, em, qs, _ = world
    desk = CommandDesk(local.store, qs, ttl_s=0.2)
    cmd = desk.request("abort", "invocation", "run-1", "local")
    queued = desk.request("rerun", "invocation", "bad-1", "local")
    assert desk.hand_out(app, "agent-1")
    em.flush()
    local.store.query("SELECT 1")
    time.sleep(0.3)
    assert desk.expire_due() >= 2
    assert desk.expire_due() == 0                                      # appended once
    assert qs.command(cmd["command_id"])["state"] == "expired"
    assert [s for s, _ in _log(local, queued["command_id"])].count("expired") == 1
    em.command(cmd["command_id"], "refused", reason="already finished")   # an agent reporting after restart
    em.flush()
    assert (qs.command(cmd["command_id"])["state"], qs.command(cmd["command_id"])["reason"]) == \
        ("refused", "already finished")


def test_read_only_and_bad_reports(local, world):
    app, em, qs, _ = world
    with pytest.raises(PermissionError):
        CommandDesk(local.store, qs, ttl_s=60, read_only=True).request("abort", "invocation", "run-1", "local")
    em.command("no-such-command", "done")                              # a report on no command: kept, not shown
    em.flush()
    with pytest.raises(NotFound):
        qs.command("no-such-command")
    assert _log(local, "no-such-command") == [("done", "agent-1")]


def test_workflow_run_commands(local):
    app = "wf-" + uuid.uuid4().hex[:6]
    em = local.emitter(app, Runner("w-1", "ThreadRunner"))
    now = time.time()
    em.status("root", "REGISTERED", task_id="m.flow", workflow_id="root", timestamp=now - 5)
    em.status("root", "RUNNING", attempt=0, workflow_id="root", timestamp=now - 4)
    for kid, final in (("k1", "SUCCESS"), ("k2", "RUNNING"), ("k3", "PENDING")):
        em.status(kid, "REGISTERED", task_id="m.step", workflow_id="root", parent_invocation_id="root",
                  timestamp=now - 3)
        em.status(kid, final, workflow_id="root", timestamp=now - 2)
    em.flush()
    qs = local.service()
    desk = CommandDesk(local.store, qs, ttl_s=600)
    with pytest.raises(Conflict):
        desk.request("rerun", "workflow_run", "root", "local")            # its root is still running
    with pytest.raises(NotFound):
        desk.request("abort", "workflow_run", "no-such-run", "local")
    cmd = desk.request("abort", "workflow_run", "root", "local")
    one = qs.command(cmd["command_id"])
    unfinished = sorted(i["invocation_id"] for i in qs.invocations(workflow="root", since="all")["items"]
                        if not i["is_final"])
    assert sorted(one["parameters"]["invocations"]) == unfinished == ["k2", "k3", "root"]
    # every member it names shows the command on its own page
    assert [c["command_id"] for c in qs.invocation("k3")["commands"]] == [cmd["command_id"]]
    assert qs.invocation("k1")["commands"] == []
    # While it is open, aborting one of its members is asking again: 409 naming the run's command.
    with pytest.raises(Conflict) as exc:
        desk.request("abort", "invocation", "k2", "local")
    assert cmd["command_id"] in str(exc.value) and "workflow run 'root'" in str(exc.value)
    assert "invocation 'k2'" in str(exc.value)


def test_retention_removes_whole_commands_past_the_window(tmp_path):
    from datetime import datetime, timedelta

    from tasktrail.store.retention import RetentionPolicy

    from ..helpers import LocalStore
    own = LocalStore(tmp_path / "r.duckdb")
    try:
        em = own.emitter("ret")
        em.status("r-1", "REGISTERED", task_id="m.t")
        em.status("r-1", "RUNNING")
        em.flush()
        desk = CommandDesk(own.store, own.service(), ttl_s=600)
        cmd = desk.request("abort", "invocation", "r-1", "local")
        desk.hand_out("ret", "agent-1")
        count = "SELECT count(*) FROM command_records"
        own.store.retain(RetentionPolicy(1, 1, 10_000), now=datetime.utcnow())
        assert own.store.query(count).rows == [(2,)]                       # within the window: kept
        own.store.retain(RetentionPolicy(1, 1, 10_000), now=datetime.utcnow() + timedelta(days=3))
        assert own.store.query(count).rows == [(0,)]                       # past it: the whole command goes
        with pytest.raises(NotFound):
            own.service().command(cmd["command_id"])
    finally:
        own.close()


def test_only_the_delivered_runner_closes_a_command(local, world):
    """A done/refused counts only from the command's app and the runner context it was delivered to, after
    that delivery; any other report stays in command_records (the scan) and changes nothing shown."""
    app, em, qs, desk = world
    abort = desk.request("abort", "invocation", "run-1", "local")
    rerun = desk.request("rerun", "invocation", "bad-1", "local")
    em.command(abort["command_id"], "done", reason="forged early")      # the rightful runner id, before delivery
    intruder = local.emitter("other-app", Runner("intruder"))
    intruder.command(rerun["command_id"], "done", reason="forged", new_invocation_id="fake-1")
    em.flush()
    intruder.flush()
    assert qs.command(abort["command_id"])["state"] == "requested"
    assert [r["state"] for r in qs.command(rerun["command_id"])["records"]] == ["requested"]
    assert qs.command(rerun["command_id"])["new_invocation_id"] is None   # no fake re-run link
    assert {c["command_id"] for c in qs.pending_commands(app)} == {abort["command_id"], rerun["command_id"]}

    assert {c["command_id"] for c in desk.hand_out(app, "agent-1")} == {abort["command_id"], rerun["command_id"]}
    same_app_other_runner = local.emitter(app, Runner("agent-2"))
    same_app_other_runner.command(abort["command_id"], "refused", reason="forged by a sibling")
    same_app_other_runner.flush()
    intruder.command(rerun["command_id"], "done", runner=Runner("agent-1"), new_invocation_id="fake-2")
    intruder.flush()                                                     # the right runner id, the wrong app
    assert (qs.command(abort["command_id"])["state"], qs.command(rerun["command_id"])["state"]) == \
        ("delivered", "delivered")
    assert qs.command(rerun["command_id"])["new_invocation_id"] is None
    assert "fake-2" not in qs.invocation("bad-1")["reruns"]
    scanned = [s for s, _ in _log(local, rerun["command_id"])]
    assert scanned.count("done") == 2                                    # the forged reports are kept, raw

    em.command(abort["command_id"], "refused", reason="already finished")   # the rightful agent
    em.command(rerun["command_id"], "done", new_invocation_id="bad-2")
    em.flush()
    got = qs.command(rerun["command_id"])
    assert (got["state"], got["runner_id"], got["new_invocation_id"]) == ("done", "agent-1", "bad-2")
    assert [(r["state"], r["runner_id"]) for r in got["records"]] == \
        [("requested", None), ("delivered", "agent-1"), ("done", "agent-1")]
    assert qs.command(abort["command_id"])["reason"] == "already finished"
    assert "bad-2" in qs.invocation("bad-1")["reruns"] and "fake-1" not in qs.invocation("bad-1")["reruns"]


def test_one_open_command_per_kind_and_target(local, world):
    app, em, qs, desk = world
    first = desk.request("abort", "invocation", "run-1", "local")
    with pytest.raises(Conflict) as exc:
        desk.request("abort", "invocation", "run-1", "local")
    assert first["command_id"] in str(exc.value)
    desk.hand_out(app, "agent-1")
    with pytest.raises(Conflict):                                        # delivered is still open
        desk.request("abort", "invocation", "run-1", "local")
    em.command(first["command_id"], "refused", reason="busy")
    em.flush()
    again = desk.request("abort", "invocation", "run-1", "local")       # final: a new one may be asked
    assert again["command_id"] != first["command_id"]
    requested = local.store.query("SELECT count(*) FROM command_records WHERE target = 'run-1' AND "
                                  "state = 'requested' AND app_id = ?", [app]).rows
    assert requested == [(2,)]


def test_state_filter_any_case_and_read_only_hands_out_nothing(local, world):
    app, em, qs, desk = world
    inv = "ro-" + uuid.uuid4().hex[:6]
    em.status(inv, "REGISTERED", task_id="m.slow")
    em.flush()
    cmd = desk.request("abort", "invocation", inv, "local")
    assert [c["command_id"] for c in qs.commands(app=app, state="REQUESTED")["items"]] == [cmd["command_id"]]
    ro = CommandDesk(local.store, qs, ttl_s=600, read_only=True)
    assert ro.hand_out(app, "agent-1") == []
    assert _log(local, cmd["command_id"]) == [("requested", None)]
