"""A real pynenc 0.4 run (Python 3.12, tasktrail's exporter on, TASKTRAIL_QUEUE_INTERVAL short) for the
queue-depth test: `python pn_queues_app.py N`.

A ThreadRunner in this process consumes `default`; three `work` calls run there, then N `stuck` calls go
to `orphan`, which no runner consumes. Once the runner has reported a few times, it prints one JSON line
with pynenc's own broker counts per queue ({"counts": {queue: n}, "runner_id": ...}), then waits for a
line on stdin, stops the runner, flushes the exporter and prints {"step": "done"}.
"""
import json
import sys
import threading
import time

from pn_queues_tasks import app, stuck, work

from tasktrail.proto.pynenc import exporter


def say(**kw):
    print(json.dumps(kw), flush=True)


if __name__ == "__main__":
    n = int(sys.argv[1])
    threading.Thread(target=app.runner.run, daemon=True).start()
    for inv in [work(i) for i in range(3)]:
        assert inv.result is not None
    waiting = [stuck(i) for i in range(n)]
    time.sleep(2.0)  # a few reports (every TASKTRAIL_QUEUE_INTERVAL s) after the last routing
    say(step="counts", counts={q: app.broker.count_invocations([q]) for q in app.broker.conf.queues},
        runner_id=app.runner.runner_id, stuck=[i.invocation_id for i in waiting])
    sys.stdin.readline()
    app.runner.stop_runner_loop()
    time.sleep(0.5)
    exporter().flush()
    say(step="done", stats=vars(exporter().stats))
