"""B1/B2/B3/B4: ingest throughput, acknowledgement latency and server memory.

    python -m benchmarks.ingest                       # B1: gRPC, 4 clients, 2M records, plus the limit
    python -m benchmarks.ingest --transport http      # B2: OTLP/HTTP protobuf
    python -m benchmarks.ingest --transport json      # B2: OTLP/JSON
    python -m benchmarks.ingest --records 20000 --runs 1   # what CI runs

The limit is the same decode + map + append in one process with no network (on at most 1M records).
The reference (issue 20) is the naive one-core loop anyone would write first: decode each request with
opentelemetry-proto, build one row per log record or span (time, app, event name, invocation, task,
runner, trace id, the attributes as one JSON string), append one Arrow table per request to a DuckDB
table; B1 reports ours ÷ it from the same run.
B4 over ten minutes: `--records 9000000 --runs 1 --no-limit`; at a lower DuckDB memory limit add
`--server-args "--duckdb-memory-limit 256MB"`. B4 at a steady rate for a set time (issue 20: 15 minutes at
about half of B1's throughput), RSS of the server and of its ingest workers every 10 s, printed and saved:
`--runs 1 --no-limit --duration 900 --rate 6500 --rss-every 10 --rss-csv rss.csv` (with PSS too: the
libraries the workers share with the server counted once).
Reported: median records/s over --runs, ours ÷ limit, ack latency p50/p99, peak RSS.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time

from .common import report, rss_mb, start_server, tree_pss_mb, tree_rss_mb
from .workload import Workload, count_records, unique

POOL_RECORDS = 200_000


def _pool(records: int):
    reqs = Workload().requests(min(records, POOL_RECORDS))
    return [(s, b, count_records(s, b)) for s, b in reqs]


def limit_run(pool, records: int) -> float:
    """Decode + map + append in-process, pipelined like the server; records/s."""
    from tasktrail.ingest.pipeline import Ingestor
    from tasktrail.store.api import QueueFull
    from tasktrail.store.duckdb import DuckDBStore

    with tempfile.TemporaryDirectory() as d:
        store = DuckDBStore(os.path.join(d, "limit.duckdb"))
        ing = Ingestor(store)
        futures, done, i = [], 0, 0
        t0 = time.perf_counter()
        while done < records:
            sig, body, n = pool[i % len(pool)]
            rows, nrec, entry = ing.prepare(sig, unique(body, i, i // len(pool)), "protobuf", "bench")
            while True:
                try:
                    futures.append(store.submit(rows, nrec, entry))
                    break
                except QueueFull:
                    futures.pop(0).result()
            done += n
            i += 1
        for f in futures:
            f.result()
        elapsed = time.perf_counter() - t0
        store.close()
    return done / elapsed


def _reference_rows(signal: str, body: bytes) -> dict:
    """One request as the reference's columns: one row per log record or span."""
    import json

    from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    def value(v):
        kind = v.WhichOneof("value")
        if kind == "array_value":
            return [value(x) for x in v.array_value.values]
        return getattr(v, kind) if kind else None

    cols = {k: [] for k in ("ts", "app_id", "event_name", "invocation_id", "task_id", "runner_id", "trace_id",
                            "attributes")}
    if signal == "logs":
        req = logs_service_pb2.ExportLogsServiceRequest.FromString(body)
        groups = [(rl.resource, lr.time_unix_nano, lr.event_name, lr.trace_id, lr.attributes)
                  for rl in req.resource_logs for sl in rl.scope_logs for lr in sl.log_records]
    else:
        req = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
        groups = [(rs.resource, sp.start_time_unix_nano, sp.name, sp.trace_id, sp.attributes)
                  for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    for resource, ts, name, trace_id, attributes in groups:
        res = {kv.key: value(kv.value) for kv in resource.attributes}
        attrs = {kv.key: value(kv.value) for kv in attributes}
        cols["ts"].append(ts // 1000)
        cols["app_id"].append(res.get("service.namespace") or res.get("service.name"))
        cols["event_name"].append(name or None)
        cols["invocation_id"].append(attrs.get("tasktrail.invocation.id"))
        cols["task_id"].append(attrs.get("tasktrail.task.id"))
        cols["runner_id"].append(attrs.get("tasktrail.runner.id") or res.get("tasktrail.runner.id"))
        cols["trace_id"].append(trace_id.hex() if trace_id else None)
        cols["attributes"].append(json.dumps(attrs, default=str))
    return cols


def reference_run(pool, records: int) -> float:
    """The naive one-core pipeline (module doc): records/s."""
    import duckdb
    import pyarrow as pa

    schema = pa.schema([("ts", pa.timestamp("us")), ("app_id", pa.string()), ("event_name", pa.string()),
                        ("invocation_id", pa.string()), ("task_id", pa.string()), ("runner_id", pa.string()),
                        ("trace_id", pa.string()), ("attributes", pa.string())])
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect(os.path.join(d, "reference.duckdb"))
        con.execute("CREATE TABLE records (ts TIMESTAMP, app_id VARCHAR, event_name VARCHAR, invocation_id VARCHAR, "
                    "task_id VARCHAR, runner_id VARCHAR, trace_id VARCHAR, attributes VARCHAR)")
        done, i = 0, 0
        t0 = time.perf_counter()
        while done < records:
            sig, body, n = pool[i % len(pool)]
            tbl = pa.table(_reference_rows(sig, body), schema=schema)
            con.from_arrow(tbl).insert_into("records")
            done += n
            i += 1
        elapsed = time.perf_counter() - t0
        con.close()
    return done / elapsed


def _grpc_sender(target: str):
    import grpc
    ch = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)])
    methods = {s: ch.unary_unary(f"/opentelemetry.proto.collector.{p}.v1.{svc}/Export",
                                 request_serializer=lambda b: b, response_deserializer=lambda b: b)
               for s, p, svc in (("logs", "logs", "LogsService"), ("traces", "trace", "TraceService"))}

    def send(sig, body):
        while True:
            try:
                methods[sig](body, timeout=30)
                return
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
                    time.sleep(0.05)
                    continue
                raise
    return send


def served_run(pool, records: int, clients: int, transport: str, rate: float | None = None,
               server_args: tuple = (), duration: float | None = None, sample_s: float = 5.0):
    """Records/s committed through a served tasktrail, ack latencies, peak RSS, and an RSS series: every
    `sample_s` seconds (seconds into the run, server MB, its ingest workers' MB, both, 1-min load average,
    PSS of both: shared library pages counted once).
    With `duration` (seconds) the clients stop sending then, whatever `records` says."""
    with tempfile.TemporaryDirectory() as d:
        proc, ports = start_server(os.path.join(d, "served.duckdb"), *server_args)
        try:
            if transport == "json":
                from .json_body import to_otlp_json
                bodies = [(s, to_otlp_json(s, b), n) for s, b, n in pool]  # client cost kept out of the timing
            else:
                bodies = pool
            lock = threading.Lock()
            state = {"i": 0, "done": 0}
            lat: list[float] = []
            peak = [0.0, 0.0]  # server process; server + its ingest workers
            stop = threading.Event()

            series: list[tuple] = []  # (s into the run, server MB, workers MB, both, load), for B4's "flat"

            def watch():
                last = -sample_s
                while not stop.is_set():
                    server = rss_mb(proc.pid)[0]
                    tree = tree_rss_mb(proc.pid)
                    peak[0] = max(peak[0], server)
                    peak[1] = max(peak[1], tree)
                    now = time.perf_counter() - t0
                    if now - last >= sample_s:
                        series.append((round(now, 1), round(server, 1), round(tree - server, 1), round(tree, 1),
                                       os.getloadavg()[0], round(tree_pss_mb(proc.pid), 1)))
                        last = now
                    time.sleep(0.2)

            def worker():
                if transport == "grpc":
                    send = _grpc_sender(ports["grpc"])
                else:
                    send = _raw_http_sender(ports["http"], transport)
                while True:
                    with lock:
                        if state["done"] >= records or (duration and time.perf_counter() - t0 >= duration):
                            return
                        i = state["i"]
                        state["i"] += 1
                        state["done"] += bodies[i % len(bodies)][2]
                    sig, body, n = bodies[i % len(bodies)]
                    if rate:
                        target = t0 + i * per_request_s
                        delay = target - time.perf_counter()
                        if delay > 0:
                            time.sleep(delay)
                    s = time.perf_counter()
                    send(sig, unique(body, i, i // len(bodies)) if transport != "json"
                         else unique(body, 0, i // len(bodies)).replace(b"{", b'{"_u":%d,' % i, 1))
                    lat.append(time.perf_counter() - s)

            reads: list[float] = []   # a reader beside the load: what a read waits for (the journal's apply)

            def reader():
                from .common import http_client
                client = http_client(30)
                while not stop.is_set():
                    s = time.perf_counter()
                    client.get(f"{ports['web']}/api/v1/invocations", params={"limit": 20}).raise_for_status()
                    reads.append(time.perf_counter() - s)
                    time.sleep(0.2)

            mean_req = sum(n for _, _, n in bodies) / len(bodies)
            per_request_s = (mean_req / rate) if rate else 0.0
            t0 = time.perf_counter()
            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            if rate:
                threading.Thread(target=reader, daemon=True).start()
            threads = [threading.Thread(target=worker) for _ in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            stop.set()
            _, hwm = rss_mb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(60)
    lat.sort()
    reads.sort()
    read_ms = {"read_p50_ms": reads[len(reads) // 2] * 1000, "read_p99_ms": reads[int(len(reads) * 0.99)] * 1000} \
        if reads else {}
    return {**read_ms, "records_per_s": state["done"] / elapsed, "ack_p50_ms": lat[len(lat) // 2] * 1000,
            "ack_p99_ms": lat[int(len(lat) * 0.99)] * 1000, "peak_rss_mb": max(peak[0], hwm),
            "peak_rss_with_workers_mb": peak[1], "rss_series": series, "seconds": elapsed}


def _raw_http_sender(base: str, transport: str):
    from .common import http_client
    client = http_client(30)
    ct = "application/json" if transport == "json" else "application/x-protobuf"

    def send(sig, body):
        while True:
            r = client.post(f"{base}/v1/{sig}", content=body, headers={"Content-Type": ct})
            if r.status_code in (429, 503):
                time.sleep(0.05)
                continue
            r.raise_for_status()
            return
    return send


def _write_series(path: str, series: list[tuple]) -> None:
    """The RSS samples as CSV, and as a table on stdout (one line a minute at most)."""
    with open(path, "w") as fh:
        fh.write("seconds,server_mb,workers_mb,total_mb,load1,total_pss_mb\n")
        for row in series:
            fh.write(",".join(str(v) for v in row) + "\n")
    print("\n  s      server MB  workers MB  total MB  load  total PSS MB")
    last = -60.0
    for t, server, workers, total, load, pss in series:
        if t - last >= 60 or (t, server) == series[-1][:2]:
            print(f"  {t:6.0f} {server:10.0f} {workers:11.0f} {total:9.0f}  {load:4.1f}  {pss:8.0f}")
            last = t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2_000_000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--transport", choices=["grpc", "http", "json"], default="grpc")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency", action="store_true", help="B3: also run at half the measured throughput")
    ap.add_argument("--no-limit", action="store_true", help="skip the in-process limit (a long B4 run)")
    ap.add_argument("--workers", type=int, help="the server's --ingest-workers (default: its own default)")
    ap.add_argument("--server-args", default="", help="more `tasktrail serve` options, e.g. "
                                                      "\"--duckdb-memory-limit 256MB\" (B4 at a lower limit)")
    ap.add_argument("--duration", type=float, help="seconds each served run sends for (then --records is only "
                                                     "the size of the request pool)")
    ap.add_argument("--rate", type=float, help="records/s the served runs are paced at (default: as fast as acked)")
    ap.add_argument("--rss-every", type=float, default=5.0, help="seconds between RSS samples (B4)")
    ap.add_argument("--rss-csv", help="write the last run's RSS samples here: seconds, server MB, workers MB, "
                                      "total MB, 1-min load average")
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    import shlex
    server_args = (("--ingest-workers", str(args.workers)) if args.workers is not None else ()) + tuple(
        shlex.split(args.server_args))
    pool = _pool(args.records)
    limits, served, refs = [], [], []
    for _ in range(args.runs):
        limits.append(limit_run(pool, min(args.records, 1_000_000)) if not args.no_limit else float("nan"))
        refs.append(reference_run(pool, min(args.records, 1_000_000)) if not args.no_limit else float("nan"))
        served.append(served_run(pool, 10 ** 15 if args.duration else args.records, args.clients, args.transport,
                                 rate=args.rate, server_args=server_args, duration=args.duration,
                                 sample_s=args.rss_every))
    lim = statistics.median(limits)
    ref = statistics.median(refs)
    ours = statistics.median(r["records_per_s"] for r in served)
    rows = [("transport", args.transport), ("records per run", f"{args.records:,}"), ("clients", str(args.clients)),
            ("server ingest workers", "default" if args.workers is None else str(args.workers)),
            ("server options", args.server_args or "defaults"),
            ("runs", str(args.runs)),
            ("served records/s (median)", f"{ours:,.0f}"), ("limit records/s (median)", f"{lim:,.0f}"),
            ("ours / limit", f"{ours / lim:.2f}"),
            ("reference (naive one-core pipeline) records/s (median)", f"{ref:,.0f}"),
            ("ours / reference", f"{ours / ref:.2f}"),
            ("ack p50 / p99 at full load", f"{statistics.median(r['ack_p50_ms'] for r in served):.1f} / "
                                           f"{statistics.median(r['ack_p99_ms'] for r in served):.1f} ms"),
            ("server peak RSS / with its ingest workers",
             f"{max(r['peak_rss_mb'] for r in served):.0f} / {max(r['peak_rss_with_workers_mb'] for r in served):.0f} MB")]
    data = {"transport": args.transport, "records": args.records, "clients": args.clients, "runs": args.runs,
            "served_records_per_s": ours, "limit_records_per_s": lim, "ratio": ours / lim, "served": served,
            "limits": limits, "reference_records_per_s": ref, "references": refs, "ratio_to_reference": ours / ref}
    series = served[-1]["rss_series"]
    if len(series) >= 4:  # B4: is memory flat? RSS after the first minute vs at the end
        settled = next((r[3] for r in series if r[0] >= 60), series[len(series) // 2][3])
        rows.append(("RSS (with workers) after 1 min / at the end", f"{settled:.0f} / {series[-1][3]:.0f} MB"))
    if args.rss_csv:
        _write_series(args.rss_csv, series)
    if args.latency:
        half = served_run(pool, args.records // 2, args.clients, args.transport, rate=ours / 2,
                          server_args=server_args)
        rows.append(("B3 ack p50 / p99 at half load", f"{half['ack_p50_ms']:.1f} / {half['ack_p99_ms']:.1f} ms"))
        if "read_p50_ms" in half:
            rows.append(("a read beside it (/api/v1/invocations?limit=20, every 0.2 s) p50 / p99",
                         f"{half['read_p50_ms']:.1f} / {half['read_p99_ms']:.1f} ms"))
        data["half_load"] = half
    report(f"B1/B2 ingest ({args.transport})", rows, data, args.json_path)


if __name__ == "__main__":
    main()
