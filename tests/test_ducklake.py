"""Past one machine: three `tasktrail ingest` processes and one `tasktrail web` on a DuckLake store
(catalog in the machine's PostgreSQL, Parquet under a shared folder)."""
import itertools
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import fixture_requests, start_server, wait_until
from .reliability import PB, numbered_request, stored_lines

PG = "host=127.0.0.1 user=postgres"


def _pg(sql: str, db: str = "postgres") -> subprocess.CompletedProcess:
    return subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", db, "-q", "-c", sql],
                          capture_output=True, text=True)


@pytest.fixture
def lake(tmp_path):
    """A fresh PostgreSQL database for the catalog (PostgreSQL is started if it is down)."""
    if _pg("select 1").returncode != 0:
        subprocess.run("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start", shell=True)
        if not wait_until(lambda: _pg("select 1").returncode == 0, timeout=30, message="PostgreSQL"):
            pytest.skip("no PostgreSQL")
    name = f"tt_{uuid.uuid4().hex[:10]}"
    assert _pg(f"create database {name}").returncode == 0
    yield f"ducklake:postgres:dbname={name} {PG}", str(tmp_path / "lake")
    _pg(f"drop database if exists {name} with (force)")


class Node:
    def __init__(self, role, store, data, *extra):
        cmd = [sys.executable, "-m", "tasktrail", role, "--store", store, "--data-path", data, "--http-port", "0",
               "--otlp-http-port", "0", "--otlp-grpc-port", "0", "--ingest-token", "tok123", "--log-level",
               "warning", "--lake-commit-interval", "0.2", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.lines, want = [], 1 if role == "web" else 2
        found = {}
        deadline = time.monotonic() + 60
        while len(found) < want and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            for key, pat in (("web", r"web \+ API\s+(http://\S+)"), ("http", r"OTLP HTTP\s+(http://\S+)"),
                             ("grpc", r"OTLP gRPC\s+(\S+)")):
                m = re.search(pat, line)
                if m:
                    found[key] = m.group(1)
        assert len(found) >= want, "".join(self.lines) + (self.proc.stdout.read() if self.proc.poll() else "")
        threading.Thread(target=lambda: [self.lines.append(x) for x in self.proc.stdout], daemon=True).start()
        self.web, self.otlp_http, self.otlp_grpc = found.get("web"), found.get("http"), found.get("grpc")
        self.api = (self.web or "") + "/api/v1"

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


def _emit(endpoint, protocol, app, t0):
    """tasktrail.v1 traffic from one runner: a parent with a failing child, heartbeats, an event."""
    runner = Runner(f"runner-{app}", "PersistentProcessRunner", hostname="h1", pid=100)
    em = Emitter(endpoint=endpoint, app_id=app, runner=runner, protocol=protocol, token="tok123")
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    parent, child = f"{app}-parent", f"{app}-child"
    em.runner_started(timestamp=at(0))
    em.heartbeat(timestamp=at(0.2))
    em.status(parent, "REGISTERED", task_id="shop.checkout", timestamp=at(1))
    em.status(parent, "RUNNING", attempt=0, timestamp=at(1.2))
    em.status(child, "REGISTERED", task_id="shop.pay", parent_invocation_id=parent, timestamp=at(1.3))
    em.status(child, "RUNNING", attempt=0, timestamp=at(1.4))
    em.status(child, "FAILED", attempt=0, error_type="CardDeclined", timestamp=at(1.5))
    em.status(parent, "SUCCESS", timestamp=at(2.1))
    em.event(f"{app}-ev", "order.paid", {"order": 7}, emitted_by_invocation_id=parent, timestamp=at(2.5))
    assert em.flush()
    em.shutdown()


def _send_all(endpoints: list[str], t0) -> list[str]:
    """The same traffic, spread over `endpoints` (one endpoint: a single node). Returns the apps emitted."""
    reqs = fixture_requests()
    nodes = itertools.cycle(endpoints)
    with httpx.Client(timeout=30) as c:
        for sig, body in reqs:
            assert c.post(f"{next(nodes)}/v1/{sig}", content=body, headers=PB).status_code == 200
        # A client that did not see its answer retries against another node: stored once.
        for sig, body in reqs[:5]:
            assert c.post(f"{next(nodes)}/v1/{sig}", content=body, headers=PB).status_code == 200
    apps = [f"app{k}" for k in range(6)]
    threads = [threading.Thread(target=_emit, args=(endpoints[k % len(endpoints)], "http/protobuf", app, t0))
               for k, app in enumerate(apps)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return apps


def _histories(api: str) -> dict:
    items = httpx.get(api + "/invocations", params={"limit": 500}).json()["items"]
    out = {}
    for i in items:
        h = httpx.get(f"{api}/invocations/{i['invocation_id']}/history").json()
        out[i["invocation_id"]] = ([(x["status"], x["timestamp"], x["attempt"]) for x in h], i["status"],
                                   i["task_id"], i["parent_invocation_id"])
    return out


def _counts(api: str) -> list:
    q = ("select (select count(*) from transitions), (select count(*) from spans), (select count(*) from "
         "log_records), (select count(*) from runner_events), (select count(*) from event_records), "
         "(select count(*) from ingest_ledger), (select count(distinct request_hash) from ingest_ledger)")
    return httpx.post(api + "/sql", json={"sql": q}).json()["rows"][0]


@pytest.mark.slow
def test_three_ingest_nodes_and_a_web_node_equal_one_node(lake, tmp_path, record):
    store, data = lake
    t0 = datetime.now(timezone.utc) - timedelta(seconds=30)
    ingest = [Node("ingest", store, data) for _ in range(3)]
    web = Node("web", store, data)
    single = start_server(str(tmp_path / "single.duckdb"), "--ingest-token", "tok123")
    try:
        _send_all([n.otlp_http for n in ingest], t0)
        _send_all([single.otlp_http], t0)
        expected = _counts(single.api)
        got = wait_until(lambda: (lambda c: c if c == expected else None)(_counts(web.api)), timeout=60,
                         message=f"the lake to hold what one node holds ({expected})")
        assert got[5] == got[6], "a request stored twice"
        want = _histories(single.api)
        assert len(want) == 6 + 12
        assert wait_until(lambda: _histories(web.api) == want, timeout=30, message="identical histories")
        runners = {r["runner_id"] for r in httpx.get(web.api + "/runners").json()}
        assert runners == {r["runner_id"] for r in single.get("/runners").json()}
        # Tasks and workflows read the same off the lake's caches.
        def figures(api):
            tasks = {(t["task_id"], t["invocations"], tuple(sorted(t["counts_by_status"].items())))
                     for t in httpx.get(api + "/tasks").json()["items"]}
            runs = {(r["workflow_id"], r["members"], r["status"])
                    for r in httpx.get(api + "/workflows/runs").json()["items"]}
            return tasks, runs
        assert wait_until(lambda: figures(web.api) == figures(single.api), timeout=30, message="same tasks and runs")
        assert figures(single.api)[1], "the capture's workflow run is listed"
    finally:
        for n in ingest + [web]:
            n.stop()
        single.stop()
    record("Faults and load", "3 `tasktrail ingest` + 1 `tasktrail web` on DuckLake (PostgreSQL catalog): the "
                              "rustvello capture spread round-robin, 5 requests retried on another node, and "
                              "tasktrail.v1 emitters on every node", 1,
           f"every table's count equals a single-node run of the same traffic ({expected[0]} transitions, "
           f"{expected[5]} ledger rows, none twice); all {len(want)} histories identical")


@pytest.mark.slow
def test_killing_an_ingest_node_loses_nothing_it_acknowledged(lake, record):
    store, data = lake
    nodes = [Node("ingest", store, data) for _ in range(3)]
    web = Node("web", store, data)
    acked, lock, stop = set(), threading.Lock(), threading.Event()

    def client(k):
        i = k
        with httpx.Client(timeout=10) as c:
            while not stop.is_set():
                for attempt in range(6):  # the node this request goes to, then the others
                    node = nodes[(i + attempt) % 3]
                    try:
                        r = c.post(node.otlp_http + "/v1/logs", content=numbered_request(i), headers=PB)
                    except httpx.HTTPError:
                        continue
                    if r.status_code == 200:
                        with lock:
                            acked.add(i)
                        break
                i += 6

    threads = [threading.Thread(target=client, args=(k,)) for k in range(6)]
    try:
        for t in threads:
            t.start()
        wait_until(lambda: len(acked) >= 60, timeout=60, message="acknowledged requests")
        nodes[1].stop(signal.SIGKILL)
        before = len(acked)
        wait_until(lambda: len(acked) >= before + 60, timeout=60, message="the others to go on")
        stop.set()
        for t in threads:
            t.join()
        lines = wait_until(lambda: (lambda d: d if set(d) >= acked else None)(stored_lines(web)), timeout=60,
                           message="every acknowledged request in the lake")
        assert all(lines[i] == 50 for i in acked), "an acknowledged request is missing lines"
        assert all(n == 50 for n in lines.values()), "a request stored partly or twice"
    finally:
        stop.set()
        for n in nodes + [web]:
            n.stop()
    record("Faults and load", "`kill -9` of one of 3 ingest nodes under load (6 clients failing over to the "
                              "other nodes)", 1,
           f"{len(acked)} requests acknowledged ({before} before the kill), every one stored once in full; the "
           f"other two nodes went on")


def test_duplicates_skew_and_one_tick_across_two_ingest_nodes(lake):
    """At-least-once delivery through a load balancer: the same records reach two ingest nodes (a retry
    that lands on the other node), a publisher's clock runs 2 s ahead of the worker's, and seven statuses
    share one tick. The web node shows each record once, in causal and sent order, the same status in
    the detail, the list and /metrics."""
    from .test_delivery import logs_doc, status_record

    store, data = lake
    a, b = Node("ingest", store, data), Node("ingest", store, data)
    web = Node("web", store, data)
    try:
        now = time.time_ns() - 30 * 10**9
        dup, skew, tick = (f"{k}-{uuid.uuid4().hex[:6]}" for k in ("dup", "skew", "tick"))
        dup_recs = [status_record(dup, st, now + k * 10**9, **extra) for k, (st, extra) in enumerate(
            (("REGISTERED", {}), ("RUNNING", {"tasktrail.attempt": 0}), ("SUCCESS", {"tasktrail.attempt": 0})))]
        tick_recs = [status_record(tick, st, now, **{"tasktrail.seq": k, "tasktrail.record.id": f"{tick}-{k}",
                                                     **({"tasktrail.attempt": att} if att is not None else {})})
                     for k, (st, att) in enumerate((("REGISTERED", None), ("PENDING", None), ("RUNNING", 0),
                                                    ("RETRY", 0), ("PENDING", None), ("RUNNING", 1), ("SUCCESS", 1)))]
        sends = [
            (a, logs_doc("lake-delivery", "w1", dup_recs, host="w")),
            (b, logs_doc("lake-delivery", "w1", list(reversed(dup_recs)), host="w")),   # the same, other node
            (a, logs_doc("lake-delivery", "w1", [status_record(skew, "RUNNING", now + int(0.1 * 10**9)),
                                                 status_record(skew, "SUCCESS", now + int(1.1 * 10**9))], host="w")),
            (b, logs_doc("lake-delivery", "client", [status_record(skew, "REGISTERED", now + 2 * 10**9)], host="c")),
            (a, logs_doc("lake-delivery", "w1", tick_recs[::2], host="w")),
            (b, logs_doc("lake-delivery", "w1", tick_recs[1::2] + tick_recs[:2], host="w")),
        ]
        for node, doc in sends:
            r = httpx.post(node.otlp_http + "/v1/logs", json=doc, headers={"Authorization": "Bearer tok123"},
                           timeout=30)
            assert r.status_code == 200, r.text
        expected = {dup: ["REGISTERED", "RUNNING", "SUCCESS"], skew: ["REGISTERED", "RUNNING", "SUCCESS"],
                    tick: ["REGISTERED", "PENDING", "RUNNING", "RETRY", "PENDING", "RUNNING", "SUCCESS"]}

        def folded():  # every record folded: the list (the folder's cache) has every attempt
            items = {i["invocation_id"]: i for i in httpx.get(web.api + "/invocations", params={"app": "lake-delivery"},
                                                              timeout=30).json()["items"]}
            return (len(items) == 3 and all(i["status"] == "SUCCESS" for i in items.values())
                    and all(items[i]["attempts"] == st.count("RUNNING") for i, st in expected.items()) and items)
        items = wait_until(folded, timeout=60, message="the folder's state")
        wait_until(lambda: all(len(httpx.get(f"{web.api}/invocations/{i}/history", timeout=30).json()) == len(st)
                               for i, st in expected.items()), timeout=60, message="every record folded")
        for inv, statuses in expected.items():
            hist = httpx.get(f"{web.api}/invocations/{inv}/history", timeout=30).json()
            assert [h["status"] for h in hist] == statuses, (inv, hist)
            d = httpx.get(f"{web.api}/invocations/{inv}", timeout=30).json()
            assert d["status"] == "SUCCESS" and d["duration_s"] >= 0
            assert items[inv]["attempts"] == len(d["attempts"]) == statuses.count("RUNNING")
        assert httpx.get(f"{web.api}/invocations/{skew}", timeout=30).json()["clock_adjusted"]["max_s"] > 1.8
        text = httpx.get(web.web + "/metrics", timeout=30).text
        assert re.search(r'tasktrail_invocations\{app="lake-delivery",status="SUCCESS"\} 3\.0', text), text[-2000:]
    finally:
        for n in (a, b, web):
            n.stop()


def test_every_log_table_is_partitioned_by_day(lake):
    """Each log table is partitioned by day when its migration creates it, also one a later migration adds
    (store/ducklake.py `_migrated`): retention drops whole files, a window reads only its days'."""
    from tasktrail.proto.model import TABLES
    from tasktrail.store.ducklake import DuckLakeStore

    catalog, data = lake
    store = DuckLakeStore(catalog.removeprefix("ducklake:"), data)
    try:
        parted = {t for (t,) in store._con.execute("""
            SELECT DISTINCT t.table_name FROM __ducklake_metadata_lake.ducklake_partition_info p
            JOIN __ducklake_metadata_lake.ducklake_table t USING (table_id) WHERE t.end_snapshot IS NULL""").fetchall()}
    finally:
        store.close()
    assert parted == set(TABLES) | {"ingest_ledger"}
