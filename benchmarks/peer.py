"""B7: tasktrail side by side with rustvello's own monitor, on the same rustvello workload.

    python -m benchmarks.peer --invocations 10000 --invocations 100000
    python -m benchmarks.peer --invocations 500 --reps 3          # what CI runs
    python -m benchmarks.peer --invocations 10000 --keep DIR      # keep both stores; the same DIR again
                                                                  # reads them, no new run

A real rustvello 0.9 app (benchmarks/peer_app.py) does the work with its SQLite backend and
sends OTLP to a served tasktrail; then rustvello's monitor (`app.start_monitor`) serves that
SQLite file while tasktrail serves its own store. Both are asked for the same pages over HTTP:
the invocation list, invocation detail (the same ids), and the timeline of the whole run
(the peer's with its limit of 500 and without; ours as the page plus the JSON it loads).
Reported: medians per page, peer ÷ ours (above 1: tasktrail is faster), and RSS of both servers.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from .common import (http_client, report, rss_mb, run_once, sql_rows, start_server, timed_get, tree_rss_mb,
                     wait_final, workdir)

APP = Path(__file__).with_name("peer_app.py")
TOKEN = "b7-token"


def _run_rustvello(ports: dict, db: str, n: int) -> dict:
    """A real rustvello run of n submissions sending OTLP to the served tasktrail; its summary."""
    import json
    run = subprocess.run([sys.executable, str(APP), "run", ports["http"], TOKEN, db, str(n)],
                         capture_output=True, text=True, timeout=7200)
    if run.returncode != 0:
        raise RuntimeError(f"rustvello run failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def one_size(n: int, reps: int, work: str) -> dict:
    db = os.path.join(work, f"rv-{n}.db")
    proc, ports = start_server(os.path.join(work, f"tt-{n}.duckdb"), "--ingest-token", TOKEN)
    mon = None
    try:
        summary, reused = run_once(os.path.join(work, f"summary-{n}.json"), lambda: _run_rustvello(ports, db, n))
        ours = http_client(120)
        base = ports["web"]
        total = sql_rows(ours, base, "SELECT count(*) FROM invocations")[0][0]
        total = wait_final(ours, base, total, 300)
        mon = subprocess.Popen([sys.executable, str(APP), "monitor", db], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
        peer_url = mon.stdout.readline().strip().rstrip("/")
        peer = http_client(600)
        ids = [r[0] for r in sql_rows(ours, base, "SELECT invocation_id FROM invocations ORDER BY invocation_id")]
        sample = random.Random(7).sample(ids, min(10, len(ids)))
        start = datetime.fromtimestamp(summary["started"] - 1, timezone.utc)
        end = datetime.fromtimestamp(summary["ended"] + 1, timezone.utc)
        iso = "%Y-%m-%dT%H:%M:%S.%f"
        p_window = f"time_range=custom&start_date={start.strftime(iso)[:-3]}&end_date={end.strftime(iso)[:-3]}"
        o_window = f"since={start.strftime(iso)}Z&until={end.strftime(iso)}Z"
        res = {"invocations": total, "rustvello_seconds": summary["seconds"], "reused": reused}
        res["list"] = (timed_get(peer, f"{peer_url}/invocations", reps), timed_get(ours, f"{base}/invocations", reps))
        res["detail"] = (statistics.median(timed_get(peer, f"{peer_url}/invocations/{i}", reps) for i in sample),
                         statistics.median(timed_get(ours, f"{base}/invocations/{i}", reps) for i in sample))
        page = timed_get(ours, f"{base}/timeline?{o_window}", reps)  # the page, then the JSON its script loads
        res["timeline_limit_500"] = (timed_get(peer, f"{peer_url}/invocations/timeline?{p_window}&limit=500", reps),
                                     page + timed_get(ours, f"{base}/api/v1/timeline?{o_window}&limit=500", reps))
        res["timeline_whole"] = (timed_get(peer, f"{peer_url}/invocations/timeline?{p_window}&limit=1000000",
                                        max(1, reps // 3)),
                                 page + timed_get(ours, f"{base}/api/v1/timeline?{o_window}&limit=20000", reps))
        res["rss_mb"] = (rss_mb(mon.pid)[1], tree_rss_mb(proc.pid))
        return res
    finally:
        if mon is not None:
            mon.terminate()
            mon.wait(30)
        proc.terminate()
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invocations", type=int, action="append", help="repeatable; default 10000 and 100000")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--keep", metavar="DIR", help="keep both stores in DIR and read them again on the next run "
                    "(peak RSS is then the serving servers' only)")
    args = ap.parse_args()
    sizes = args.invocations or [10_000, 100_000]
    rows, data = [], {"sizes": {}}
    with workdir(args.keep) as work:
        for n in sizes:
            r = one_size(n, args.reps, work)
            data["sizes"][n] = r
            again = ", stores kept from an earlier run" if r["reused"] else ""
            rows.append((f"{n:,} submitted ({r['invocations']:,} invocations, rustvello ran "
                         f"{r['rustvello_seconds']:.0f} s{again})", "peer / ours ms (peer ÷ ours)"))
            for key in ("list", "detail", "timeline_limit_500", "timeline_whole"):
                p, o = r[key]
                rows.append((f"  {key}", f"{p:,.1f} / {o:,.1f} ({p / o:.2f})"))
            rows.append(("  peak RSS: peer monitor / tasktrail", f"{r['rss_mb'][0]:.0f} / {r['rss_mb'][1]:.0f} MB"))
    report("B7 tasktrail vs rustvello's monitor", rows, data, args.json_path)


if __name__ == "__main__":
    main()
