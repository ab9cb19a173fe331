"""A real pynenc 0.4.0 app for the exporter test: a workflow, a failing task with retries, a trigger.
Built by `build(kind, db)`: kind "thread" (ThreadRunner + memory) or "ppr" (PersistentProcessRunner + SQLite)."""
import os

from pynenc import PynencBuilder
from pynenc.trigger.trigger_builder import TriggerBuilder

KIND = os.environ.get("PN_KIND", "thread")
# The atomic service (which evaluates triggers) is checked every second, in 6-second cycles.
builder = PynencBuilder().app_id(f"pn-{KIND}").mem_trigger(scheduler_interval_seconds=1) \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01) \
    .custom_config(atomic_service_check_interval_minutes=1 / 60, atomic_service_interval_minutes=0.1,
                   atomic_service_spread_margin_minutes=0.01, trigger_task_modules=["pn_tasks"])
if KIND == "ppr":
    builder = builder.sqlite(os.environ["PN_DB"]).persistent_process_runner(num_processes=2)
else:
    builder = builder.memory().thread_runner(min_threads=1, max_threads=4)
app = builder.build()


@app.task
def add(x, y):
    app.logger.info(f"adding {x} and {y}")
    return x + y


@app.task(max_retries=2, retry_for=(ValueError,))
def flaky(x):
    app.logger.warning(f"flaky({x}) is about to fail")
    raise ValueError(f"bad {x}")


@app.workflow
def flow(n):
    return [add(i, i).result for i in range(n)]


@app.task(triggers=TriggerBuilder().on_status(add, "success"))
def after_add():
    return "reacted"
