"""A real rustvello 0.9 app: run as `python rv_app.py ENDPOINT TOKEN DB N` (tests and `tasktrail demo`).

Prints one JSON object: {invocation_id: status} as rustvello itself reports them.
"""
import json
import sys
import time

import rustvello

endpoint, token, db, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = rustvello.App(app_id="live", backend="sqlite", db_path=db, otlp_endpoint=endpoint, otlp_bearer_token=token)


@app.task
def add(x, y):
    time.sleep(0.01)
    return x + y


@app.task(max_retries=2, retry_for=(ValueError,))
def boom(x):
    raise ValueError(f"bad {x}")


@app.workflow
def fan(k):
    return [add(i, i).result(timeout=30) for i in range(k)]


if __name__ == "__main__":
    app.run(num_workers=4, block=False)
    invs = [add(i, 1) for i in range(n)] + [boom(1), fan(3)]
    for inv in invs:
        try:
            inv.result(timeout=60)
        except Exception:
            pass
    time.sleep(0.5)
    statuses = {str(inv.id): str(inv.status).rsplit(".", 1)[-1].upper() for inv in invs}
    app.flush_telemetry()
    app.stop()
    print(json.dumps(statuses))
