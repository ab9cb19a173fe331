"""B9: tasktrail side by side with Pynmon (pynenc 0.4.0's monitor), on the same real pynenc run.

    python -m benchmarks.peer_pynmon --invocations 10000 --invocations 50000
    python -m benchmarks.peer_pynmon --invocations 200 --reps 2        # what CI runs
    python -m benchmarks.peer_pynmon --invocations 50000 --keep DIR     # keep both stores; a second run with
                                                                        # the same DIR reads them, no new run

A real pynenc 0.4 app (benchmarks/pynmon/b9_app.py, Python 3.12 with `pynenc[monitor]==0.4.0`)
does the work with its SQLite backend and tasktrail's exporter on (TASKTRAIL_ENDPOINT), so the same
run is stored in pynenc's SQLite file and in a served tasktrail. Then Pynmon (`pynenc monitor`)
serves that SQLite file while tasktrail serves its store, and both are asked for the same pages
over HTTP: the invocation list, the list by status (FAILED), the detail of a workflow parent and of
a failed invocation, the history JSON, the family, tasks, runners, the dashboard, and the timeline
(the default view and the whole run). Reported: medians per page, Pynmon ÷ tasktrail (above 1:
tasktrail is faster), and the peak RSS of both servers (tasktrail with its ingest workers).

Two pairs do not show the same thing (pynmon/views/tasks.py and home.py of pynenc 0.4.0): Pynmon's tasks
page lists the tasks its app object registered, from memory, with no read of its store (id, module,
function, concurrency), where ours reads each task's counts by status, success rate, duration p50/p95/p99
and throughput over the last 24 h from the store; Pynmon's dashboard shows indexed counts by status group
and its components' classes, ours the counts, anomalies, runners, work in flight and the latest failures.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

from .common import (http_client, report, rss_mb, run_once, start_server, timed_get, tree_rss_mb, wait_final,
                     workdir)

APP_DIR = Path(__file__).with_name("pynmon")
ROOT = Path(__file__).resolve().parent.parent


def python312() -> str:
    """The Python 3.12 that holds pynenc[monitor] 0.4.0: $B9_PYTHON, else the repository's .venv312."""
    py = os.environ.get("B9_PYTHON") or str(ROOT / ".venv312" / "bin" / "python")
    if not Path(py).exists():
        raise SystemExit(f"B9 needs Python 3.12 with pynenc[monitor]==0.4.0 at {py} (.ci/run builds it)")
    return py


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_pynmon(py: str, env: dict) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    mon = subprocess.Popen([py, "-m", "pynenc", "--app", "b9_tasks.app", "monitor", "--port", str(port),
                            "--log-level", "warning"], cwd=APP_DIR, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    client = http_client(30)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if client.get(url + "/").status_code == 200:
                return mon, url
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        if mon.poll() is not None:
            raise RuntimeError("Pynmon exited at start")
        time.sleep(0.5)
    mon.kill()
    raise RuntimeError("Pynmon did not answer within 90 s")


def _pages(summary: dict, task_key: str) -> list[tuple[str, str, str]]:
    """(name, Pynmon path, tasktrail path) of every compared page, for the run in `summary`."""
    start = datetime.fromtimestamp(summary["started"] - 1, timezone.utc)
    end = datetime.fromtimestamp(summary["ended"] + 5, timezone.utc)
    iso = "%Y-%m-%dT%H:%M:%S.%f"
    p_window = f"time_range=custom&start_date={start.strftime(iso)}%2B00:00&end_date={end.strftime(iso)}%2B00:00"
    o_window = f"since={start.strftime(iso)}Z&until={end.strftime(iso)}Z"
    parent, failed = quote(summary["parent"], safe=""), quote(summary["failed"], safe="")
    return [
        ("list", "/invocations/", "/invocations"),
        ("list by status FAILED", "/invocations/?status=failed", "/invocations?status=FAILED"),
        ("detail, workflow parent", f"/invocations/{parent}", f"/invocations/{parent}"),
        ("detail, failed", f"/invocations/{failed}", f"/invocations/{failed}"),
        ("history JSON", f"/invocations/{failed}/history", f"/api/v1/invocations/{failed}/history"),
        ("family", f"/invocations/{parent}/family-tree", f"/api/v1/invocations/{parent}/family"),
        ("tasks", "/tasks/", "/tasks"),
        ("task detail", f"/tasks/{quote(task_key, safe='')}", "/tasks/" + quote("b9_tasks.quick", safe="")),
        ("runners", "/runners/", "/runners"),
        ("dashboard", "/", "/"),
        ("timeline, default", "/invocations/timeline", "/timeline"),
        ("timeline, whole run", f"/invocations/timeline?{p_window}&limit=", f"/timeline?{o_window}"),
    ]


def _run_pynenc(py: str, n: int, env: dict) -> dict:
    """A real pynenc run of n invocations; its summary (the b9 app's last line)."""
    run = subprocess.run([py, "b9_app.py", "run", str(n)], cwd=APP_DIR, env=env, capture_output=True,
                         text=True, timeout=7200)
    if run.returncode != 0:
        raise RuntimeError(f"pynenc run failed: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def one_size(n: int, reps: int, work: str) -> dict:
    py = python312()
    db = os.path.join(work, f"pn-{n}.sqlite")
    proc, ports = start_server(os.path.join(work, f"tt-{n}.duckdb"))
    mon = None
    try:
        env = {**os.environ, "B9_DB": db, "TASKTRAIL_ENDPOINT": "http://" + ports["grpc"],
               "PYTHONPATH": str(APP_DIR), "TASKTRAIL_LOGS": "off"}
        summary, reused = run_once(os.path.join(work, f"summary-{n}.json"), lambda: _run_pynenc(py, n, env))
        ours, base = http_client(600), ports["web"]
        total = wait_final(ours, base, summary["invocations"], 600)
        mon_env = {k: v for k, v in env.items() if k != "TASKTRAIL_ENDPOINT"}
        mon, peer_url = _start_pynmon(py, mon_env)
        peer = http_client(600)
        task_key = _task_key(py, mon_env)
        res = {"invocations": total, "pynenc_seconds": summary["seconds"], "reused": reused}
        for name, p_path, o_path in _pages(summary, task_key):
            slow = name.startswith("timeline")
            r = max(1, reps // 3) if slow else reps
            o_ms = timed_get(ours, base + o_path, r)
            if name.startswith("timeline"):  # our page draws from the JSON its script loads
                o_ms += timed_get(ours, base + "/api/v1/timeline" + o_path[len("/timeline"):], r)
            res[name] = (timed_get(peer, peer_url + p_path, r), o_ms)
        # Peaks: the server's own high-water mark, plus its ingest workers' current RSS.
        workers = tree_rss_mb(proc.pid) - rss_mb(proc.pid)[0]
        res["rss_mb"] = (rss_mb(mon.pid)[1], rss_mb(proc.pid)[1] + workers)
        return res
    finally:
        if mon is not None:
            mon.terminate()
            mon.wait(30)
        proc.terminate()
        proc.wait(60)


def _task_key(py: str, env: dict) -> str:
    """Pynmon's key for the `quick` task (its task pages are addressed by TaskId.key)."""
    out = subprocess.run([py, "-c", "from b9_tasks import quick; print(quick.task_id.key)"], cwd=APP_DIR,
                         env=env, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-1000:])
    return out.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--invocations", type=int, action="append", help="repeatable; default 10000 and 50000")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--json", dest="json_path")
    ap.add_argument("--keep", metavar="DIR", help="keep both stores in DIR and read them again on the next run "
                    "(peak RSS is then the serving servers' only)")
    args = ap.parse_args()
    sizes = args.invocations or [10_000, 50_000]
    rows, data = [], {"sizes": {}}
    with workdir(args.keep) as work:
        for n in sizes:
            r = one_size(n, args.reps, work)
            data["sizes"][n] = r
            again = ", stores kept from an earlier run" if r["reused"] else ""
            rows.append((f"{r['invocations']:,} invocations (pynenc ran {r['pynenc_seconds']:.0f} s{again})",
                         "Pynmon / tasktrail ms (Pynmon ÷ tasktrail)"))
            for key, val in r.items():
                if isinstance(val, tuple) and key != "rss_mb":
                    p, o = val
                    rows.append((f"  {key}", f"{p:,.1f} / {o:,.1f} ({p / o:.2f})"))
            rows.append(("  peak RSS: Pynmon / tasktrail", f"{r['rss_mb'][0]:.0f} / {r['rss_mb'][1]:.0f} MB"))
    report("B9 tasktrail vs Pynmon", rows, data, args.json_path)


if __name__ == "__main__":
    main()
