"""Commands across restarts (issue 19): tasktrail killed with -9 between "requested" and "delivered", and an
agent killed with -9 after "delivered". Each command is handed out at most once and ends in a final state;
checked against a scan of the log (`command_records`) through /api/v1/sql."""
import json
import signal
import subprocess
import sys
import time

import httpx
import pytest

from tasktrail.proto.emitter import Emitter

from .helpers import final_command, post_command, sql, start_server, wait_until

POLL = ("import json, sys, httpx\n"
        "r = httpx.get(sys.argv[1] + '/api/v1/agent/commands', params={'app': 'rs', 'runner': sys.argv[2], 'wait': 20},"
        " headers={'Authorization': 'Bearer tok123'}, timeout=60)\n"
        "print(json.dumps(r.json()), flush=True)\n"
        "import time; time.sleep(600)\n")


def running_invocation(srv, inv_id: str) -> None:
    em = Emitter(srv.otlp_http, "rs", "worker-1", protocol="http/protobuf", token="tok123")
    em.status(inv_id, "REGISTERED", task_id="m.long")
    em.status(inv_id, "RUNNING", attempt=0)
    em.shutdown()
    wait_until(lambda: srv.get(f"/invocations/{inv_id}").status_code == 200, timeout=20, message="the invocation")


def poll(srv, runner: str, wait: float = 0) -> list:
    r = httpx.get(srv.api + "/agent/commands", params={"app": "rs", "runner": runner, "wait": wait},
                  headers={"Authorization": "Bearer tok123"}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["commands"]


def abort_then_stop(tmp_path, inv_id: str, sig: int) -> tuple[str, str]:
    """A server at a new store with `inv_id` running and an abort of it requested, then stopped with `sig`:
    (the store's path, the command's id)."""
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        running_invocation(srv, inv_id)
        cmd = post_command(srv, f"/invocations/{inv_id}/abort")["command_id"]
    finally:
        srv.stop(sig)
    return db, cmd


def states(srv, command_id: str) -> list:
    return [tuple(r) for r in sql(srv, f"SELECT state, runner_id FROM command_records WHERE command_id = "
                                       f"'{command_id}' ORDER BY ts, state")]


@pytest.mark.slow
def test_tasktrail_killed_between_requested_and_delivered(tmp_path):
    db, cmd = abort_then_stop(tmp_path, "inv-r1", signal.SIGKILL)
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        assert srv.get(f"/commands/{cmd}").json()["state"] == "requested"     # durable before the 202
        got = poll(srv, "agent-A", wait=5)
        assert [c["command_id"] for c in got] == [cmd]
        assert poll(srv, "agent-B") == [] and poll(srv, "agent-A") == []         # never handed out again
        em = Emitter(srv.otlp_http, "rs", "agent-A", protocol="http/protobuf", token="tok123")
        em.command(cmd, "done", reason="cancelled")
        em.shutdown()
        final = final_command(srv, cmd, timeout=20)
        assert final["state"] == "done" and final["runner_id"] == "agent-A"
        assert states(srv, cmd) == [("requested", None), ("delivered", "agent-A"), ("done", "agent-A")]
    finally:
        srv.stop()


@pytest.mark.slow
def test_agent_killed_after_delivered_expires_never_redelivered(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--command-ttl", "2")
    try:
        running_invocation(srv, "inv-r2")
        agent = subprocess.Popen([sys.executable, "-c", POLL, srv.web, "agent-dies"], stdout=subprocess.PIPE,
                                 text=True)
        try:
            time.sleep(0.5)   # the agent is waiting in its long-poll
            cmd = post_command(srv, "/invocations/inv-r2/abort")["command_id"]
            handed = json.loads(agent.stdout.readline())["commands"]
            assert [c["command_id"] for c in handed] == [cmd]
        finally:
            agent.send_signal(signal.SIGKILL)     # killed after "delivered", before acting or reporting
            agent.wait()
        assert poll(srv, "agent-restarted", wait=1) == []                       # at most once
        final = final_command(srv, cmd, timeout=30)
        assert final["state"] == "expired" and "2 s" in final["reason"], final
        assert states(srv, cmd) == [("requested", None), ("delivered", "agent-dies"), ("expired", "agent-dies")]
        time.sleep(2.5)   # another expiry pass appends nothing more
        assert [s for s, _ in states(srv, cmd)].count("expired") == 1
        assert srv.get("/invocations/inv-r2").json()["status"] == "RUNNING"     # nothing acted on it
    finally:
        srv.stop()


@pytest.mark.slow
def test_read_only_restart_hands_out_nothing_requested_earlier(tmp_path):
    db, cmd = abort_then_stop(tmp_path, "inv-ro", signal.SIGTERM)
    srv = start_server(db, "--ingest-token", "tok123", "--read-only")
    try:
        assert poll(srv, "x") == [] and poll(srv, "x", wait=1) == []
        assert states(srv, cmd) == [("requested", None)]                    # nothing appended
        assert srv.get(f"/commands/{cmd}").json()["state"] == "requested"
    finally:
        srv.stop()
    srv = start_server(db, "--ingest-token", "tok123")                     # writable again: handed out then
    try:
        assert [c["command_id"] for c in poll(srv, "x")] == [cmd]
    finally:
        srv.stop()
