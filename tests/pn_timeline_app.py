"""A real pynenc 0.4 run (Python 3.12, tasktrail's exporter on) for the timeline options' live test.

`python pn_timeline_app.py` runs a ThreadRunner in this process, submits 15 `nap(0.3)` and pynenc's own
two core tasks (`pynenc.core_tasks.*`, what pynmon's show_system=0 hides), waits for them, and prints as
JSON what pynenc itself holds: each invocation's task id and its state-backend history (status, time), and
every invocation of a core task its orchestrator knows (its cron may have run more)."""
import json
import threading
import time

from pynenc.identifiers.task_id import TaskId

from pn_timeline_tasks import THREADS, app, nap

from tasktrail.proto.pynenc import exporter

if __name__ == "__main__":
    threading.Thread(target=app.runner.run, daemon=True).start()
    time.sleep(0.5)
    invs = [nap(0.3) for _ in range(15)]
    app.register_core_tasks()
    core = [app.tasks[TaskId("pynenc.core_tasks", name)]() for name in
            ("recover_pending_invocations", "recover_running_invocations")]
    for inv in invs + core:
        inv.result
    time.sleep(0.5)
    app.runner.stop_runner_loop()
    # Every invocation of a core task pynenc holds (as pynmon finds them to hide): ours, and any its cron ran.
    core_ids = [t for t in app.tasks if str(t).startswith("pynenc.core_tasks.")]
    core_invs = sorted({str(i) for t in core_ids for i in app.orchestrator.get_task_invocation_ids(t)})
    histories = {str(i): [[h.status_record.status.name, h.timestamp.isoformat()]
                          for h in app.state_backend.get_history(str(i))]
                 for i in [x.invocation_id for x in invs + core] + core_invs}
    if exporter() is not None:
        exporter().flush()
    print(json.dumps({"threads": THREADS, "histories": histories,
                      "tasks": {i.invocation_id: str(i.task.task_id) for i in invs + core},
                      "core_task_ids": [str(t) for t in core_ids], "core_invocations": core_invs}))
