"""Anomalies from a real rustvello 0.9 run: one worker process is killed (kill -9) while it runs a task,
one task is made slow; tasktrail flags exactly that invocation as orphaned and that one as slow, the
killed runner's contexts as silent, and nothing else."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from .helpers import is_running, json_steps, wait_flagged, start_server, wait_until

APP = Path(__file__).with_name("rv_anomalies_app.py")
DEAD_AFTER = 4.0


def _spawn(role, srv, db, *extra):
    err = open(db.parent / f"{role}.stderr", "w")  # rustvello logs a line per task there: never a full pipe
    return subprocess.Popen([sys.executable, str(APP), role, srv.otlp_http, "tok123", str(db), *extra],
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=db.parent)


@pytest.mark.slow
def test_killed_worker_is_orphaned_and_slow_task_is_slow(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123",
                       "--runner-dead-after", str(DEAD_AFTER), "--slow-min-samples", "20")
    db = tmp_path / "rv.db"
    victim = main = None
    try:
        main = _spawn("main", srv, db, "60", "25")
        steps = json_steps(main)
        wait_until(lambda: "history" in steps, timeout=120, message="the task's history (25 quick runs)")
        victim = _spawn("victim", srv, db)  # after main made rustvello's tables: one of them at a time
        wait_until(lambda: "slow" in steps, timeout=120, message="the rustvello run to submit its slow task")
        hang, slow = steps["hang"]["id"], steps["slow"]["id"]

        wait_until(lambda: is_running(srv, hang) and is_running(srv, slow), timeout=60,
                   message="both to be RUNNING")
        victim_runners = {r["runner_id"] for r in srv.get("/runners").json() if r["pid"] == victim.pid}
        assert victim_runners, "the victim process's runner contexts are known"
        os.kill(victim.pid, signal.SIGKILL)  # mid-task: no worker.stopped, no task outcome
        victim.wait(10)

        a = wait_flagged(srv, {("orphaned", hang), ("slow", slow)}, timeout=DEAD_AFTER * 6)
        assert is_running(srv, slow), "the check ran while the slow task still ran"
        invocations = {(x["kind"], x["invocation_id"]) for x in a["items"] if x.get("invocation_id")}
        assert invocations == {("orphaned", hang), ("slow", slow)}, a["items"]
        silent = {x["runner_id"] for x in a["items"] if x["kind"] == "runner_silent"}
        assert silent == victim_runners, (silent, victim_runners)
        assert {x["kind"] for x in a["items"]} == {"orphaned", "slow", "runner_silent"}, a["items"]
        orphan = next(x for x in a["items"] if x["kind"] == "orphaned")
        assert "silent since" in orphan["why"] and orphan["link"] == f"/invocations/{hang}"
        slow_item = next(x for x in a["items"] if x["kind"] == "slow")
        assert "p99" in slow_item["why"] and "25 finished" in slow_item["why"]
        # The overview says it too, and so does /metrics.
        assert srv.get("/overview").json()["anomalies"]["orphaned"] == 1
        metrics = httpx.get(srv.web + "/metrics", timeout=30).text
        assert 'tasktrail_anomalies{app="anomalies",kind="orphaned"} 1.0' in metrics
        assert 'tasktrail_anomalies{app="anomalies",kind="slow"} 1.0' in metrics
        assert 'tasktrail_anomalies{app="anomalies",kind="pending_too_long"} 0.0' in metrics
    finally:
        for p in (victim, main):
            if p is not None and p.poll() is None:
                p.kill()
        srv.stop()
