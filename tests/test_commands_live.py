"""Abort and re-run from tasktrail on a live rustvello 0.9 app with tasktrail's agent attached (issue 19):
what tasktrail's commands end as is compared with what rustvello itself says and with which task bodies ran."""
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .helpers import final_command, json_steps, post_command as post, wait_until

APP = Path(__file__).with_name("rv_commands_app.py")


def status_of(server, inv_id: str):
    r = server.get(f"/invocations/{inv_id}")
    return r.json()["status"] if r.status_code == 200 else None


def start_app(server, tmp_path, *extra):
    proc = subprocess.Popen([sys.executable, str(APP), server.web, server.otlp_http, "tok123", str(tmp_path / "rv.db"),
                             str(tmp_path / "marker"), *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    return proc, json_steps(proc)


@pytest.mark.slow
def test_abort_queued_and_running_and_rerun_failed(server, tmp_path):
    proc, steps = start_app(server, tmp_path)
    try:
        queued = wait_until(lambda: steps.get("queued"), timeout=60, message="the queued invocation")["queued"]
        wait_until(lambda: status_of(server, queued), timeout=30, message="tasktrail to know the queued invocation")
        cmd = post(server, f"/invocations/{queued}/abort")
        assert cmd["state"] == "requested" and cmd["kind"] == "abort" and cmd["target"] == queued
        done = final_command(server, cmd["command_id"])
        assert done["state"] == "done" and done["runner_id"] == steps["queued"]["runner"], done
        assert [r["state"] for r in done["records"]] == ["requested", "delivered", "done"]
        wait_until(lambda: status_of(server, queued) == "KILLED", timeout=30, message="the queued one KILLED")

        proc.stdin.write("start\n")
        proc.stdin.flush()
        started = wait_until(lambda: steps.get("started"), timeout=60, message="the runner")
        slow, flaky = started["slow"], started["flaky"]
        wait_until(lambda: status_of(server, slow) == "RUNNING", timeout=30, message="slow running")
        abort = final_command(server, post(server, f"/invocations/{slow}/abort")["command_id"])
        assert abort["state"] == "done", abort
        # The agent reports rustvello's cancellation as KILLED. rustvello 0.9's own telemetry sometimes also
        # reports the abandoned attempt as task.failed (TaskExecutionError) while its state says CANCELLED;
        # a FAILED outcome then ends the history by the one rule (docs/control.md says so).
        wait_until(lambda: "KILLED" in [h["status"] for h in server.get(f"/invocations/{slow}/history").json()],
                   timeout=30, message="the agent's KILLED for slow")
        assert status_of(server, slow) in ("KILLED", "FAILED")
        wait_until(lambda: status_of(server, flaky) == "FAILED", timeout=30, message="flaky failed")
        (tmp_path / "marker").write_text("now it works")
        rerun = final_command(server, post(server, f"/invocations/{flaky}/rerun")["command_id"])
        assert rerun["state"] == "done" and rerun["new_invocation_id"], rerun
        new = rerun["new_invocation_id"]
        assert wait_until(lambda: status_of(server, new) == "SUCCESS", timeout=30, message="the re-run succeeded")
        assert server.get(f"/invocations/{new}").json()["rerun_of"] == flaky
        assert server.get(f"/invocations/{flaky}").json()["reruns"] == [new]
        # a second abort of the finished one is refused before it is a command
        assert httpx.post(server.api + f"/invocations/{flaky}/abort", timeout=30).status_code == 409
    finally:
        proc.stdin.write("finish\n")
        proc.stdin.flush()
        theirs = wait_until(lambda: steps.get("done"), timeout=60, message="the app's own account")
        proc.wait(30)
    # rustvello's own word, and the task bodies that ran
    assert theirs["statuses"][queued] == "CANCELLED" and theirs["statuses"][slow] == "CANCELLED"
    assert theirs["statuses"][flaky] == "FAILED" and theirs["statuses"][new] == "SUCCESS"
    hist = [h["status"] for h in server.get(f"/invocations/{queued}/history").json()]
    assert "RUNNING" not in hist and hist[-1] == "KILLED", hist
    tasks = [r["task"] for r in theirs["ran"]]
    assert "quick" not in tasks and "slow-finished" not in tasks        # the aborted ones never ran / finished
    flakies = [r["args"] for r in theirs["ran"] if r["task"] == "flaky"]
    assert flakies == [{"x": 3, "label": "a b"}] * 2                    # re-run with the exact arguments
    assert [h["state"] for h in theirs["handled"]] == ["done", "done", "done"]     # each carried out once
