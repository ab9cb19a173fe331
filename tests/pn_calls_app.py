"""Run tests/pn_calls_tasks.py's app with tasktrail's exporter on (TASKTRAIL_ENDPOINT set by the caller) and
print, as one JSON line, what pynenc itself holds: each invocation's call (call id, task, arguments, and the
invocations pynenc's orchestrator holds for it), its state-backend history with the runner context of every
record (class, host, pid, thread), and the exporter's counters."""
import json
import os
import signal
import subprocess
import sys
import threading
import time


def _context(app, runner_id):
    ctx = app.state_backend.get_runner_context(runner_id)
    if ctx is None:
        return None
    return {"runner_cls": ctx.runner_cls, "hostname": ctx.hostname, "pid": ctx.pid, "thread_id": ctx.thread_id}


def main() -> None:
    from pn_calls_tasks import KIND, add, app, shaky

    from tasktrail.proto.pynenc import exporter

    if KIND == "sqlite":
        runner = subprocess.Popen([sys.executable, "-c", "from pn_calls_tasks import app; app.runner.run()"],
                                  env=os.environ)
    else:
        runner = threading.Thread(target=app.runner.run, daemon=True)
        runner.start()
    invocations = [add(1, 2), add(1, 2), add(2, 3), shaky("s1")]
    for inv in invocations:
        inv.result
    if KIND == "sqlite":
        runner.send_signal(signal.SIGTERM)
        runner.wait(60)
    else:
        app.runner.stop_runner_loop()
    time.sleep(0.5)
    calls, histories, contexts = {}, {}, {}
    for inv in invocations:
        call = inv.call
        key = call.call_id.key
        calls[key] = {"task_id": str(call.task.task_id), "arguments": str(call.arguments),
                      "invocation_ids": sorted(app.orchestrator.get_call_invocation_ids(call.call_id))}
        history = app.state_backend.get_history(inv.invocation_id)
        histories[inv.invocation_id] = {"call_id": key, "records": [
            [h.status_record.status.name, h.runner_context_id] for h in history]}
        for h in history:
            contexts.setdefault(h.runner_context_id, _context(app, h.runner_context_id))
    ex = exporter()
    ex.flush()
    print(json.dumps({"calls": calls, "histories": histories, "contexts": contexts, "stats": vars(ex.stats),
                      "shaky": invocations[-1].invocation_id, "app_id": app.app_id}))


if __name__ == "__main__":
    main()
