"""A real pynenc 0.4.0 app (Python 3.12) with tasktrail's exporter: tasktrail's history of every
invocation equals pynenc's own state-backend history, and so do atomic-service executions."""
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tasktrail.demo import HERE as APP, PYNENC_RUN

from .helpers import require_python312, wait_until

ROOT = Path(__file__).resolve().parents[1]


PY312 = require_python312()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["thread", "ppr"])
def test_pynenc_histories_equal_pynencs_own(server, tmp_path, kind):
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{server.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_KIND": kind, "PN_DB": str(tmp_path / "pn.sqlite"), "PYTHONPATH": str(APP)}
    proc = subprocess.run([PY312, str(PYNENC_RUN)], capture_output=True, text=True, timeout=240,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert theirs["stats"]["errors"] == 0 and theirs["stats"]["dropped"] == 0
    histories = theirs["histories"]
    # The app did what the issue asks: a workflow with children, a retried failure, a trigger.
    tasks = theirs["tasks"]
    flaky = next(i for i, t in tasks.items() if t.endswith("flaky"))
    assert [h[0] for h in histories[flaky]].count("RETRY") == 2 and histories[flaky][-1][0] == "FAILED"
    assert len(histories) >= 8

    def ours(inv_id):
        r = server.get(f"/invocations/{inv_id}/history")
        return r.json() if r.status_code == 200 else None

    def all_arrived():
        got = {i: ours(i) for i in histories}
        return got if all(g is not None and len(g) == len(histories[i]) for i, g in got.items()) else None

    got = wait_until(all_arrived, timeout=30, message="every pynenc invocation in tasktrail")
    for inv_id, hist in histories.items():
        mine = got[inv_id]
        assert [h["status"] for h in mine] == [h[0] for h in hist], inv_id
        assert [h["worker_id"] or h["runner_id"] for h in mine] == [h[1] for h in hist], inv_id
        assert [h["owner_runner_id"] for h in mine] == [h[2] for h in hist], inv_id
    # Children, the triggered run, and the workflow are linked.
    flow = next(i for i, t in tasks.items() if t.endswith("flow"))
    fam = server.get(f"/invocations/{flow}/family").json()
    assert len([e for e in fam["edges"] if e["parent"] == flow]) == 3
    assert server.get(f"/invocations/{flow}").json()["workflow"]["role"] == "root"
    runs = server.get("/trigger-runs", params={"task": "pn_tasks.after_add"}).json()
    assert runs and all(r["triggered_invocation_id"] in histories for r in runs)
    # Atomic-service executions equal pynenc's stored ones.
    want = sorted(map(tuple, theirs["executions"]))
    assert want, "the atomic service ran at least once"

    def executions():
        have = sorted((e["run_id"], e["runner_id"], e["status"])
                      for e in server.get("/atomic-services/executions", params={"app": f"pn-{kind}"}).json())
        return have if have == want else None

    assert wait_until(executions, timeout=15, message="atomic-service executions") == want
    decisions = server.get("/atomic-services/decisions", params={"app": f"pn-{kind}"}).json()
    assert decisions and {d["reason"] for d in decisions} <= {
        "ASSIGNED", "NOT_ASSIGNED_SLOT", "NO_STABLE_RUNNERS", "SCHEDULED_RUNNER_IN_GRACE", "SLOT_WINDOW_INVALID",
        "LATE_START"}
    # The runner's loop ended (stop_runner_loop / SIGTERM): its context reads stopped, not silent or alive.
    def stopped():
        top = [r for r in server.get("/runners", params={"app": f"pn-{kind}"}).json()
               if r["runner_class"] != "ExternalRunner" and not r["parent_runner_id"]]
        return top if top and all(r["stopped_at"] and not r["alive"] for r in top) else None
    assert wait_until(stopped, timeout=15, message="the pynenc runner's stop")
    # The parent reports its workers' heartbeats without holding their contexts: it sends their ids alone,
    # never a placeholder class or host, and every context shows the class and host it said itself.
    sent = httpx.post(server.api + "/sql", timeout=30, json={"sql": f"""
        SELECT count(*) FILTER (WHERE runner_class IN ('Runner', 'BaseRunner', '')),
               count(*) FILTER (WHERE kind = 'heartbeat') FROM runner_events WHERE app_id = 'pn-{kind}'"""}).json()
    placeholders, heartbeats = sent["rows"][0]
    assert heartbeats > 0 and placeholders == 0, sent
    runners = server.get("/runners", params={"app": f"pn-{kind}"}).json()
    assert runners and all(r["runner_class"] not in ("Runner", None) and r["hostname"] for r in runners), runners
    assert {r["role"] for r in runners if r["runner_class"] == "ExternalRunner"} <= {"client"}
    assert all(r["role"] == "runner" for r in runners if r["runner_class"] != "ExternalRunner"), runners
    # pynenc's log lines (its logger pynenc.<app_id>) arrive through the exporter, each tied to the
    # invocation, task and runner context pynenc's own context filter gave it.
    def flaky_lines():
        lines = server.get(f"/invocations/{flaky}/logs").json()
        mine = [line for line in lines if line["message"] == "flaky(3) is about to fail"]
        return mine if len(mine) == 3 else None  # one per attempt
    lines = wait_until(flaky_lines, timeout=15, message="flaky's log lines")
    assert all(line["level"] == "WARN" and line["logger"] == f"pynenc.pn-{kind}" and line["task_id"] == tasks[flaky]
               for line in lines), lines
    attempts = {h["worker_id"] or h["runner_id"] for h in got[flaky] if h["status"] == "RUNNING"}
    assert {line["worker_id"] or line["runner_id"] for line in lines} <= attempts
    add = next(i for i, t in tasks.items() if t.endswith(".add"))
    assert any(line["message"].startswith("adding ") for line in server.get(f"/invocations/{add}/logs").json())
    # pynenc 0.4 stores no exception for a retry; the exporter takes it as pynenc retries, so every attempt
    # of the retried task shows the error that ended it.
    tried = server.get(f"/invocations/{flaky}").json()["attempts"]
    assert [a["status"] for a in tried] == ["RETRY", "RETRY", "FAILED"], tried
    assert all(a["error_type"] == "ValueError" and a["error_message"] == "bad 3" for a in tried), tried
    # The script's ExternalRunner ends with its process: reported stopped at exit, not alive for
    # --runner-dead-after after it is gone.
    def clients_stopped():
        clients = [r for r in server.get("/runners", params={"app": f"pn-{kind}"}).json()
                   if r["runner_class"] == "ExternalRunner"]
        return clients if clients and all(r["state"] == "stopped" and r["stopped_at"] for r in clients) else None
    assert wait_until(clients_stopped, timeout=15, message="the ExternalRunner stopped with its process")
