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
    assert len(theirs) == 22 and "FAILED" in theirs.values()

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
    runners = server.get("/runners").json()
    workers = [r for r in runners if r["runner_class"] == "PersistentTokioWorker"]
    assert len(workers) == 4 and all(w["parent_runner_id"] for w in workers)
