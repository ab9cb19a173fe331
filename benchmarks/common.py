"""Shared benchmark plumbing: a served tasktrail subprocess, RSS reading, result printing."""
from __future__ import annotations

import json
import platform
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone


def start_server(db: str, *extra: str, python: str | None = None):
    """`tasktrail serve` on free ports (run by `python`, default this one); returns (proc, {"web", "http", "grpc"})."""
    cmd = [python or sys.executable, "-m", "tasktrail", "serve", "--db", db, "--http-port", "0", "--otlp-http-port", "0",
           "--otlp-grpc-port", "0", "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ports = {}
    deadline = time.monotonic() + 60
    while len(ports) < 3 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("server died at start")
        for key, pat in (("web", r"web \+ API\s+(http://\S+)"), ("http", r"OTLP HTTP\s+(http://\S+)"),
                         ("grpc", r"OTLP gRPC\s+(\S+)")):
            m = re.search(pat, line)
            if m:
                ports[key] = m.group(1)
    return proc, ports


def workdir(keep):
    """A context giving the folder a peer benchmark keeps its stores in: `keep` (made if missing; a later run
    with the same folder reads them again), else a temporary folder removed at the end."""
    import contextlib
    import os
    import tempfile
    if keep:
        os.makedirs(keep, exist_ok=True)
        return contextlib.nullcontext(keep)
    return tempfile.TemporaryDirectory()


def run_once(kept: str, run) -> tuple[dict, bool]:
    """(the summary of a runner's run, whether it was kept from an earlier run): read from the JSON file
    `kept` when it exists, else run() is called and its summary written there."""
    import os
    if os.path.exists(kept):
        with open(kept) as fh:
            return json.load(fh), True
    summary = run()
    with open(kept, "w") as fh:
        json.dump(summary, fh)
    return summary, False


def http_client(timeout: float = 60):
    """An httpx client with TCP_NODELAY: without it, keep-alive requests stall ~40 ms on delayed ACKs
    (a client artifact: curl answers the same request in under 2 ms)."""
    import socket

    import httpx
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    return httpx.Client(timeout=timeout, transport=transport)


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    cur = peak = 0.0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cur, peak


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the ingest workers of a served tasktrail), from /proc."""
    import os
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    parent[int(d)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def tree_rss_mb(pid: int) -> float:
    """Current RSS of a process and all its descendants, in MB."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            total += rss_mb(p)[0]
        except OSError:
            pass
    return total


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and all its descendants, in MB (from /proc/<pid>/smaps_rollup):
    pages shared between them (the libraries every ingest worker maps too) counted once, not per process."""
    total = 0.0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/smaps_rollup") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("Pss:")) / 1024
        except (OSError, StopIteration):
            pass
    return total


def machine() -> dict:
    import os
    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "python": platform.python_version(),
            "cpus": os.cpu_count(), "machine": platform.machine()}


def report(title: str, rows: list[tuple[str, str]], data: dict, json_path: str | None) -> None:
    width = max(len(k) for k, _ in rows)
    print(f"\n{title}")
    for k, v in rows:
        print(f"  {k.ljust(width)}  {v}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump({"machine": machine(), **data}, fh, indent=2)


def timed_get(client, url: str, reps: int) -> float:
    """Median milliseconds of `reps` GETs (after one warm-up), failing on any error status."""
    client.get(url).raise_for_status()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        r = client.get(url)
        times.append((time.perf_counter() - t) * 1000)
        r.raise_for_status()
    return statistics.median(times)


def sql_rows(client, base: str, q: str) -> list:
    """The rows of one read-only SQL statement through tasktrail's /api/v1/sql."""
    r = client.post(f"{base}/api/v1/sql", json={"sql": q})
    r.raise_for_status()
    return r.json()["rows"]


def wait_final(client, base: str, want: int, timeout: float) -> int:
    """Wait until tasktrail at `base` holds `want` final invocations; their count, else RuntimeError."""
    deadline = time.monotonic() + timeout
    got = 0
    while time.monotonic() < deadline:
        got = sql_rows(client, base, "SELECT count(*) FROM invocations WHERE is_final")[0][0]
        if got >= want:
            return got
        time.sleep(1)
    raise RuntimeError(f"tasktrail holds {got} of {want} final invocations after {timeout:.0f} s")
