"""Issue 18, queues, live: real runners report how many messages wait per queue, tasktrail shows the same
numbers their brokers hold and flags a queue nobody consumes.

- pynenc 0.4 (Python 3.12; memory and SQLite backends): the exporter's depths equal pynenc's own
  `broker.count_invocations([queue])`, read in the same process.
- rustvello 0.9: `report_queue_depths` (proto/rustvello_queues.py) sends `App.queue_depths()`; queued work
  nobody consumes shows that depth and the flag, then a worker consumes it and the depth goes to 0.
- Celery on Redis: `tasktrail serve --celery-broker` polls the broker itself; the depth equals Redis's LLEN.
"""
import os
import re
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
        assert 5 in series and series[-1] == 0 and 0 in series[series.index(5):], series  # (0 before: not queued yet)
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


@pytest.mark.slow
def test_celery_depths_polled_from_redis_equal_llen(tmp_path):
    """`tasktrail serve --celery-broker redis://...` counts Celery's queues itself: the depth it shows for a
    queue equals Redis's own LLEN of that queue's list, as messages are published and taken out; nobody
    consumes it until a real (instrumented) Celery worker takes its work, and then that worker does."""
    import redis

    from .test_celery import APP, redis_up
    if not redis_up():
        if os.environ.get("CI"):
            raise RuntimeError("Redis is not running on 127.0.0.1:6379")
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    # cel_tasks' instrumentation sends service.namespace "cel-app": the polled queues go to the same app.
    broker, queue, app = "redis://127.0.0.1:6379/13", f"tt-depth-{uuid.uuid4().hex[:8]}", "cel-app"
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--celery-broker", broker,
                       "--celery-app", app, "--celery-poll-interval", "0.3")
    r = redis.Redis.from_url(broker)
    env = {**os.environ, "CELERY_BROKER": broker, "CELERY_BACKEND": "redis://127.0.0.1:6379/14",
           "CELERY_QUEUE": queue, "OTLP_HTTP": srv.otlp_http, "PYTHONPATH": str(APP)}
    worker = None
    try:
        published = subprocess.run([sys.executable, "-c", "from cel_tasks import add\n"
                                    f"for i in range(3): add.apply_async((i, i), queue={queue!r})"],
                                   cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert published.returncode == 0, published.stderr[-3000:]

        def equal_llen():
            got = _queues(srv, app).get(queue)
            return got if got and got["depth"] == r.llen(queue) else None

        assert r.llen(queue) == 3
        got = wait_until(equal_llen, timeout=30, interval=0.3, message="the depth of Redis's LLEN")
        # Nobody consumes it (no worker took work from it; Redis names no consumers).
        assert got["unconsumed"] and got["consumers"] == [] and got["source"] == "tasktrail.v1"
        r.lpop(queue)  # a message taken out: the next poll says so
        assert r.llen(queue) == 2
        got = wait_until(lambda: (g := equal_llen()) and g["depth"] == 2 and g, timeout=30, interval=0.3,
                         message="the depth after one message was taken")
        assert got["reported_by"].startswith("celery-broker-poller@")
        worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "cel_tasks", "worker", "--pool=prefork",
                                   "--concurrency=1", "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
                                  cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        got = wait_until(lambda: (g := equal_llen()) and g["depth"] == 0 and g["consumers"] and g, timeout=90,
                         interval=0.5, message="the worker drained the queue and consumes it")
        runners = {x["runner_id"]: x for x in srv.get("/runners", params={"app": app}).json()}
        assert all(runners[c["runner_id"]]["runner_class"] == "CeleryWorkerProcess" and c["via"] == ["work"]
                   for c in got["consumers"]), (got, runners)
        assert not got["unconsumed"]
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        r.delete(queue)
        srv.stop()


@pytest.mark.slow
def test_celery_depths_polled_from_rabbitmq_with_consumer_count(tmp_path):
    """`--celery-broker amqp://...`: a passive queue.declare per queue; the depth equals the messages published
    and not taken, and a consumer attached to the queue (RabbitMQ counts it) lifts the "nobody consumes" flag."""
    from kombu import Connection, Consumer, Exchange, Queue
    url, queue, app = "amqp://guest:guest@127.0.0.1:5672//", f"tt-depth-{uuid.uuid4().hex[:8]}", "cel-rabbit"
    try:
        conn = Connection(url, connect_timeout=3)
        conn.ensure_connection(max_retries=1)
    except Exception as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"RabbitMQ is not running on 127.0.0.1:5672: {exc}")
    srv = start_server(str(tmp_path / "tt.duckdb"), "--celery-broker", url, "--celery-app", app,
                       "--celery-queues", f"{queue},tt-no-such-queue", "--celery-poll-interval", "0.3")
    q = Queue(queue, Exchange(queue, type="direct"), routing_key=queue, channel=conn.channel(), auto_delete=False)
    try:
        q.declare()
        producer = conn.Producer(conn.channel())
        for i in range(3):
            producer.publish({"i": i}, exchange=queue, routing_key=queue)
        got = wait_until(lambda: (g := _queues(srv, app).get(queue)) and g["depth"] == 3 and g, timeout=30,
                         interval=0.3, message="depth 3")
        assert got["consumer_count"] == 0 and got["unconsumed"]
        assert "tt-no-such-queue" not in _queues(srv, app)  # a queue the broker does not have is skipped
        taken = []
        consumer = Consumer(conn.channel(), queues=[q], callbacks=[lambda body, m: (taken.append(body), m.ack())],
                                 prefetch_count=1)
        consumer.consume()
        conn.drain_events(timeout=5)
        # One message taken and acked, the next delivered to the consumer (prefetch 1) and not acked yet:
        # RabbitMQ counts the one still ready.
        got = wait_until(lambda: (g := _queues(srv, app).get(queue)) and g["depth"] == 1 and g["consumer_count"] == 1
                         and g, timeout=30, interval=0.3, message="depth 1, one consumer")
        assert len(taken) == 1 and not got["unconsumed"]
        consumer.cancel()
    finally:
        srv.stop()
        q.delete()
        conn.release()


def test_the_documented_queue_depth_record(server):
    """docs/conventions.md's tasktrail.queue.depth record, posted as is, shows on /api/v1/queues; a depth record
    that is not one (no name, a negative depth) is kept raw and shows nowhere."""
    doc = (HERE.parent / "docs" / "conventions.md").read_text()
    body = re.search(r"## Queue depths.*?```json\n(.*?)```", doc, re.S).group(1)
    r = httpx.post(server.otlp_http + "/v1/logs", content=body,
                   headers={"Content-Type": "application/json", "Authorization": "Bearer tok123"})
    assert r.status_code == 200, r.text
    bad = body.replace('"intValue": "42"', '"intValue": "-1"').replace("9d41e7aa-1", "9d41e7aa-2")
    huge = body.replace('{"intValue": "42"}', f'{{"stringValue": "{1 << 63}"}}').replace("9d41e7aa-1", "9d41e7aa-3")
    for other in (bad, huge):
        assert httpx.post(server.otlp_http + "/v1/logs", content=other, headers={
            "Content-Type": "application/json", "Authorization": "Bearer tok123"}).status_code == 200
    got = wait_until(lambda: _queues_all(server, "shop").get("invoices"), message="the documented queue")
    assert got["depth"] == 42 and got["unconsumed"] and got["consumers"] == []
    assert wait_until(lambda: len(server.get("/logs", params={"since": "all", "q": "tasktrail.queue.depth"})
                                  .json()["items"]) == 2, message="the bad records kept raw")


def _queues_all(srv, app: str) -> dict:
    return {q["queue"]: q for q in srv.get("/queues", params={"app": app, "since": "all"}).json()["queues"]}


def test_a_bad_celery_broker_is_refused_at_start(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tasktrail", "serve", "--db", str(tmp_path / "x.duckdb"),
                          "--celery-broker", "http://127.0.0.1:1/"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "celery_broker must be a redis" in out.stderr, out.stderr
