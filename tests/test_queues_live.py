"""Issue 18, queues, live: real runners report how many messages wait per queue, tasktrail shows the same
numbers their brokers hold and flags a queue nobody consumes.

- pynenc 0.4 (Python 3.12; memory and SQLite backends): the exporter's depths equal pynenc's own
  `broker.count_invocations([queue])`, read in the same process.
- rustvello 0.9: `report_queue_depths` (proto/rustvello_queues.py) sends `App.queue_depths()`; queued work
  nobody consumes shows that depth and the flag, then a worker consumes it and the depth goes to 0.
- Celery on Redis: `tasktrail serve --celery-broker` polls the broker itself; the depth equals Redis's LLEN.
"""
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from .helpers import json_steps, require_python312, start_server, wait_until

HERE = Path(__file__).resolve().parent


def _queues(srv, app: str) -> dict:
    return {q["queue"]: q for q in srv.get("/queues", params={"app": app}).json()["queues"]}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["memory", "sqlite"])
def test_pynenc_depths_equal_pynencs_broker_counts(server, tmp_path, backend):
    py312 = require_python312()
    app = f"pn-queues-{backend}"
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{server.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "TASKTRAIL_QUEUE_INTERVAL": "0.3", "PN_BACKEND": backend, "PN_DB": str(tmp_path / "pn.sqlite"),
           "PYTHONPATH": str(HERE)}
    proc = subprocess.Popen([py312, str(HERE / "pn_queues_app.py"), "4"], cwd=tmp_path, env=env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(tmp_path / "pn.err", "w"))
    steps = json_steps(proc)
    try:
        wait_until(lambda: "counts" in steps or proc.poll() is not None, timeout=120, message="pynenc's counts")
        assert "counts" in steps, (tmp_path / "pn.err").read_text()[-3000:]
        theirs, runner_id = steps["counts"]["counts"], steps["counts"]["runner_id"]
        assert theirs == {"default": 0, "orphan": 4}  # what the run did, as pynenc's broker counts it

        def same():
            got = _queues(server, app)
            return got if {q: got[q]["depth"] for q in theirs if q in got} == theirs else None

        got = wait_until(same, timeout=30, interval=0.3, message="tasktrail's depths equal pynenc's counts")
        # The runner consumes `default` (its heartbeats and its own reports say so), nobody consumes `orphan`.
        assert {c["runner_id"] for c in got["default"]["consumers"]} == {runner_id}
        assert not got["default"]["unconsumed"]
        assert got["orphan"]["consumers"] == [] and got["orphan"]["unconsumed"]
        assert got["orphan"]["reported_by"] == runner_id and got["orphan"]["series"]["depth"][-1] == 4
        one = server.get(f"/queues/orphan", params={"app": app}).json()
        assert one["depth"] == 4 and one["unconsumed"]
    finally:
        if proc.poll() is None:
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            proc.wait(60)
    assert steps.get("done", {}).get("stats", {}).get("errors") == 0, steps


def _send(proc, line: str = "go") -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


@pytest.mark.slow
def test_rustvello_depths_nobody_consumes_then_drained(server, tmp_path):
    app = "rv-queues"
    proc = subprocess.Popen([sys.executable, str(HERE / "rv_queues_app.py"), server.otlp_http, "tok123",
                             str(tmp_path / "rv.sqlite"), "5"], cwd=tmp_path, text=True, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=open(tmp_path / "rv.err", "w"))
    steps = json_steps(proc)
    try:
        wait_until(lambda: "queued" in steps or proc.poll() is not None, timeout=60, message="work queued")
        assert "queued" in steps, (tmp_path / "rv.err").read_text()[-3000:]
        theirs = steps["queued"]["depths"]
        assert theirs == {"default": 5}  # rustvello's own count: five calls, no worker yet

        def depth_is(want: dict, flagged: bool):
            got = _queues(server, app)
            return got if {q: got[q]["depth"] for q in want if q in got} == want \
                and got["default"]["unconsumed"] is flagged else None

        got = wait_until(lambda: depth_is(theirs, True), timeout=30, interval=0.3, message="depth 5, flagged")
        assert got["default"]["consumers"] == []
        page = httpx.get(server.web + "/queues", params={"app": app}, timeout=30).text
        assert "nobody consumes this queue" in page
        _send(proc)
        wait_until(lambda: "drained" in steps or proc.poll() is not None, timeout=90, message="work drained")
        assert steps["drained"]["depths"] == {"default": 0} and steps["drained"]["results"] == list(range(5))
        got = wait_until(lambda: depth_is({"default": 0}, False), timeout=30, interval=0.3, message="depth 0")
        # The series holds both: five waiting, then none (one-second buckets over the last two minutes).
        assert max(got["default"]["series"]["peak"]) == 5 and got["default"]["series"]["depth"][-1] == 0
        series = server.get("/queues/default", params={"app": app, "since": "-2m"}).json()["series"]["depth"]
        assert series[0] == 5 and series[-1] == 0 and series.index(0) > series.index(5), series
        # The workers that took the work from `default` (rustvello names the queue on task.started) consume it.
        workers = {r["runner_id"] for r in server.get("/runners", params={"app": app}).json() if r["parent_runner_id"]}
        assert {c["runner_id"] for c in got["default"]["consumers"] if "work" in c["via"]} & workers, got["default"]
        metrics = httpx.get(server.web + "/metrics", timeout=30).text
        assert f'tasktrail_queue_depth{{app="{app}",queue="default"}} 0.0' in metrics
    finally:
        if proc.poll() is None:
            _send(proc)
            _send(proc)
            proc.wait(60)
    assert steps.get("done", {}).get("errors") == 0, steps
