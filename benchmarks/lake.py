"""B8: ingest throughput into one DuckLake store with 1, 2 and 3 `tasktrail ingest` processes.

    python -m benchmarks.lake                              # 400k records per run, 1..3 nodes
    python -m benchmarks.lake --records 20000 --nodes 2    # what CI runs

The catalog is a fresh database in the machine's PostgreSQL (127.0.0.1, user postgres); the Parquet
files go to a temporary folder. Clients send the B1 workload over OTLP/HTTP protobuf, round-robin over
the nodes (32 clients in all: a lake commits once a second, so throughput needs requests in flight). Reported: records/s acknowledged (= committed) per node count, and the
Parquet files written per 100k records.
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid

from .common import report
from .ingest import _pool, _raw_http_sender
from .workload import unique


def _pg(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-c", sql], check=True, capture_output=True)


def _node(store: str, data: str):
    cmd = [sys.executable, "-m", "tasktrail", "ingest", "--store", store, "--data-path", data,
           "--otlp-http-port", "0", "--otlp-grpc-port", "0", "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        m = re.search(r"OTLP HTTP\s+(http://\S+)", proc.stdout.readline())
        if m:
            return proc, m.group(1)
    raise RuntimeError("an ingest node did not start")


def run(pool, records: int, nodes: int, clients: int) -> dict:
    name = f"tt_b8_{uuid.uuid4().hex[:8]}"
    _pg(f"create database {name}")
    store = f"ducklake:postgres:dbname={name} host=127.0.0.1 user=postgres"
    with tempfile.TemporaryDirectory() as data:
        procs = [_node(store, data) for _ in range(nodes)]
        try:
            state = {"i": 0, "done": 0}
            lock = threading.Lock()

            def client(k):
                senders = [_raw_http_sender(url, "http") for _, url in procs]  # retries 429/503 itself
                while True:
                    with lock:
                        if state["done"] >= records:
                            return
                        i = state["i"]
                        state["i"] += 1
                    sig, body, n = pool[i % len(pool)]
                    senders[i % nodes](sig, unique(body, i, i // len(pool)))
                    with lock:
                        state["done"] += n

            t0 = time.perf_counter()
            threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - t0
            files = len(glob.glob(os.path.join(data, "**", "*.parquet"), recursive=True))
        finally:
            for p, _ in procs:
                p.terminate()
                p.wait(60)
            _pg(f"drop database if exists {name} with (force)")
    return {"nodes": nodes, "records_per_s": state["done"] / elapsed, "parquet_files": files,
            "files_per_100k": files / state["done"] * 100_000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=400_000)
    ap.add_argument("--nodes", type=int, default=3, help="measure 1..N ingest processes")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    pool = _pool(args.records)
    results = [run(pool, args.records, n, args.clients) for n in range(1, args.nodes + 1)]
    base = results[0]["records_per_s"]
    rows = [(f"{r['nodes']} ingest node{'s' if r['nodes'] > 1 else ''}",
             f"{r['records_per_s']:,.0f} records/s ({r['records_per_s'] / base:.2f}× one node), "
             f"{r['files_per_100k']:.0f} Parquet files per 100k records") for r in results]
    report("B8 DuckLake scale-out", rows, {"records": args.records, "clients": args.clients, "results": results},
           args.json_path)


if __name__ == "__main__":
    main()
