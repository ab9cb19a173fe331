"""Two checkouts measured against each other in alternating pairs: what a change costs, on a noisy machine.

    python -m benchmarks.pairs OLD NEW                      # B1 served (300k records) and B5 reads at 1M, 3 pairs
    python -m benchmarks.pairs OLD NEW --what b1 --pairs 5 --records 100000
    python -m benchmarks.pairs OLD NEW --what reads --stores /tmp/pair-stores

OLD and NEW are checkouts of this repository, each with its own `.venv` (`pip install -e ".[test]"`), e.g. a
`git worktree add ../old <rev>`. Both use NEW's workload (benchmarks/workload.py), so both see the same
records; each runs in its own process with its own code. B5 stores are built once per checkout (each with
its own code and schema) and kept in --stores. Reported: each pair's figures and the medians, NEW ÷ OLD.

On a 2-core machine other work moves figures by ±20 %: with `sched_autogroup_enabled` on (Linux's
default), `nice` does not hold back processes of other sessions — `echo 0 >
/proc/sys/kernel/sched_autogroup_enabled` makes it work across sessions.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# Run inside a checkout's venv, with NEW's benchmarks/ first on sys.path (the workload both see).
_B1 = r"""
import os, sys
import benchmarks.ingest as bi
from benchmarks import common
n = int(sys.argv[1])
tick = os.sysconf("SC_CLK_TCK")
def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / tick
got = {}
orig = common.start_server
def start(db, *extra):
    proc, ports = orig(db, *extra)
    real = proc.terminate
    def term():
        got["server"] = cpu(proc.pid)
        got["workers"] = sum(cpu(k) for k in common.descendants(proc.pid))
        real()
    proc.terminate = term
    return proc, ports
bi.start_server = start
r = bi.served_run(bi._pool(n), n, 4, "grpc")
print(f"records/s={r['records_per_s']:.0f} server_cpu_us={got['server'] / n * 1e6:.1f} "
      f"workers_cpu_us={got['workers'] / n * 1e6:.1f}")
"""

_READS = r"""
import os, sys
from datetime import timedelta
from benchmarks.queries import build, timed, BASE, PER_HOUR
path, n, reps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if not os.path.exists(path):
    build(path, n)
from tasktrail.query.service import QueryService
from tasktrail.store.duckdb import DuckDBStore
store = DuckDBStore(path)
step = 3600 / PER_HOUR
qs = QueryService(store, clock=lambda: BASE + timedelta(seconds=n * step))
hour0 = BASE + timedelta(seconds=n // 2 * step)
inv = qs.invocations(limit=1, since=hour0.isoformat())["items"][-1]["invocation_id"]
window = {"since": hour0.isoformat(), "until": (hour0 + timedelta(hours=1)).isoformat()}
reads = {"detail_ms": lambda: qs.invocation(inv), "history_ms": lambda: qs.history(inv),
         "timeline_ms": lambda: qs.timeline(limit=10_000, **window), "page_ms": lambda: qs.invocation_page(inv)}
for fn in reads.values():
    for _ in range(3):
        fn()
print(" ".join(f"{k}={timed(fn, reps)[0]:.1f}" for k, fn in reads.items()))
store.close()
"""


def _run(checkout: str, workload_from: str, script: str, *args: str) -> dict[str, float]:
    """Run `script` in `checkout`'s venv with `workload_from`'s benchmarks package; its key=value line."""
    py = os.path.join(checkout, ".venv", "bin", "python")
    with tempfile.TemporaryDirectory() as d:
        shutil.copytree(os.path.join(workload_from, "benchmarks"), os.path.join(d, "benchmarks"))
        env = dict(os.environ, PYTHONPATH=d)
        out = subprocess.run([py, "-c", script, *args], cwd=checkout, env=env, capture_output=True, text=True,
                             timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"{checkout}: {out.stderr[-2000:]}")
    line = out.stdout.strip().splitlines()[-1]
    return {k: float(v) for k, v in (part.split("=") for part in line.split())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--what", choices=["b1", "reads", "both"], default="both")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--records", type=int, default=300_000, help="B1 records per run")
    ap.add_argument("--invocations", type=int, default=1_000_000, help="B5 store size")
    ap.add_argument("--reps", type=int, default=15, help="B5 repetitions per read (p50 reported)")
    ap.add_argument("--stores", default=os.path.join(tempfile.gettempdir(), "tasktrail-pairs"),
                    help="where the B5 stores are built and kept, one per checkout")
    args = ap.parse_args()
    old, new = os.path.abspath(args.old), os.path.abspath(args.new)
    jobs = []
    if args.what in ("b1", "both"):
        jobs.append(("B1 served", _B1, lambda name: (str(args.records),)))
    if args.what in ("reads", "both"):
        os.makedirs(args.stores, exist_ok=True)
        jobs.append(("B5 reads", _READS, lambda name: (os.path.join(args.stores, f"{name}-{args.invocations}.duckdb"),
                                                       str(args.invocations), str(args.reps))))
    for title, script, argv in jobs:
        runs: dict[str, list[dict]] = {"old": [], "new": []}
        for k in range(args.pairs):
            for name, checkout in (("old", old), ("new", new)):
                got = _run(checkout, new, script, *argv(name))
                runs[name].append(got)
                print(f"{title} pair {k + 1} {name}: " + " ".join(f"{m} {v:,.1f}" for m, v in got.items()), flush=True)
        print(f"\n{title}, medians of {args.pairs} pairs")
        for metric in runs["old"][0]:
            a = statistics.median(r[metric] for r in runs["old"])
            b = statistics.median(r[metric] for r in runs["new"])
            print(f"  {metric:<16} old {a:>10,.1f}   new {b:>10,.1f}   new/old {b / a:.3f}")
        print()


if __name__ == "__main__":
    sys.exit(main())
