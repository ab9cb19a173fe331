"""B5/B6: query latency on a large store, and bytes on disk per stored event.

    python -m benchmarks.queries                 # 1M invocations (~4M transitions, 2M log lines)
    python -m benchmarks.queries --large         # 10M invocations, side by side with 1M
    python -m benchmarks.queries --invocations 20000 --reps 3    # what CI runs

The store is built with set-based SQL in the store's own schema (10,000 invocations per
hour, 6 runners × 4 workers, 5 tasks, 3% failed, 5% retried, two log lines each, a quarter of them in
workflow runs of 5), in time
order as a live store would be. Reads go through the QueryService, as the web does.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta

from .common import report

BASE = datetime(2026, 11, 1)
PER_HOUR = 10_000


def build(path: str, n: int) -> None:
    from tasktrail.store.duckdb import DuckDBStore

    store = DuckDBStore(path)
    # The set-based load goes around the writer's batches, on its connection and thread (its upkeep uses both).
    store.on_writer(lambda con: _load(con, n))
    store.rebuild_state()  # fill the caches as `tasktrail rebuild` does
    store.on_writer(lambda con: con.execute("CHECKPOINT"))
    store.close()


def _load(con, n: int) -> None:
    """B5's records of `n` invocations, inserted with set-based SQL on `con`."""
    step_us = int(3600e6 / PER_HOUR)
    chunk = 200_000
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        con.execute(f"""
        INSERT INTO transitions (batch, ts, app_id, invocation_id, task_id, status, runner_id, worker_id, attempt,
                                 source, trace_id, parent_invocation_id, error_type, workflow_id, workflow_type)
        WITH inv AS (
            SELECT i, md5(i::VARCHAR) AS id, ['shop.checkout','shop.pay','shop.ship','mail.send','report.build'][1 + i % 5] AS task,
                   'runner-' || (i % 6) AS runner, 'worker-' || (i % 6) || '-' || ((i // 6) % 4) AS worker,
                   TIMESTAMP '{BASE}' + to_microseconds(i * {step_us}) AS t0,
                   (hash(i) % 2000000)::BIGINT AS dur_us, (hash(i * 7) % 100) AS fate,
                   CASE WHEN i % 10 = 0 AND i > 10 THEN md5((i - 1)::VARCHAR) END AS parent,
                   CASE WHEN (i // 5) % 4 = 0 THEN md5((i // 5 * 5)::VARCHAR) END AS wf
            FROM range({lo}, {hi}) r(i))
        SELECT 1, ts, 'bench', id, task, status, runner, worker, attempt, 'tasktrail.v1', md5(id), parent, err,
               wf, CASE WHEN wf IS NOT NULL THEN 'flow.order' END
        FROM (
            SELECT t0 AS ts, id, task, 'REGISTERED' AS status, runner, NULL AS worker, 0 AS attempt, parent, NULL AS err, i, 0 AS k, wf FROM inv
            UNION ALL SELECT t0 + INTERVAL 2 MILLISECOND, id, task, 'PENDING', runner, worker, 0, parent, NULL, i, 1, wf FROM inv
            UNION ALL SELECT t0 + INTERVAL 4 MILLISECOND, id, task, 'RUNNING', runner, worker, 0, parent, NULL, i, 2, wf FROM inv
            UNION ALL SELECT t0 + INTERVAL 4 MILLISECOND + to_microseconds(dur_us), id, task,
                             CASE WHEN fate < 3 THEN 'FAILED' WHEN fate < 8 THEN 'RETRY' ELSE 'SUCCESS' END,
                             runner, worker, 0, parent, CASE WHEN fate < 8 THEN 'ValueError' END, i, 3, wf FROM inv
            UNION ALL SELECT t0 + INTERVAL 6 MILLISECOND + to_microseconds(dur_us), id, task, 'RUNNING', runner, worker, 1,
                             parent, NULL, i, 4, wf FROM inv WHERE fate >= 3 AND fate < 8
            UNION ALL SELECT t0 + INTERVAL 8 MILLISECOND + to_microseconds(2 * dur_us), id, task, 'SUCCESS', runner,
                             worker, 1, parent, NULL, i, 5, wf FROM inv WHERE fate >= 3 AND fate < 8)
        ORDER BY ts, k""")
        con.execute(f"""
        INSERT INTO log_records (batch, ts, app_id, severity_number, severity_text, body, runner_id, worker_id,
                                 invocation_id, task_id)
        SELECT 1, TIMESTAMP '{BASE}' + to_microseconds(i * {step_us} + 5000 + j), 'bench', 9, 'INFO',
               'processing order ' || i || ' step ' || j, 'runner-' || (i % 6), 'worker-' || (i % 6) || '-' || ((i // 6) % 4),
               md5(i::VARCHAR), 'shop.checkout'
        FROM range({lo}, {hi}) r(i), range(2) s(j) ORDER BY 2""")
    last = BASE + timedelta(microseconds=n * step_us)
    con.execute(f"""
        INSERT INTO runner_events (batch, ts, app_id, runner_id, kind, runner_class, parent_runner_id, hostname, source)
        SELECT 1, TIMESTAMP '{BASE}', 'bench', 'runner-' || r, 'started', 'PersistentProcessRunner', NULL, 'host-' || r, 'bench'
        FROM range(6) t(r)
        UNION ALL
        SELECT 1, TIMESTAMP '{BASE}', 'bench', 'worker-' || r || '-' || w, 'started', 'PPRWorker', 'runner-' || r, 'host-' || r, 'bench'
        FROM range(6) t(r), range(4) u(w)
        UNION ALL
        SELECT 1, TIMESTAMP '{last}' - to_microseconds(h * 30000000), 'bench', 'runner-' || r, 'heartbeat', NULL, NULL, NULL, 'bench'
        FROM range(6) t(r), range(100) v(h)""")


def store_arguments(ap) -> None:
    """--db and --invocations: the store a point-read benchmark reads (benchmarks/page_*.py)."""
    ap.add_argument("--db", help="the store; without it, B5's store of --invocations is built in a temp folder")
    ap.add_argument("--invocations", type=int, default=20_000)


def store_of(args, folder: str) -> str:
    """args.db, or B5's store of args.invocations built in `folder`."""
    if not args.db:
        args.db = os.path.join(folder, "b5.duckdb")
        build(args.db, args.invocations)
    return args.db


def timed(fn, reps: int) -> tuple[float, float]:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.95))]


def measure(path: str, n: int, reps: int) -> dict:
    from tasktrail.query.service import QueryService
    from tasktrail.store.duckdb import DuckDBStore

    store = DuckDBStore(path)
    step = 3600 / PER_HOUR
    end = BASE + timedelta(seconds=n * step)
    qs = QueryService(store, clock=lambda: end)  # "now" is the end of the generated data, as in a live store
    mid = n // 2
    inv = qs.invocations(limit=1, since=(BASE + timedelta(seconds=mid * step)).isoformat())["items"][-1]["invocation_id"]
    page1 = qs.invocations(limit=50)
    hour0 = BASE + timedelta(seconds=mid * step)
    window = {"since": hour0.isoformat(), "until": (hour0 + timedelta(hours=1)).isoformat()}
    day = {"since": (hour0 - timedelta(hours=23)).isoformat(), "until": (hour0 + timedelta(hours=1)).isoformat()}
    tl = qs.timeline(limit=10_000, **window)
    runs = [r["workflow_id"] for r in qs.workflow_runs(workflow_type="flow.order", until=window["until"],
                                                       limit=10)["items"]]
    reads = {
        "invocation detail": lambda: qs.invocation(inv),
        "invocation history": lambda: qs.history(inv),
        "invocation family": lambda: qs.family(inv),
        "invocations page (newest 50)": lambda: qs.invocations(limit=50),
        "invocations page 2 (cursor)": lambda: qs.invocations(limit=50, cursor=page1["next_cursor"]),
        "invocations FAILED, 1 h": lambda: qs.invocations(status=["FAILED"], **window),
        "timeline 1 h (10k invocations)": lambda: qs.timeline(limit=10_000, **window),
        "timeline 1 h (10k), system tasks hidden, 3 statuses": lambda: qs.timeline(
            limit=10_000, show_system="0", histogram_status="registered,pending,running", **window),
        "invocation page (detail + history + family + logs + trigger runs)": lambda: qs.invocation_page(inv),
        "log search (literal, newest 100)": lambda: qs.logs(q="order 4242 step", limit=100),
        "logs of one invocation": lambda: qs.invocation_logs(inv),
        "runners": lambda: qs.runners(),
        "overview": lambda: qs.overview(),
        "tasks, 1 h": lambda: qs.tasks(**window),
        "tasks, 24 h (the default window)": lambda: qs.tasks(**day),
        "tasks, all time": lambda: qs.tasks(since="all"),
        "task detail, 1 h": lambda: qs.task("shop.pay", **window),
        "task detail, 24 h (the default window)": lambda: qs.task("shop.pay", **day),
        "task detail, all time": lambda: qs.task("shop.pay", since="all"),
        "workflow types, 24 h (the default window)": lambda: qs.workflow_types(**day),
        "workflow types, all time": lambda: qs.workflow_types(since="all"),
        "workflow runs of a type (newest 50)": lambda: qs.workflow_runs(workflow_type="flow.order"),
        "workflow type page (runs + 3 histograms, 24 h summary)": lambda: qs.workflow_type("flow.order", **day),
        "workflow run page": lambda: qs.workflow_run(runs[0]),
        "compare 10 workflow runs": lambda: qs.workflow_compare(runs),
        "anomalies": lambda: qs.anomalies(),
    }
    out = {"timeline_invocations": tl["shown"], "timeline_total": tl["total"]}
    for name, fn in reads.items():
        out[name] = timed(fn, reps)
    events = store.query("SELECT (SELECT count(*) FROM transitions) + (SELECT count(*) FROM log_records)").rows[0][0]
    store.close()
    out.update(measure_http(path, inv, window, day, reps))
    size = os.path.getsize(path) + (os.path.getsize(path + ".wal") if os.path.exists(path + ".wal") else 0)
    out["events"] = events
    out["bytes_per_event"] = size / events
    return out


def measure_http(path: str, inv: str, window: dict, day: dict, reps: int) -> dict:
    """The same reads through a served tasktrail: JSON encoding and HTTP included."""
    from .common import http_client, start_server

    proc, ports = start_server(path)
    try:
        api = ports["web"] + "/api/v1"
        with http_client() as c:
            def get(p, **params):
                r = c.get(api + p, params=params)
                r.raise_for_status()
            reads = {
                "HTTP invocation detail": lambda: get(f"/invocations/{inv}"),
                "HTTP invocations page": lambda: get("/invocations"),
                "HTTP timeline 1 h (10k)": lambda: get("/timeline", limit=10_000, **window),
                "HTTP tasks, 24 h": lambda: get("/tasks", **day),
                "HTTP task detail, 24 h": lambda: get("/tasks/shop.pay", **day),
                "HTTP workflow type": lambda: get("/workflows/flow.order", **day),
            }
            # A fresh server first runs retention over the store and starts with a cold buffer pool: at 10M
            # that tripled the first minute's reads. Time the steady state, as a long-running server is.
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                for fn in reads.values():
                    fn()
            return {name: timed(fn, reps) for name, fn in reads.items()}
    finally:
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invocations", type=int, default=1_000_000)
    ap.add_argument("--large", action="store_true", help="also 10M invocations, side by side")
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--keep", help="build the stores in this folder and keep them (reused when present)")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    sizes = [args.invocations] + ([10_000_000] if args.large else [])
    results = {}
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        for n in sizes:
            path = os.path.join(args.keep or d, f"q{n}.duckdb")
            if not os.path.exists(path):
                t = time.perf_counter()
                build(path, n)
                print(f"built {n:,} invocations in {time.perf_counter() - t:.0f} s")
            results[n] = measure(path, n, args.reps)
    names = [k for k in results[sizes[0]] if isinstance(results[sizes[0]][k], tuple)]
    rows = [("read (p50 / p95 ms)", "   ".join(f"{n:>12,}" for n in sizes))]
    for name in names:
        rows.append((name, "   ".join(f"{results[n][name][0]:6.1f} / {results[n][name][1]:6.1f}" for n in sizes)))
    rows.append(("timeline window shown / total",
                 "   ".join(f"{results[n]['timeline_invocations']} / {results[n]['timeline_total']}" for n in sizes)))
    rows.append(("B6 bytes per stored event", "   ".join(f"{results[n]['bytes_per_event']:.1f}" for n in sizes)))
    report("B5/B6 queries", rows, {"results": {str(k): v for k, v in results.items()}}, args.json_path)


if __name__ == "__main__":
    main()
