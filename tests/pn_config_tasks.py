"""The pynenc 0.4 app of the config test (tests/pn_config_app.py runs it): memory or SQLite backends
(PN_BACKEND), a ThreadRunner in the script's process, tasks with options of their own."""
import os

from pynenc import PynencBuilder
from pynenc.conf.config_task import ConcurrencyControlType

BACKEND = os.environ.get("PN_BACKEND", "memory")
builder = PynencBuilder().app_id(f"pn-config-{BACKEND}") \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01) \
    .logging_level("warning").show_argument_keys().max_pending_seconds(7.5) \
    .custom_config(runner_considered_dead_after_minutes=3.0, atomic_service_interval_minutes=4.0)
if BACKEND == "sqlite":
    builder = builder.sqlite(os.environ["PN_DB"])
else:
    builder = builder.memory()
app = builder.thread_runner(min_threads=2, max_threads=3).build()


@app.task(max_retries=3, retry_for=(ValueError, KeyError), running_concurrency=ConcurrencyControlType.KEYS,
          key_arguments=("user",), parallel_batch_size=7, call_result_cache=True,
          registration_concurrency=ConcurrencyControlType.ARGUMENTS)
def charge(user, amount):
    return amount


@app.task
def plain(x):
    return x * 2
