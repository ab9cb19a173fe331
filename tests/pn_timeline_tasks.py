"""The pynenc 0.4 app of the timeline options' live test (tests/pn_timeline_app.py runs it; pynenc wants
tasks in an importable module): a ThreadRunner of at most THREADS threads, in memory or on SQLite (PN_BACKEND)."""
import os
import time

from pynenc import PynencBuilder

THREADS = 3
builder = PynencBuilder().app_id(f"pn-tl-{os.environ.get('PN_BACKEND', 'memory')}") \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01)
if os.environ.get("PN_BACKEND") == "sqlite":
    builder = builder.sqlite(os.environ["PN_DB"])
else:
    builder = builder.memory()
app = builder.thread_runner(min_threads=1, max_threads=THREADS).build()


@app.task
def nap(seconds):
    time.sleep(seconds)
    return seconds
