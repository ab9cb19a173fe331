"""A real pynenc 0.4 run (Python 3.12, tasktrail's exporter on) for the anomaly test.

`python pn_anomalies_app.py` starts a PersistentProcessRunner (2 worker processes, SQLite) in a child
process, builds the `work` task's history (25 quick runs), then submits `work(600)` (to be killed: the
task writes its worker's pid to `pid-hang`) and `work(SLOW)`, printing one JSON line per step, and waits.
"""
import json
import os
import subprocess
import sys
import time

from pn_anomalies_tasks import work


def say(**kw):
    print(json.dumps(kw), flush=True)


if __name__ == "__main__":
    runner = subprocess.Popen([sys.executable, "-c", "from pn_anomalies_tasks import app; app.runner.run()"],
                              env=os.environ)
    say(step="runner", pid=runner.pid)
    quick = [work(0.01, f"q{i}") for i in range(25)]
    for q in quick:
        q.result
    say(step="history", ids=[q.invocation_id for q in quick])
    hang = work(600, "hang")
    say(step="hang", id=hang.invocation_id)
    slow = work(float(os.environ.get("SLOW", "60")), "slow")
    say(step="slow", id=slow.invocation_id)
    time.sleep(600)
