"""Calls, per-record runner contexts and retries that say why, from a real pynenc 0.4 run (Python 3.12)
through tasktrail's exporter, memory and SQLite backends: tasktrail's /calls page and API equal pynenc's own
call (its call id, arguments, and the invocations its orchestrator holds for it); every history record's
runner class, host, pid and thread equal the runner context pynenc's state backend holds for it; each RETRY
of a task that fails twice then succeeds shows the exception type and message it raised, and the ever-had-RETRY filter finds exactly it."""
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tasktrail.proto.urlpath import segment

from .helpers import require_python312, wait_until

PY312 = require_python312()
HERE = Path(__file__).resolve().parent


def _pynenc_run(server, tmp_path, kind) -> dict:
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{server.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_KIND": kind, "PN_DB": str(tmp_path / "pn.sqlite"), "PYTHONPATH": str(HERE)}
    proc = subprocess.run([PY312, str(HERE / "pn_calls_app.py")], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert theirs["stats"]["errors"] == 0 and theirs["stats"]["dropped"] == 0
    return theirs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mem", "sqlite"])
def test_calls_contexts_and_retries_equal_pynencs_own(server, tmp_path, kind):
    theirs = _pynenc_run(server, tmp_path, kind)
    app, histories = theirs["app_id"], theirs["histories"]

    def arrived():
        got = {}
        for inv_id, h in histories.items():
            r = server.get(f"/invocations/{segment(inv_id)}/history")
            if r.status_code != 200 or len(r.json()) != len(h["records"]):
                return None
            got[inv_id] = r.json()
        return got
    ours = wait_until(arrived, timeout=30, message="every pynenc invocation's history in tasktrail")

    # (a) Each call as pynenc holds it: id, task, arguments, the invocations its orchestrator has for it.
    assert len(theirs["calls"]) == 3 and any(len(c["invocation_ids"]) == 2 for c in theirs["calls"].values())
    for call_id, c in theirs["calls"].items():
        mine = server.get(f"/calls/{segment(call_id)}", params={"app": app}).json()
        assert (mine["call_id"], mine["app_id"], mine["task_id"], mine["arguments"]) == (
            call_id, app, c["task_id"], c["arguments"])
        assert sorted(i["invocation_id"] for i in mine["invocations"]) == c["invocation_ids"]
        assert mine["invocation_count"] == len(c["invocation_ids"]) and all(
            i["status"] == "SUCCESS" and i["created_at"] and i["duration_s"] is not None for i in mine["invocations"])
        page = httpx.get(f"{server.web}/calls/{segment(call_id)}", params={"app": app}, timeout=30)
        assert page.status_code == 200 and all(i in page.text for i in c["invocation_ids"])
    for inv_id, h in histories.items():
        assert server.get(f"/invocations/{segment(inv_id)}").json()["call_id"] == h["call_id"]

    # (b) Every record's runner context equals the one pynenc's state backend holds for the record.
    for inv_id, h in histories.items():
        assert [r["status"] for r in ours[inv_id]] == [s for s, _ in h["records"]], inv_id
        for row, (_, ctx_id) in zip(ours[inv_id], h["records"]):
            ctx = theirs["contexts"][ctx_id]
            assert (row["worker_id"] or row["runner_id"]) == ctx_id
            assert (row["runner_class"], row["hostname"], row["pid"], row["thread_id"]) == (
                ctx["runner_cls"], ctx["hostname"], ctx["pid"], ctx["thread_id"]), (inv_id, row)

    rows = [r for rs in ours.values() for r in rs]
    assert all(r["runner_class"] and r["hostname"] and r["pid"] and r["thread_id"] for r in rows)
    assert len({r["worker_id"] or r["runner_id"] for r in rows}) >= 2  # the submitter's and the runner's

    # (c) Each RETRY says what its attempt raised, in the history, the attempts and the task's errors.
    raised = [json.loads(line) for line in (tmp_path / "raised-s1.jsonl").read_text().splitlines()]
    assert len(raised) == 2
    shaky = theirs["shaky"]
    retries = [(r["error_type"], r["error_message"]) for r in ours[shaky] if r["status"] == "RETRY"]
    assert retries == [(e["type"], e["message"]) for e in raised]
    tried = server.get(f"/invocations/{segment(shaky)}").json()["attempts"]
    assert [(a["status"], a["error_type"], a["error_message"]) for a in tried] == [
        ("RETRY", e["type"], e["message"]) for e in raised] + [("SUCCESS", None, None)]
    task = histories[shaky]["call_id"].rsplit(":", 1)[0]
    errors = server.get(f"/tasks/{segment(task)}", params={"app": app, "since": "all"}).json()["errors"]
    assert [(e["error_type"], e["retried"], e["failed"]) for e in errors] == [("ValueError", 2, 0)]
    assert errors[0]["latest"]["message"] == raised[-1]["message"]

    # Ever had RETRY (Pynmon's status_mode=history): the retried invocation, by pynenc's own history, and only
    # it; by its current status (SUCCESS) it is not RETRY.
    ever = {inv_id for inv_id, h in histories.items() if any(s == "RETRY" for s, _ in h["records"])}
    assert ever == {shaky}
    listed = server.get("/invocations", params={"app": app, "status": "RETRY", "status_mode": "history",
                                                "since": "all"}).json()["items"]
    assert {i["invocation_id"] for i in listed} == ever and all(i["status"] == "SUCCESS" for i in listed)
    assert server.get("/invocations", params={"app": app, "status": "RETRY", "since": "all"}).json()["items"] == []
