"""Abort and re-run of Celery tasks (issue 19, docs/control.md): `tasktrail serve --celery-broker` is the
Celery app's agent itself. A real instrumented Celery worker on the machine's Redis; the commands are asked
through the API and what they did is checked on Celery's side (the worker's process, the result backend)
and in tasktrail (KILLED, the re-run links)."""
import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
import redis

from tasktrail.proto.emitter import Emitter

from .helpers import final_command, post_command, start_server, wait_until
from .test_celery import APP, redis_up

BROKER, BACKEND = "redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/14"


def _require_redis() -> None:
    if not redis_up():
        if os.environ.get("CI"):
            raise RuntimeError("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")


def _status(srv, inv: str, status: str, timeout: float = 30) -> dict:
    def reads():
        r = srv.get(f"/invocations/{inv}")
        return r.json() if r.status_code == 200 and r.json()["status"] == status else None
    try:
        return wait_until(reads, timeout=timeout, interval=0.2, message=f"{inv} {status}")
    except AssertionError as exc:   # say what it reads instead
        raise AssertionError(f"{exc}; its history: {srv.get(f'/invocations/{inv}/history').text}") from None


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
def test_celery_abort_queued_and_running_and_rerun_with_its_arguments(tmp_path):
    _require_redis()
    queue = f"tt-ctl-{uuid.uuid4().hex[:8]}"
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--celery-broker", BROKER,
                       "--celery-app", "cel-app", "--celery-result-backend", BACKEND, "--celery-queues", queue)
    env = {**os.environ, "CELERY_BROKER": BROKER, "CELERY_BACKEND": BACKEND, "CELERY_QUEUE": queue,
           "OTLP_HTTP": srv.otlp_http, "PYTHONPATH": str(APP)}
    # one pool process: the second sleeper waits (queued) behind the first, which runs
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cel_tasks", "worker", "--pool=prefork",
                               "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle",
                               "-Q", queue], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    rd = redis.Redis.from_url(BACKEND)
    keys = [f"{queue}-running", f"{queue}-queued"]
    try:
        sent = subprocess.run([sys.executable, str(APP / "send.py"), json.dumps([
            ["cel_tasks.sleepy", [keys[0], 60], {}], ["cel_tasks.sleepy", [keys[1], 60], {}],
            ["cel_tasks.boom", [7], {"y": "z"}]])], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert sent.returncode == 0, sent.stderr[-3000:]
        running, queued, failed = json.loads(sent.stdout.strip().splitlines()[-1])
        pid = int(wait_until(lambda: rd.get(keys[0]), timeout=30, message="the first sleeper running"))
        _status(srv, queued, "REGISTERED")
        # tasktrail is the app's agent: the buttons show for cel-app
        panel = srv.get(f"/invocations/{running}/control").json()
        assert panel["abort"] and panel["agents"][0]["runner_id"].startswith("tasktrail-celery@"), panel

        # abort the queued one: it never runs
        c = final_command(srv, post_command(srv, f"/invocations/{queued}/abort")["command_id"])
        assert c["state"] == "done", c
        assert c["records"][-1]["runner_id"].startswith("tasktrail-celery@")
        assert _status(srv, queued, "KILLED")["status"] == "KILLED"
        # abort the running one: its pool process is terminated
        c = final_command(srv, post_command(srv, f"/invocations/{running}/abort")["command_id"])
        assert c["state"] == "done", c
        wait_until(lambda: _gone(pid), timeout=20, message=f"the pool process {pid} running the task terminated")
        assert wait_until(lambda: rd.get(f"celery-task-meta-{running}"), timeout=20, message="its result")
        assert json.loads(rd.get(f"celery-task-meta-{running}"))["status"] == "REVOKED"
        assert _status(srv, running, "KILLED")["status"] == "KILLED"

        # the failed task runs once the pool is free; the revoked one before it never ran
        original = _status(srv, failed, "FAILED", timeout=40)
        assert rd.get(keys[1]) is None and json.loads(rd.get(f"celery-task-meta-{queued}"))["status"] == "REVOKED"
        assert srv.get(f"/invocations/{failed}/control").json()["rerun"]
        c = final_command(srv, post_command(srv, f"/invocations/{failed}/rerun")["command_id"])
        assert c["state"] == "done" and c["new_invocation_id"], c
        new = c["new_invocation_id"]
        again = _status(srv, new, "FAILED", timeout=40)
        meta = json.loads(rd.get(f"celery-task-meta-{new}"))   # what the worker ran: the same task and arguments
        assert (meta["name"], meta["args"], meta["kwargs"]) == ("cel_tasks.boom", [7], {"y": "z"}), meta
        assert again["task_id"] == original["task_id"] == "cel_tasks.boom"
        assert again["rerun_of"] == failed and new in srv.get(f"/invocations/{failed}").json()["reruns"]

        # the result gone from the backend: the arguments are not known, the re-run is refused saying so
        rd.delete(f"celery-task-meta-{failed}")
        c = final_command(srv, post_command(srv, f"/invocations/{failed}/rerun")["command_id"])
        assert c["state"] == "refused" and "no extended result" in c["reason"], c
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
        srv.stop()
        rd.delete(*keys)
        redis.Redis.from_url(BROKER).delete(queue)


@pytest.mark.slow
def test_celery_rerun_without_a_result_backend_is_refused_naming_why(tmp_path):
    _require_redis()
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--celery-broker", BROKER,
                       "--celery-app", "cel-app", "--celery-queues", "tt-none")
    try:
        em = Emitter(srv.otlp_http, "cel-app", "w1", protocol="http/protobuf", token="tok123")
        em.status("cel-over", "REGISTERED", task_id="cel_tasks.boom")
        em.status("cel-over", "FAILED", error_type="ValueError")
        em.shutdown()
        _status(srv, "cel-over", "FAILED")
        c = final_command(srv, post_command(srv, "/invocations/cel-over/rerun")["command_id"])
        assert c["state"] == "refused" and "no --celery-result-backend" in c["reason"], c
    finally:
        srv.stop()


def test_celery_broker_unreachable_refuses_the_command_with_the_reason_and_the_server_goes_on(tmp_path):
    """No broker where --celery-broker points: each command is refused naming the broker's error; tasktrail
    stays up and takes the next one."""
    import socket
    with socket.socket() as s:   # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--celery-broker",
                       f"redis://127.0.0.1:{port}/0", "--celery-result-backend", f"redis://127.0.0.1:{port}/1",
                       "--celery-app", "cel-app", "--celery-queues", "tt-none")
    try:
        em = Emitter(srv.otlp_http, "cel-app", "w1", protocol="http/protobuf", token="tok123")
        em.status("cel-run", "REGISTERED", task_id="cel_tasks.sleepy")
        em.status("cel-bad", "REGISTERED", task_id="cel_tasks.boom")
        em.status("cel-bad", "FAILED", error_type="ValueError")
        em.shutdown()
        _status(srv, "cel-bad", "FAILED")
        for path in ("/invocations/cel-run/abort", "/invocations/cel-bad/rerun"):
            c = final_command(srv, post_command(srv, path)["command_id"])
            assert c["state"] == "refused" and "Connection refused" in c["reason"], c
        assert srv.proc.poll() is None and srv.get("/invocations/cel-run").json()["status"] == "REGISTERED"
    finally:
        srv.stop()
