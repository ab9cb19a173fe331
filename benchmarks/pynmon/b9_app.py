"""B9's pynenc side, run with the Python 3.12 venv that holds pynenc[monitor] 0.4.0.

    python b9_app.py run N        # N invocations into $B9_DB (tasktrail's exporter on when
                                  # TASKTRAIL_ENDPOINT is set); prints a JSON summary
    (Pynmon itself: `pynenc --app b9_tasks.app monitor --port P`, started by peer_pynmon.py)

The work: quick tasks, 1 % failing, and every 50th submission a workflow parent with 9 children.
A ThreadRunner (16 threads) in a child process does it.
"""
import json
import os
import subprocess
import sys
import time

from b9_tasks import app, boom, fan, quick


def run(n: int) -> dict:
    runner = subprocess.Popen([sys.executable, "-c", "from b9_tasks import app; app.runner.run()"], env=os.environ)
    try:
        t0 = time.time()
        invs, made, parents, failing = [], 0, [], []
        i = 0
        while made < n:
            if i % 50 == 0 and made + 10 <= n:
                inv = fan(9)
                parents.append(inv)
                made += 10
            elif i % 100 == 1:
                inv = boom(i)
                failing.append(inv)
                made += 1
            else:
                inv = quick(i)
                made += 1
            invs.append(inv)
            i += 1
        submitted = time.time()
        for inv in invs:
            try:
                inv.result
            except Exception:  # noqa: BLE001 - the failing ones
                pass
        # The children of the last parents may still be running: wait until pynenc holds every one final.
        from pynenc.invocation.status import InvocationStatus
        final = InvocationStatus.get_final_statuses()
        deadline = time.time() + 600
        while time.time() < deadline and app.orchestrator.count_invocations(statuses=list(final)) < made:
            time.sleep(0.5)
        ended = time.time()
        return {"started": t0, "ended": ended, "seconds": ended - t0, "submit_seconds": submitted - t0, "invocations": made,
                "parent": parents[-1].invocation_id if parents else None,
                "failed": failing[-1].invocation_id if failing else None}
    finally:
        runner.terminate()
        runner.wait(60)


if __name__ == "__main__":
    summary = run(int(sys.argv[2]))
    time.sleep(3)  # the exporter's batch queue flushes at exit too
    print(json.dumps(summary), flush=True)
