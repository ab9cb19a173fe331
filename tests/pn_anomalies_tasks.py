"""The pynenc 0.4 app of the anomaly test (tests/pn_anomalies_app.py runs it; pynenc wants tasks in an
importable module)."""
import os
import time

from pynenc import PynencBuilder

app = PynencBuilder().app_id("pn-anomalies").sqlite(os.environ["PN_DB"]) \
    .persistent_process_runner(num_processes=2) \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01) \
    .custom_config(atomic_service_check_interval_minutes=1 / 60).build()  # the parent heartbeats every second


@app.task
def work(seconds, tag):
    with open(f"pid-{tag}", "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
    return seconds
