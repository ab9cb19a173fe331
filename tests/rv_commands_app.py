"""A real rustvello 0.9 app with tasktrail's agent attached (proto/rustvello_agent.py), driven by a test
through stdin: `python rv_commands_app.py WEB OTLP TOKEN DB MARKER [JOURNAL]`.

Prints JSON steps (tests/helpers.json_steps):
- {"step": "queued", "queued": id}: one `quick` invocation submitted while no runner runs; then waits for a
  line on stdin ("start");
- {"step": "started", "slow": id, "flaky": id}: a runner started, an async `slow` task (60 s) and a `flaky` one
  that fails until MARKER exists; then waits for a line ("finish");
- {"step": "done", "statuses": {id: status}, "ran": [...], "handled": [...]}: the statuses rustvello itself
  reports for every invocation it knows of here (the re-runs the agent submitted too), which task bodies ran
  (with their arguments), and what the agent did.
"""
import asyncio
import json
import os
import sys

import rustvello

from tasktrail.proto.rustvello_agent import attach

web, otlp, token, db, marker = sys.argv[1:6]
journal = sys.argv[6] if len(sys.argv) > 6 else None
app = rustvello.App(app_id="cmds", backend="sqlite", db_path=db, otlp_endpoint=otlp, otlp_bearer_token=token)
RAN = os.path.join(os.path.dirname(db), "ran.jsonl")


def ran(name: str, **args) -> None:
    with open(RAN, "a") as fh:
        fh.write(json.dumps({"task": name, "args": args}) + "\n")


@app.task
def quick(x: int) -> int:
    ran("quick", x=x)
    return x


@app.task
async def slow(seconds: float) -> str:
    ran("slow", seconds=seconds)
    await asyncio.sleep(seconds)
    ran("slow-finished", seconds=seconds)
    return "slept"


@app.task
def flaky(x: int, label: str) -> str:
    ran("flaky", x=x, label=label)
    if not os.path.exists(marker):
        raise ValueError("no marker yet")
    return f"{label}:{x * 10}"


def step(name: str, **kw) -> None:
    print(json.dumps({"step": name, **kw}), flush=True)


agent = attach(app, web, otlp_endpoint=otlp, token=token, wait_s=2, journal=journal)
q = quick(7)
step("queued", queued=str(q.id), runner=agent.runner.runner_id)
sys.stdin.readline()
app.run(num_workers=2, block=False)
s, f = slow(60.0), flaky(3, "a b")
step("started", slow=str(s.id), flaky=str(f.id))
sys.stdin.readline()
ids = [str(q.id), str(s.id), str(f.id)] + [h["new_invocation_id"] for h in agent.handled if h["new_invocation_id"]]
statuses = {i: str(app._engine.get_status(rustvello.InvocationId.from_string(i))).rsplit(".", 1)[-1].upper()
            for i in ids}
app.flush_telemetry()
agent.stop()
app.stop()
with open(RAN) as fh:
    runs = [json.loads(line) for line in fh]
step("done", statuses=statuses, ran=runs, handled=agent.handled)
