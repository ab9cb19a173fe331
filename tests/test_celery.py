"""A real Celery worker with its OpenTelemetry instrumentation, on the machine's Redis: statuses,
retries and parent/child links come back through tasktrail's API."""
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from .helpers import wait_until

APP = Path(__file__).with_name("celery_app")


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_celery_worker_statuses_retries_and_children(server, tmp_path):
    if not redis_up():
        if os.environ.get("CI"):
            raise RuntimeError("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    env = {**os.environ, "CELERY_BROKER": "redis://127.0.0.1:6379/15", "CELERY_BACKEND": "redis://127.0.0.1:6379/14",
           "CELERY_QUEUE": f"tt-{uuid.uuid4().hex[:8]}", "OTLP_HTTP": server.otlp_http, "PYTHONPATH": str(APP)}
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cel_tasks", "worker", "--pool=prefork",
                               "--concurrency=2", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
                              cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        client = subprocess.run([sys.executable, str(APP / "client.py")], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=120)
        assert client.returncode == 0, client.stderr[-3000:]
        sent = json.loads(client.stdout.strip().splitlines()[-1])
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    assert sent["states"] == {"add": "SUCCESS", "flaky": "FAILURE", "parent": "SUCCESS"}

    def detail(i):
        r = server.get(f"/invocations/{i}")
        return r.json() if r.status_code == 200 and r.json()["is_final"] else None

    assert wait_until(lambda: detail(sent["add"]), timeout=20, message="add")["status"] == "SUCCESS"
    flaky = wait_until(lambda: detail(sent["flaky"]), timeout=20, message="flaky")
    assert flaky["status"] == "FAILED" and flaky["task_id"] == "cel_tasks.flaky"
    full = server.get(f"/invocations/{sent['flaky']}/history").json()
    hist = [h["status"] for h in full]
    assert hist == ["REGISTERED", "RUNNING", "RETRY", "PENDING", "RUNNING", "RETRY", "PENDING", "RUNNING",
                    "FAILED"], full
    assert [a["attempt"] for a in flaky["attempts"]] == [0, 1, 2]
    for child in sent["children"]:
        d = wait_until(lambda c=child: detail(c), timeout=20, message="children")
        assert d["status"] == "SUCCESS" and d["parent_invocation_id"] == sent["parent"]
    fam = server.get(f"/invocations/{sent['children'][0]}/family").json()
    assert fam["root_id"] == sent["parent"]
    assert {e["child"] for e in fam["edges"] if e["parent"] == sent["parent"]} == set(sent["children"])
    runners = server.get("/runners", params={"app": "cel-app"}).json()
    assert any(r["runner_class"] == "CeleryWorkerProcess" and r["parent_runner_id"] for r in runners)


@pytest.mark.slow
def test_celery_task_no_worker_consumes_is_flagged_and_its_publisher_is_a_client(tmp_path):
    """A real instrumented Celery client publishes to a queue no worker consumes: past --max-pending the
    task is flagged with its queue named, and the publishing process is a client, not a silent runner."""
    from .helpers import start_server
    if not redis_up():
        if os.environ.get("CI"):
            raise RuntimeError("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--max-pending", "2",
                       "--runner-dead-after", "2")
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "CELERY_BROKER": "redis://127.0.0.1:6379/15", "CELERY_BACKEND": "redis://127.0.0.1:6379/14",
           "CELERY_QUEUE": f"tt-{uuid.uuid4().hex[:8]}", "OTLP_HTTP": srv.otlp_http, "PYTHONPATH": str(APP)}
    try:
        out = subprocess.run([sys.executable, str(APP / "publish_only.py"), queue], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr[-3000:]
        task_id = out.stdout.strip().splitlines()[-1]

        def flagged():
            items = srv.get("/anomalies").json()["items"]
            return items if any(x.get("invocation_id") == task_id for x in items) else None

        items = wait_until(flagged, timeout=30, interval=0.5, message="the unconsumed task flagged")
        stuck = next(x for x in items if x.get("invocation_id") == task_id)
        assert stuck["kind"] == "pending_too_long" and stuck["queue"] == queue
        assert f"never picked up: no runner consumes queue '{queue}'" in stuck["why"], stuck
        assert not [x for x in items if x["kind"] == "runner_silent"], items  # the web process only published
        publisher = [r for r in srv.get("/runners").json() if r["runner_class"] == "CeleryClient"]
        assert len(publisher) == 1 and publisher[0]["role"] == "client", publisher
    finally:
        srv.stop()
        # The message would wait in Redis for a worker forever: take it out again.
        import redis
        redis.Redis(db=15).delete(queue)
