"""A real rustvello 0.9 app for the anomaly test: `python rv_anomalies_app.py ROLE ENDPOINT TOKEN DB`.

ROLE `victim` runs one worker on queue `doomed` until it is killed (the test kills it mid-task).
ROLE `main` runs one worker on the default queue, builds the `work` task's history (quick runs),
submits `hang` (which only the victim takes) and one `work` made slow, and prints one JSON line per
step: {"step": "history", "ids": [...]}, {"step": "hang", "id": ...}, {"step": "slow", "id": ...}.
It then waits for the slow run to finish (or to be killed) and exits.
"""
import json
import sys
import time

import rustvello

from tasktrail.proto.emitter import ProcessPulse

role, endpoint, token, db = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
app = rustvello.App(app_id="anomalies", backend="sqlite", db_path=db, otlp_endpoint=endpoint,
                    otlp_bearer_token=token)


@app.task
def work(seconds):
    time.sleep(seconds)
    return seconds


@app.task(queue="doomed")
def hang(seconds):
    time.sleep(seconds)
    return seconds


def say(**kw):
    print(json.dumps(kw), flush=True)


if __name__ == "__main__":
    # rustvello sends nothing while a worker runs a task: the process's own pulse says it is alive.
    pulse = ProcessPulse(endpoint, "anomalies", token=token, interval_s=0.5)
    if role == "victim":
        app.run(num_workers=1, queues=["doomed"], block=True)
        sys.exit(0)
    slow_s = float(sys.argv[5]) if len(sys.argv) > 5 else 20.0
    app.run(num_workers=1, queues=["default"], block=False)
    quick = [work(0.02) for _ in range(int(sys.argv[6]) if len(sys.argv) > 6 else 25)]
    for inv in quick:
        inv.result(timeout=60)
    app.flush_telemetry()
    say(step="history", ids=[str(i.id) for i in quick])
    doomed = hang(600)
    say(step="hang", id=str(doomed.id))
    slow = work(slow_s)
    say(step="slow", id=str(slow.id))
    try:
        slow.result(timeout=slow_s + 60)
    except Exception:
        pass
    app.flush_telemetry()
    app.stop()
    say(step="done")
