"""B9's pynenc 0.4 app (benchmarks/peer_pynmon.py): the module both the run and Pynmon import, as a
deployment would (pynenc wants tasks in an importable module). SQLite backend at $B9_DB."""
import os

from pynenc import PynencBuilder

app = PynencBuilder().app_id("b9").sqlite(os.environ["B9_DB"]) \
    .thread_runner(min_threads=4, max_threads=16) \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01).build()


@app.task
def quick(x):
    return x * 2


@app.task
def boom(x):
    raise ValueError(f"order {x} cannot be processed")


@app.task
def fan(k):
    """A workflow parent: starts k children (the family the detail and family pages draw)."""
    for i in range(k):
        quick(i)
    return k
