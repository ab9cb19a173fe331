"""A live rustvello 0.9 app pointed at `tasktrail serve`: tasktrail agrees with rustvello."""
import json
import subprocess
import sys

import pytest

from .helpers import wait_until

from tasktrail.demo import RUSTVELLO_RUN as WORKLOAD


@pytest.mark.slow
def test_live_rustvello_statuses_match(server, tmp_path):
    proc = subprocess.run([sys.executable, str(WORKLOAD), server.otlp_http, "tok123", str(tmp_path / "rv.db"), "20"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(theirs) == 23 and "FAILED" in theirs.values()  # 20 adds, boom, fan, and the report it triggered

    def ours():
        got = {}
        for inv_id in theirs:
            r = server.get(f"/invocations/{inv_id}")
            if r.status_code != 200:
                return None
            got[inv_id] = r.json()["status"]
        return got if got == theirs else None

    assert wait_until(ours, timeout=20, message="tasktrail's statuses to equal rustvello's") == theirs
    fan = next(i for i in theirs if server.get(f"/invocations/{i}").json()["task_id"].endswith(".fan"))
    fam = server.get(f"/invocations/{fan}/family").json()
    assert len([e for e in fam["edges"] if e["parent"] == fan]) == 3
    assert all(n["status"] == "SUCCESS" for n in fam["nodes"])
    run = server.get(f"/workflows/runs/{fan}").json()  # the workflow id is the defining invocation's id
    assert run["status"] == "SUCCESS" and run["members"] == 3 and run["workflow_type"].endswith(".fan")
    assert sorted(m["task_id"].rsplit(".", 1)[-1] for m in run["members_list"]) == ["add"] * 3
    assert sum(sum(s["counts"]) for s in run["histogram"]["series"]) > 0
    boom = next(i for i, s in theirs.items() if s == "FAILED")
    hist = [h["status"] for h in server.get(f"/invocations/{boom}/history").json()]
    assert hist == ["REGISTERED", "RUNNING", "RETRY", "RUNNING", "RETRY", "RUNNING", "FAILED"]
    # Each retry says why: rustvello's retry_scheduled carries no error, its task.failed does (issue 18).
    detail = server.get(f"/invocations/{boom}").json()
    assert [(t["status"], t["error_type"]) for t in detail["attempts"]] == [
        ("RETRY", "ValueError"), ("RETRY", "ValueError"), ("FAILED", "ValueError")]
    errors = server.get(f"/tasks/{detail['task_id']}", params={"since": "all"}).json()["errors"]
    assert [(e["error_type"], e["retried"], e["failed"]) for e in errors] == [("ValueError", 2, 1)]
    runners = server.get("/runners").json()
    workers = [r for r in runners if r["runner_class"] == "PersistentTokioWorker"]
    assert len(workers) == 4 and all(w["parent_runner_id"] for w in workers)


@pytest.mark.slow
def test_live_rustvello_task_logs_event_and_trigger_run(server, tmp_path):
    """What the demo app sends beside rustvello's own telemetry, through tasktrail's emitter: its tasks' log
    lines tied to their invocations, and an event whose trigger run links the invocation it created."""
    proc = subprocess.run([sys.executable, str(WORKLOAD), server.otlp_http, "tok123", str(tmp_path / "rv.db"), "3"],
                          capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    tasks = wait_until(lambda: (lambda got: got if all(got.values()) else None)(
        {i: (server.get(f"/invocations/{i}").json() if server.get(f"/invocations/{i}").status_code == 200 else {})
         .get("task_id") for i in theirs}), timeout=20, message="every invocation stored")
    boom = next(i for i, t in tasks.items() if t.endswith(".boom"))
    lines = wait_until(lambda: server.get(f"/invocations/{boom}/logs").json() or None, timeout=20,
                       message="boom's log lines")
    texts = [line["message"] for line in lines]
    assert texts.count("boom(1) is about to fail") == 3, texts  # one per attempt
    mine = [line for line in lines if line["message"].startswith("boom(")]
    assert all(line["level"] == "WARN" and line["logger"] == "demo.rustvello" for line in mine), mine
    # and rustvello's own lines of its retries and its failure, at their levels
    own = [(line["level"], line["message"].split(":")[0]) for line in lines if line["logger"].startswith("rustvello::")]
    assert own.count(("WARN", "Failed status")) == 2 and ("ERROR", "Invocation status") in own, own
    add = next(i for i, t in tasks.items() if t.endswith(".add"))
    lines = server.get(f"/invocations/{add}/logs").json()
    assert any(line["message"].startswith("adding ") for line in lines)
    # rustvello's own unified line for it, with the worker that ran it under its runner (full ids).
    ran = [line for line in lines if line["message"] == "Invocation completed status:success"]
    assert len(ran) == 1 and ran[0]["logger"] == "rustvello::runner::executor_common", lines
    workers = {r["runner_id"]: r for r in server.get("/runners").json()}
    assert workers[ran[0]["worker_id"]]["parent_runner_id"] == ran[0]["runner_id"]
    report = next(i for i, t in tasks.items() if t.endswith(".report"))
    events = wait_until(lambda: [e for e in server.get("/events", params={"code": "demo.batch.done", "since": "-1h"})
                                 .json() if e] or None, timeout=20, message="the batch event")
    assert len(events) == 1
    assert events[0]["triggered_invocation_ids"] == [report]
    runs = server.get("/trigger-runs", params={"since": "-1h"}).json()
    run = next(r for r in runs if r["triggered_invocation_id"] == report)
    assert run["event_ids"] == [events[0]["event_id"]] and run["task_id"] == tasks[report]
