"""Point reads over HTTP, before and after a change, on copies of one store: medians of N GETs per path,
the two servers asked in turn (before, after; then after, before) so a shared machine's load falls on both.

    python -m benchmarks.page_http --db STORE --before OTHER_CHECKOUT/.venv/bin/python [--reps 25]
    python -m benchmarks.page_http --invocations 20000 --reps 3     # B5's store built first; this tree twice (CI)

`--before` is the Python of another checkout's venv (its `tasktrail` is what runs); `--after` defaults to
this one's. Each server gets its own copy of STORE. Prints the median ms of each path for each side with
the load average when the path's runs started and ended.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import duckdb

from tasktrail.proto.urlpath import segment

from .common import http_client, report, start_server
from .queries import store_arguments, store_of


def pick_invocation(db: str) -> str:
    """An invocation in the middle of the store that has a parent (a family of more than one)."""
    con = duckdb.connect(db, read_only=True)
    try:
        return con.execute(
            "SELECT invocation_id FROM invocation_state WHERE parent_invocation_id IS NOT NULL ORDER BY created_at "
            "LIMIT 1 OFFSET (SELECT count(*) // 2 FROM invocation_state WHERE parent_invocation_id IS NOT NULL)"
        ).fetchone()[0]
    finally:
        con.close()


def paths(inv: str) -> dict[str, list[str]]:
    """Each measured view: the requests it takes (the lazy page's browser asks /family and /logs after it)."""
    s = segment(inv)
    return {"invocation page (HTML)": [f"/invocations/{s}"],
            "invocation page + its family and logs JSON": [f"/invocations/{s}", f"/api/v1/invocations/{s}/family",
                                                           f"/api/v1/invocations/{s}/logs"],
            "invocation page JSON twin": [f"/invocations/{s}?format=json"],
            "invocation JSON (/api/v1)": [f"/api/v1/invocations/{s}"],
            "history JSON": [f"/api/v1/invocations/{s}/history"],
            "family JSON": [f"/api/v1/invocations/{s}/family"],
            "logs JSON": [f"/api/v1/invocations/{s}/logs"],
            "overview page": ["/"], "tasks page": ["/tasks"], "runners page": ["/runners"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    store_arguments(ap)
    ap.add_argument("--before", default=sys.executable, help="the Python whose tasktrail is the 'before'")
    ap.add_argument("--after", default=sys.executable)
    ap.add_argument("--reps", type=int, default=25)
    ap.add_argument("--json", dest="json_path")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        store_of(args, d)
        inv = pick_invocation(args.db)
        servers = {}
        try:
            for side, python in (("before", args.before), ("after", args.after)):
                copy = os.path.join(d, side + ".duckdb")
                shutil.copy(args.db, copy)
                proc, ports = start_server(copy, python=python)
                servers[side] = (proc, ports["web"])
            results = measure(servers, paths(inv), args.reps)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(60)
    rows = [("view (median ms of %d; load avg at start → end)" % args.reps, "before      after")]
    for name, r in results.items():
        rows.append((name, f"{r['before']:7.1f}  {r['after']:7.1f}   load {r['load'][0]:.2f} → {r['load'][1]:.2f}"))
    report(f"point reads over HTTP (invocation {inv})", rows, {"invocation": inv, "results": results}, args.json_path)


def measure(servers: dict, views: dict[str, list[str]], reps: int) -> dict:
    """{view: {before, after: median ms, load: (1-min load at start, at end)}}, the sides asked in turn."""
    out = {}
    with http_client() as c:
        def once(base: str, urls: list[str]) -> float:
            t = time.perf_counter()
            for u in urls:
                c.get(base + u).raise_for_status()
            return (time.perf_counter() - t) * 1000
        deadline = time.monotonic() + 15  # past the start's retention pass and a cold buffer pool
        while time.monotonic() < deadline:
            for urls in views.values():
                for _, base in servers.values():
                    once(base, urls)
        for name, urls in views.items():
            times: dict[str, list[float]] = {side: [] for side in servers}
            load0 = os.getloadavg()[0]
            for rep in range(reps):
                order = list(servers) if rep % 2 == 0 else list(reversed(servers))
                for side in order:
                    times[side].append(once(servers[side][1], urls))
            out[name] = {**{side: statistics.median(t) for side, t in times.items()},
                         "load": (load0, os.getloadavg()[0])}
    return out


if __name__ == "__main__":
    main()
