"""Processes of tests/test_commands_pynenc.py's pynenc 0.4 app (tests/pn_commands_tasks.py), tasktrail's
exporter on (TASKTRAIL_* set by the caller): `python pn_commands_app.py MODE [ID...]`.

- runner: runs the app's ThreadRunner until SIGTERM (with TASKTRAIL_AGENT set, the agent runs beside it);
- submit: submits quick(7) and quick(8) (queue `parked`), boom(3, "a b") and slow("s1"), prints their ids
  as one JSON line and exits;
- inspect ID...: prints, as one JSON line, what pynenc itself holds for each invocation: its status, the
  statuses of its history with the runner context class of each record, its task and call arguments; and
  the number of invocations left in the `parked` queue.
"""
import json
import sys


def inspect(app, ids) -> dict:
    out = {}
    for inv_id in ids:
        inv = app.state_backend.get_invocation(inv_id)
        history = app.state_backend.get_history(inv_id)
        classes = {}
        for h in history:
            ctx = app.state_backend.get_runner_context(h.runner_context_id)
            classes[h.runner_context_id] = ctx.runner_cls if ctx else None
        out[inv_id] = {"status": app.orchestrator.get_invocation_status(inv_id).name,
                       "history": [[h.status_record.status.name, classes[h.runner_context_id]] for h in history],
                       "task_id": str(inv.task.task_id), "arguments": inv.call.arguments.kwargs}
    return out


def main() -> None:
    from pn_commands_tasks import app, boom, quick, slow

    mode = sys.argv[1]
    if mode == "runner":
        app.runner.run()
    elif mode == "submit":
        invs = {"parked": quick(7), "control": quick(8), "boom": boom(3, "a b"), "slow": slow("s1")}
        print(json.dumps({k: v.invocation_id for k, v in invs.items()}), flush=True)
    elif mode == "inspect":
        print(json.dumps({"invocations": inspect(app, sys.argv[2:]),
                          "parked_left": app.broker.count_invocations(["parked"])}), flush=True)


if __name__ == "__main__":
    main()
