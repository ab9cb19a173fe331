"""The pynenc exporter's cost per status transition (issue 5).

    python -m benchmarks.pynenc_exporter                 # 20,000 transitions
    python -m benchmarks.pynenc_exporter --transitions 2000 --runs 1   # what CI runs

Times pynenc's own `state_backend.add_history` (memory backend) with and without the exporter's hook,
in the Python 3.12 that has pynenc (.venv312 or TASKTRAIL_PY312); the exporter sends to a real
`tasktrail serve`. Reports microseconds per transition, the hook's share, and drops.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .common import report, start_server

def child(n: int, runs: int, hooked: bool) -> dict:
    """Runs inside Python 3.12: time add_history n times, best of `runs`."""
    import time
    import uuid

    from pynenc import PynencBuilder
    from pynenc.runner.runner_context import RunnerContext
    from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord

    ex = None
    if hooked:
        from tasktrail.proto.pynenc import install
        ex = install()
    app = PynencBuilder().app_id("bench-exporter").memory().build()
    ctx = RunnerContext(runner_cls="ThreadRunner")
    backend = app.state_backend
    statuses = [InvocationStatus.REGISTERED, InvocationStatus.PENDING, InvocationStatus.RUNNING,
                InvocationStatus.SUCCESS]
    best = float("inf")
    cpu0 = time.process_time()
    for _ in range(runs):
        ids = [str(uuid.uuid4()) for _ in range(n // 4)]
        t = time.perf_counter()
        for s in statuses:
            rec = InvocationStatusRecord(s, ctx.runner_id)
            for i in ids:
                backend.add_history(i, rec, ctx)
        best = min(best, (time.perf_counter() - t) / (len(ids) * 4))
    stats = None
    if ex:
        ex.flush(60_000)
    cpu = (time.process_time() - cpu0) / (runs * (n // 4) * 4)  # every thread's CPU, the sending included
    if ex:
        stats = {**vars(ex.stats), "sent": sum(em.stats.sent for em in ex._emitters.values()),
                 "sender_dropped": sum(em.stats.dropped for em in ex._emitters.values())}
    return {"us_per_transition": best * 1e6, "cpu_us_per_transition": cpu * 1e6, "stats": stats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transitions", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--child", choices=["plain", "hooked"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.transitions, args.runs, args.child == "hooked")))
        return
    from tasktrail.demo.loop import find_python312

    py = find_python312(Path(__file__).resolve().parents[1])
    if py is None:
        sys.exit("no Python 3.12 with pynenc and tasktrail (bash .ci/run builds .venv312)")
    with tempfile.TemporaryDirectory() as d:
        proc, ports = start_server(os.path.join(d, "exp.duckdb"))
        try:
            out = {}
            for kind in ("plain", "hooked"):
                env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{ports['grpc']}",
                       "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
                if kind == "plain":
                    env.pop("TASKTRAIL_ENDPOINT")
                r = subprocess.run([py, "-m", "benchmarks.pynenc_exporter", "--child", kind, "--transitions",
                                    str(args.transitions), "--runs", str(args.runs)], env=env, capture_output=True,
                                   text=True, timeout=600, cwd=Path(__file__).resolve().parents[1])
                if r.returncode:
                    sys.exit(r.stderr[-2000:])
                out[kind] = json.loads(r.stdout.strip().splitlines()[-1])
        finally:
            proc.terminate()
            proc.wait(60)
    plain, hooked = out["plain"]["us_per_transition"], out["hooked"]["us_per_transition"]
    rows = [("transitions per run", f"{args.transitions:,}"), ("runs (best of)", str(args.runs)),
            ("pynenc add_history, no exporter", f"{plain:.1f} µs"), ("with the exporter", f"{hooked:.1f} µs"),
            ("exporter cost per transition, in the caller", f"{hooked - plain:.1f} µs"),
            ("process CPU per transition, no exporter / with it (its sending threads included)",
             f"{out['plain']['cpu_us_per_transition']:.1f} / {out['hooked']['cpu_us_per_transition']:.1f} µs"),
            ("records emitted / received by tasktrail / dropped / errors",
             "{emitted} / {sent} / {dropped} / {errors}".format(**out["hooked"]["stats"]))]
    report("pynenc exporter cost", rows, {"plain_us": plain, "hooked_us": hooked, "stats": out["hooked"]["stats"],
                                          "plain_cpu_us": out["plain"]["cpu_us_per_transition"],
                                          "hooked_cpu_us": out["hooked"]["cpu_us_per_transition"]},
           args.json_path)


if __name__ == "__main__":
    main()
