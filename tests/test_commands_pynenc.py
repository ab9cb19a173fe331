"""Abort and re-run from tasktrail on a live pynenc 0.4 app (Python 3.12, SQLite backends) whose runner has
tasktrail's agent on (TASKTRAIL_AGENT, proto/pynenc_agent.py): what tasktrail's commands end as is compared
with what pynenc's own state backend says afterwards and with which task bodies ran.

The runner consumes the queue `default`; work routed to `parked` waits REGISTERED until a second runner
(no agent) consumes `parked` at the end."""
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tasktrail.proto.emitter import Emitter
from tasktrail.proto.urlpath import segment

from .helpers import final_command, post_command as post, require_python312, wait_until

PY312 = require_python312()
HERE = Path(__file__).resolve().parent
APP = str(HERE / "pn_commands_app.py")


def _env(server, tmp_path, **extra) -> dict:
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{server.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_DB": str(tmp_path / "pn.sqlite"), "PYTHONPATH": str(HERE), **extra}
    env.pop("TASKTRAIL_AGENT", None)
    env.update(extra)
    return env


def _run(env, tmp_path, *args) -> dict:
    proc = subprocess.run([PY312, APP, *args], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _runner(env, tmp_path) -> subprocess.Popen:
    return subprocess.Popen([PY312, APP, "runner"], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "runner.err", "a"))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def status_of(server, inv_id: str):
    r = server.get(f"/invocations/{segment(inv_id)}")
    return r.json()["status"] if r.status_code == 200 else None


@pytest.mark.slow
def test_pynenc_agent_aborts_queued_refuses_running_and_reruns_failed(server, tmp_path):
    runner = _runner(_env(server, tmp_path, TASKTRAIL_AGENT=server.web), tmp_path)
    parked_runner = None
    try:
        ids = _run(_env(server, tmp_path), tmp_path, "submit")
        parked, control, boom, slow = ids["parked"], ids["control"], ids["boom"], ids["slow"]

        # Abort of queued work (REGISTERED, no runner took it): pynenc's CONCURRENCY_CONTROLLED_FINAL, done.
        wait_until(lambda: status_of(server, parked) == "REGISTERED", timeout=30, message="the parked one known")
        cmd = post(server, f"/invocations/{segment(parked)}/abort")
        aborted = final_command(server, cmd["command_id"])
        assert aborted["state"] == "done", aborted
        assert [r["state"] for r in aborted["records"]] == ["requested", "delivered", "done"]
        assert "CONCURRENCY_CONTROLLED_FINAL" in aborted["reason"]
        agent_id = aborted["runner_id"]
        assert agent_id.startswith("TasktrailAgent@")
        wait_until(lambda: status_of(server, parked) == "CONCURRENCY_CONTROLLED_FINAL", timeout=30,
                   message="the aborted one final in tasktrail")
        final_row = server.get(f"/invocations/{segment(parked)}/history").json()[-1]
        assert (final_row["worker_id"] or final_row["runner_id"]) == agent_id   # the agent's own transition

        # Abort of running work: pynenc cannot stop it; refused with that reason, never done.
        wait_until(lambda: status_of(server, slow) == "RUNNING", timeout=30, message="slow running")
        refused = final_command(server, post(server, f"/invocations/{segment(slow)}/abort")["command_id"])
        assert refused["state"] == "refused", refused
        assert refused["reason"].startswith("RUNNING: pynenc 0.4 cannot stop running work"), refused["reason"]
        (tmp_path / "release").write_text("go")
        wait_until(lambda: status_of(server, slow) == "SUCCESS", timeout=30, message="slow finished after all")

        # Re-run of a failed invocation, with the arguments pynenc stored.
        wait_until(lambda: status_of(server, boom) == "FAILED", timeout=30, message="boom failed")
        (tmp_path / "marker").write_text("now it works")
        rerun = final_command(server, post(server, f"/invocations/{segment(boom)}/rerun")["command_id"])
        assert rerun["state"] == "done" and rerun["new_invocation_id"], rerun
        new = rerun["new_invocation_id"]
        wait_until(lambda: status_of(server, new) == "SUCCESS", timeout=30, message="the re-run succeeded")
        assert server.get(f"/invocations/{segment(new)}").json()["rerun_of"] == boom
        assert server.get(f"/invocations/{segment(boom)}").json()["reruns"] == [new]

        # A re-run of an invocation pynenc's state backend does not hold (tasktrail heard of it from another
        # sender): refused, as tasktrail's arguments are only previews.
        em = Emitter(server.otlp_http, "pn-cmds", "elsewhere", protocol="http/protobuf", token="tok123")
        em.status("not-in-pynenc", "REGISTERED", task_id="pn_commands_tasks.boom", arguments={"x": 1})
        em.status("not-in-pynenc", "FAILED", error_type="ValueError", error_message="elsewhere")
        em.flush()
        em.shutdown()
        wait_until(lambda: status_of(server, "not-in-pynenc") == "FAILED", timeout=30, message="the stranger")
        unknown = final_command(server, post(server, "/invocations/not-in-pynenc/rerun")["command_id"])
        assert unknown["state"] == "refused" and unknown["new_invocation_id"] is None, unknown
        assert unknown["reason"].startswith("arguments not known exactly: pynenc's state backend has no invocation")

        # A runner for `parked` takes the aborted one from the broker and drops it; the control one runs.
        parked_runner = _runner(_env(server, tmp_path, PN_QUEUES="parked"), tmp_path)
        wait_until(lambda: status_of(server, control) == "SUCCESS", timeout=30, message="the control ran")
    finally:
        for proc in (parked_runner, runner):
            if proc is not None:
                _stop(proc)

    # pynenc's own word (read by another process from its state backend), and the task bodies that ran.
    theirs = _run(_env(server, tmp_path), tmp_path, "inspect", parked, control, boom, slow, new)
    inv = theirs["invocations"]
    assert theirs["parked_left"] == 0                                   # retrieved by the parked runner ...
    assert inv[parked]["history"] == [["REGISTERED", "ExternalRunner"],
                                      ["CONCURRENCY_CONTROLLED_FINAL", "TasktrailAgent"]]   # ... and not run
    assert inv[control]["status"] == "SUCCESS" and inv[slow]["status"] == "SUCCESS"
    assert inv[boom]["status"] == "FAILED" and inv[new]["status"] == "SUCCESS"
    assert inv[new]["task_id"] == inv[boom]["task_id"]
    assert inv[new]["arguments"] == inv[boom]["arguments"] == {"x": 3, "label": "a b"}
    runs = [json.loads(line) for line in (tmp_path / "ran.jsonl").read_text().splitlines()]
    assert [r["args"] for r in runs if r["task"] == "quick"] == [{"x": 8}]          # the aborted one never ran
    assert [r["args"] for r in runs if r["task"] == "boom"] == [{"x": 3, "label": "a b"}] * 2
    assert [r["task"] for r in runs].count("slow-finished") == 1                   # the refused abort stopped nothing


_MACHINE = """
import json
from pynenc.invocation.status import InvocationStatus, get_status_definition
from tasktrail.proto.pynenc_agent import _cannot
print(json.dumps({s.name: {"final": s.is_final(), "owned": get_status_definition(s).requires_ownership,
                           "final_targets": sorted(t.name for t in get_status_definition(s).allowed_transitions
                                                   if t.is_final()),
                           "why": _cannot(s, get_status_definition(s))} for s in InvocationStatus}))
"""


def test_abort_follows_pynencs_own_status_machine():
    """What the agent aborts, and why it refuses the rest, against pynenc 0.4's own status machine: REGISTERED
    is the one unfinished status with a final transition that needs no owner (to CONCURRENCY_CONTROLLED_FINAL)."""
    proc = subprocess.run([PY312, "-c", _MACHINE], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    machine = json.loads(proc.stdout)
    assert len(machine) == 13
    abortable = {s: m["final_targets"] for s, m in machine.items()
                 if not m["final"] and not m["owned"] and m["final_targets"]}
    assert abortable == {"REGISTERED": ["CONCURRENCY_CONTROLLED_FINAL"]}
    for status, m in machine.items():
        if m["final"]:
            assert m["why"] == f"already finished ({status})"
        elif status in ("RUNNING", "PAUSED"):
            assert m["why"].startswith(f"{status}: pynenc 0.4 cannot stop running work")
        elif m["owned"]:
            assert m["why"].startswith(f"{status}: taken by a runner")
        elif status != "REGISTERED":
            assert m["why"].endswith("no final status that stops it") and not m["final_targets"], (status, m)
