"""A real rustvello 0.9 app for the Prometheus test: `python rv_alerts_app.py ROLE ENDPOINT TOKEN DB [SECONDS]`.

ROLE `victim` runs one worker on queue `doomed` until it is killed (the test kills it mid-task).
ROLE `main` runs one worker on the default queue and keeps work flowing for SECONDS (default 120): quick
`work` runs and, every third one, a `flaky` run that fails; it submits one `hang` (which only the victim
takes) once the first round finished, and prints one JSON line per step: {"step": "flowing"},
{"step": "hang", "id": ...}.
"""
import json
import sys
import time

import rustvello

from tasktrail.proto.emitter import ProcessPulse

role, endpoint, token, db = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
app = rustvello.App(app_id="alerts", backend="sqlite", db_path=db, otlp_endpoint=endpoint,
                    otlp_bearer_token=token)


@app.task
def work(seconds):
    time.sleep(seconds)
    return seconds


@app.task
def flaky(n):
    raise ValueError(f"flaky run {n} failed")


@app.task(queue="doomed")
def hang(seconds):
    time.sleep(seconds)
    return seconds


def say(**kw):
    print(json.dumps(kw), flush=True)


if __name__ == "__main__":
    # rustvello sends nothing while a worker runs a task: the process's own pulse says it is alive.
    pulse = ProcessPulse(endpoint, "alerts", token=token, interval_s=0.5)
    if role == "victim":
        app.run(num_workers=1, queues=["doomed"], block=True)
        sys.exit(0)
    until = time.monotonic() + (float(sys.argv[5]) if len(sys.argv) > 5 else 120.0)
    app.run(num_workers=1, queues=["default"], block=False)
    n = 0
    while time.monotonic() < until:
        batch = [work(0.02 + 0.03 * (i % 4)) for i in range(4)] + [flaky(n)]
        for inv in batch:
            try:
                inv.result(timeout=60)
            except Exception:
                pass  # flaky fails: that is its job
        app.flush_telemetry()
        if n == 0:
            say(step="flowing")
            say(step="hang", id=str(hang(600).id))
        n += 1
        time.sleep(0.2)
    app.stop()
    say(step="done")
