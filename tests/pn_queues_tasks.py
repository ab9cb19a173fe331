"""The pynenc 0.4 app of the queue-depth test (tests/pn_queues_app.py runs it): broker queues `default` and
`orphan`, a ThreadRunner that consumes only `default`, PN_BACKEND memory or sqlite (PN_DB)."""
import os

from pynenc import PynencBuilder

BACKEND = os.environ.get("PN_BACKEND", "memory")
builder = PynencBuilder().app_id(f"pn-queues-{BACKEND}")
builder = builder.memory() if BACKEND == "memory" else builder.sqlite(os.environ["PN_DB"])
app = builder.thread_runner() \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01) \
    .custom_config(broker={"queues": ["default", "orphan"], "warn_on_queue_mismatch": False},
                   runner={"queues": ["default"]}).build()


@app.task
def work(x):
    return x


@app.task(queue="orphan")
def stuck(x):
    return x
