"""B7's rustvello 0.9 app: real work stored in rustvello's SQLite backend and sent to tasktrail.

    python benchmarks/peer_app.py run ENDPOINT TOKEN DB N     # N invocations; prints a JSON summary
    python benchmarks/peer_app.py monitor DB                  # rustvello's own monitor on DB; prints its URL

Quick tasks, ~5% retried once, and workflows of 10 children (the workload BENCHMARKS.md measured
the peer with). The monitor runs in a process that defines the same tasks, as a deployment would.
"""
import json
import sys
import time

import rustvello

mode, db = sys.argv[1], sys.argv[3] if sys.argv[1] == "run" else sys.argv[2]
if mode == "run":
    endpoint, token = sys.argv[2], sys.argv[3]
    db, n = sys.argv[4], int(sys.argv[5])
    app = rustvello.App(app_id="peer", backend="sqlite", db_path=db, otlp_endpoint=endpoint,
                        otlp_bearer_token=token)
else:
    app = rustvello.App(app_id="peer", backend="sqlite", db_path=db)


@app.task
def quick(x):
    return x * 2


@app.task(max_retries=1, retry_for=(ValueError,))
def flaky(x):
    if rustvello.get_current_num_retries() == 0:
        raise ValueError(f"first attempt of {x} fails")
    return x


@app.workflow
def fan(k):
    return sum(quick(i).result(timeout=120) for i in range(k))


def run(n: int) -> None:
    app.run(num_workers=4, block=False)
    t0 = time.time()
    done, chunk = 0, 2000
    while done < n:
        invs = []
        for i in range(done, min(n, done + chunk)):
            if i % 110 == 0:
                invs.append(fan(10))       # 1 + 10 invocations
            elif i % 20 == 0:
                invs.append(flaky(i))      # ~5% retried once
            else:
                invs.append(quick(i))
        for inv in invs:
            inv.result(timeout=300)
        done += len(invs)
    elapsed = time.time() - t0
    app.flush_telemetry()
    app.stop()
    print(json.dumps({"submitted": n, "seconds": elapsed, "started": t0, "ended": time.time()}))


if __name__ == "__main__":
    if mode == "run":
        run(n)
    else:
        server = app.start_monitor(port=0, log_level="error", read_only=True)
        print(server.url, flush=True)
        from rustvello.app import _serve_until_signal
        _serve_until_signal(server)
