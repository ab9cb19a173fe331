"""A real rustvello 0.9 app for the queue-depth test: `python rv_queues_app.py ENDPOINT TOKEN DB N`.

tasktrail's `report_queue_depths` (proto/rustvello_queues.py) is attached with one call and reports
`App.queue_depths()` every 0.3 s. N `work` calls are queued while no worker runs; the app prints
{"step": "queued", "depths": App.queue_depths(), "ids": [...]} and waits for a line on stdin, then starts
a runner with two workers, waits for every result, prints {"step": "drained", "depths": ...} once its
reporter has sent the empty queue, waits for another line and stops.
"""
import json
import sys
import time

import rustvello

from tasktrail.proto.rustvello_queues import report_queue_depths

endpoint, token, db, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
app = rustvello.App(app_id="rv-queues", backend="sqlite", db_path=db, otlp_endpoint=endpoint,
                    otlp_bearer_token=token)


@app.task
def work(x):
    time.sleep(0.05)
    return x


def say(**kw):
    print(json.dumps(kw), flush=True)


if __name__ == "__main__":
    reporter = report_queue_depths(app, endpoint, token=token, interval_s=0.3)
    queued = [work(i) for i in range(n)]
    time.sleep(1.0)
    say(step="queued", depths=app.queue_depths(), ids=[str(i.id) for i in queued])
    sys.stdin.readline()
    app.run(num_workers=2, block=False)
    results = [inv.result(timeout=60) for inv in queued]
    time.sleep(1.0)
    app.flush_telemetry()
    say(step="drained", depths=app.queue_depths(), results=results)
    sys.stdin.readline()
    reporter.stop()
    app.stop()
    say(step="done", errors=reporter.errors)
