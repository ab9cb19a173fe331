"""A real pynenc 0.4 run (Python 3.12, tasktrail's exporter on) for the search test: calls tasks with
positional and keyword arguments, some failing, then prints as JSON what pynenc itself holds for every
invocation, read from its own state backend in this process: task, arguments (pynenc's Arguments.kwargs,
each value as str), final status, result and error."""
import json
import threading
import time
from datetime import datetime, timedelta, timezone


def main() -> None:
    from pn_search_tasks import app, process, ship

    from tasktrail.proto.pynenc import exporter

    start = datetime.now(timezone.utc) - timedelta(seconds=5)
    threading.Thread(target=app.runner.run, daemon=True).start()
    calls = [process(1234, "ACME Corp"), process(order=1234, customer="Müller"), process(12345, "ACME"),
             process(99, "bad"), process(1234, "bad", note="urgent"), ship(order_id=1234, express=True),
             ship(77), process("1234", "Zoë & Co")]
    for inv in calls:
        try:
            inv.result
        except Exception:
            pass
    app.runner.stop_runner_loop()
    time.sleep(1)
    end = datetime.now(timezone.utc) + timedelta(seconds=5)
    held = {}
    sb = app.state_backend
    for batch in sb.iter_invocations_in_timerange(start, end, batch_size=500):
        for inv_id in batch:
            inv = sb.get_invocation(inv_id)
            status = sb.get_history(inv_id)[-1].status_record.status.name
            held[inv_id] = {
                "task": str(inv.task.task_id), "status": status,
                "kwargs": {k: str(v) for k, v in inv.call.arguments.kwargs.items()},
                "result": repr(sb.get_result(inv_id)) if status == "SUCCESS" else None,
                "error": (lambda e: f"{type(e).__name__} {e}")(sb.get_exception(inv_id)) if status == "FAILED" else None}
    ex = exporter()
    ex.flush()
    print(json.dumps({"invocations": held, "stats": vars(ex.stats)}))


if __name__ == "__main__":
    main()
