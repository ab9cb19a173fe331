"""Anomalies from a real pynenc 0.4 run through tasktrail's exporter (Python 3.12): a PPR worker process is
killed (kill -9) mid-task, another task is made slow; tasktrail flags that invocation orphaned (its worker's
heartbeats stopped: the parent reports only OS-alive children) and that one slow, the dead worker silent,
and nothing else."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from .helpers import is_running, json_steps, wait_flagged, require_python312, start_server, wait_until

PY312 = require_python312()
DEAD_AFTER = 5.0


@pytest.mark.slow
def test_killed_pynenc_worker_is_orphaned_and_slow_task_is_slow(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123",
                       "--runner-dead-after", str(DEAD_AFTER), "--slow-min-samples", "20")
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{srv.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_DB": str(tmp_path / "pn.sqlite"), "PYTHONPATH": str(Path(__file__).parent), "SLOW": "60"}
    err = open(tmp_path / "pn.stderr", "w")
    main = subprocess.Popen([PY312, str(Path(__file__).with_name("pn_anomalies_app.py"))], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
    steps = json_steps(main)
    try:
        wait_until(lambda: "slow" in steps or main.poll() is not None, timeout=180,
                   message="the pynenc run to submit its slow task")
        assert "slow" in steps, (tmp_path / "pn.stderr").read_text()[-3000:]
        hang, slow = steps["hang"]["id"], steps["slow"]["id"]

        wait_until(lambda: is_running(srv, hang) and is_running(srv, slow) and (tmp_path / "pid-hang").exists(),
                   timeout=60, message="both RUNNING")
        worker_pid = int((tmp_path / "pid-hang").read_text())
        worker = srv.get(f"/invocations/{hang}").json()["attempts"][-1]["worker_id"]
        os.kill(worker_pid, signal.SIGKILL)  # the worker process, mid-task; its parent runner lives on

        a = wait_flagged(srv, {("orphaned", hang), ("slow", slow)}, timeout=DEAD_AFTER * 8)
        assert is_running(srv, slow)
        invocations = {(x["kind"], x["invocation_id"]) for x in a["items"] if x.get("invocation_id")}
        assert invocations == {("orphaned", hang), ("slow", slow)}, a["items"]
        silent = {x["runner_id"] for x in a["items"] if x["kind"] == "runner_silent"}
        assert silent <= {worker}, a["items"]  # only the killed worker may be called silent
        assert {x["kind"] for x in a["items"]} <= {"orphaned", "slow", "runner_silent"}, a["items"]
        orphan = next(x for x in a["items"] if x["kind"] == "orphaned")
        assert orphan["runner_id"] == worker and "heartbeats stopped" in orphan["why"]
    finally:
        if main.poll() is None:
            os.killpg(main.pid, signal.SIGKILL)
        srv.stop()
