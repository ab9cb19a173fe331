"""The pynenc 0.4 app of tests/test_commands_pynenc.py: SQLite backends (PN_DB) shared by every process, broker
queues `default` and `parked`, a ThreadRunner consuming the queues PN_QUEUES names (default: `default`). Each
task body writes what ran, with its arguments, to ran.jsonl in the working directory."""
import json
import os
import time

from pynenc import PynencBuilder

app = PynencBuilder().app_id("pn-cmds").sqlite(os.environ["PN_DB"]).thread_runner(min_threads=1, max_threads=4) \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01) \
    .custom_config(broker={"queues": ["default", "parked"], "warn_on_queue_mismatch": False},
                   runner={"queues": os.environ.get("PN_QUEUES", "default").split(",")}).build()


def ran(name: str, **args) -> None:
    with open("ran.jsonl", "a") as fh:
        fh.write(json.dumps({"task": name, "args": args}) + "\n")


@app.task(queue="parked")
def quick(x):
    ran("quick", x=x)
    return x


@app.task
def slow(tag):
    """Runs until the file `release` exists (at most 60 s)."""
    ran("slow", tag=tag)
    deadline = time.monotonic() + 60
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.05)
    ran("slow-finished", tag=tag)
    return tag


@app.task
def boom(x, label):
    """Fails (ValueError, no retry) until the file `marker` exists."""
    ran("boom", x=x, label=label)
    if not os.path.exists("marker"):
        raise ValueError("no marker yet")
    return f"{label}:{x * 10}"
