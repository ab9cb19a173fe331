"""Run the pynenc app with the exporter on (TASKTRAIL_ENDPOINT set by the caller) and print, as JSON,
what pynenc itself stored: every invocation's history and every atomic-service execution.

thread: the ThreadRunner runs in this process. ppr: the PersistentProcessRunner runs in a process of
its own (as in production; its workers are spawned) and this script submits as an ExternalRunner."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone


def main() -> None:
    from pn_tasks import KIND, add, app, flaky, flow

    from tasktrail.proto.pynenc import exporter

    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    if KIND == "ppr":
        runner = subprocess.Popen([sys.executable, "-c", "from pn_tasks import app; app.runner.run()"],
                                  env=os.environ)
    else:
        runner = threading.Thread(target=app.runner.run, daemon=True)
        runner.start()
    invocations = [add(1, 2), flaky(3), flow(3), add(5, 5)]
    for inv in invocations:
        try:
            inv.result
        except Exception:
            pass
    time.sleep(8)  # let the atomic service run cycles and the status trigger fire
    if KIND == "ppr":
        runner.send_signal(signal.SIGTERM)
        runner.wait(60)
    else:
        app.runner.stop_runner_loop()
    time.sleep(1)
    end = datetime.now(timezone.utc) + timedelta(seconds=5)
    histories = {}
    for batch in app.state_backend.iter_invocations_in_timerange(start, end, batch_size=500):
        for inv_id in batch:
            histories[inv_id] = [[h.status_record.status.name, h.runner_context_id, h.status_record.runner_id]
                                 for h in app.state_backend.get_history(inv_id)]
    executions = [[e.atomic_service_run_id, e.runner_id, str(e.status.value).upper()]
                  for e in app.orchestrator.get_atomic_service_executions_in_timerange(start, end, limit=1000)]
    ex = exporter()
    ex.flush()
    print(json.dumps({"histories": histories, "executions": executions, "stats": vars(ex.stats),
                      "tasks": {i.invocation_id: str(i.task.task_id) for i in invocations}}))


if __name__ == "__main__":
    main()
