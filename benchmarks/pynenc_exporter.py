"""The pynenc exporter's cost per status transition (issue 5).

    python -m benchmarks.pynenc_exporter                 # 20,000 transitions
    python -m benchmarks.pynenc_exporter --transitions 2000 --runs 1   # what CI runs

Times pynenc's own `state_backend.add_history` (memory backend) with and without the exporter's hook,
in the Python 3.12 that has pynenc (.venv312 or TASKTRAIL_PY312); the exporter sends to a real
`tasktrail serve`. Two bursts: `--runs` of `--transitions` back to back (best of), then `--transitions` paced
at `--rate` a second (issue 20's 25,000/s: the caller's time inside add_history, the process's CPU with the
sending threads until all is sent, and what was dropped). Reports microseconds per transition, the hook's
share, and drops.
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

def paced(backend, ctx, n: int, rate: int, flush) -> dict:
    """`n` transitions at `rate` a second (a chunk each millisecond, sleeping between chunks): the caller's
    wall time inside add_history and the process's CPU per transition (everything sent, by `flush`)."""
    import time
    import uuid

    from pynenc.invocation.status import InvocationStatus, InvocationStatusRecord

    ids = [str(uuid.uuid4()) for _ in range(max(1, n // 4))]
    calls = [(i, InvocationStatusRecord(s, ctx.runner_id)) for s in (
        InvocationStatus.REGISTERED, InvocationStatus.PENDING, InvocationStatus.RUNNING, InvocationStatus.SUCCESS)
        for i in ids]
    chunk, busy, add = max(1, rate // 1000), 0.0, backend.add_history
    cpu0, start = time.process_time(), time.perf_counter()
    for k in range(0, len(calls), chunk):
        t = time.perf_counter()
        for i, rec in calls[k:k + chunk]:
            add(i, rec, ctx)
        done = time.perf_counter()
        busy += done - t
        ahead = start + (k + chunk) / rate - done
        if ahead > 0:
            time.sleep(ahead)
    elapsed = time.perf_counter() - start
    flush()
    cpu = time.process_time() - cpu0
    return {"caller_us": busy / len(calls) * 1e6, "cpu_us": cpu / len(calls) * 1e6,
            "rate": len(calls) / elapsed, "transitions": len(calls)}


def _counts(ex) -> dict:
    return {**vars(ex.stats), "sent": sum(em.stats.sent for em in ex._emitters.values()),
            "sender_dropped": sum(em.stats.dropped for em in ex._emitters.values())}


def child(n: int, runs: int, hooked: bool, rate: int) -> dict:
    """Runs inside Python 3.12: time add_history n times, best of `runs`; then n paced at `rate`."""
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
    stats = burst = None
    if ex:
        ex.flush(60_000)
    cpu = (time.process_time() - cpu0) / (runs * (n // 4) * 4)  # every thread's CPU, the sending included
    if ex:
        stats = _counts(ex)
    burst = paced(backend, ctx, n, rate, (lambda: ex.flush(60_000)) if ex else (lambda: None))
    if ex:
        after = _counts(ex)
        burst.update({k: after[k] - stats[k] for k in ("emitted", "sent", "dropped", "sender_dropped", "errors")})
    return {"us_per_transition": best * 1e6, "cpu_us_per_transition": cpu * 1e6, "stats": stats, "paced": burst}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transitions", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=int, default=25_000, help="transitions a second of the paced burst")
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--child", choices=["plain", "hooked"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.transitions, args.runs, args.child == "hooked", args.rate)))
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
                                    str(args.transitions), "--runs", str(args.runs), "--rate", str(args.rate)], env=env, capture_output=True,
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
    p0, p1 = out["plain"]["paced"], out["hooked"]["paced"]
    rows += [(f"paced burst: {p1['transitions']:,} transitions at {args.rate:,}/s (reached, no exporter / with it)",
              f"{p0['rate']:,.0f} / {p1['rate']:,.0f} /s"),
             ("  caller's time per transition, no exporter / with it / the exporter's share",
              f"{p0['caller_us']:.1f} / {p1['caller_us']:.1f} / {p1['caller_us'] - p0['caller_us']:.1f} µs"),
             ("  process CPU per transition, no exporter / with it (until all is sent)",
              f"{p0['cpu_us']:.1f} / {p1['cpu_us']:.1f} µs"),
             ("  records emitted / received by tasktrail / dropped / errors",
              "{emitted} / {sent} / {dropped} / {errors}".format(
                  **{**p1, "dropped": p1["dropped"] + p1["sender_dropped"]}))]
    report("pynenc exporter cost", rows, {"plain_us": plain, "hooked_us": hooked, "stats": out["hooked"]["stats"],
                                          "plain_cpu_us": out["plain"]["cpu_us_per_transition"],
                                          "hooked_cpu_us": out["hooked"]["cpu_us_per_transition"],
                                          "paced": {"rate": args.rate, "plain": p0, "hooked": p1}},
           args.json_path)


if __name__ == "__main__":
    main()
