"""The pynenc 0.4 app of tests/test_pynenc_calls.py (pynenc wants tasks in an importable module).

PN_KIND "mem": memory backends, a ThreadRunner in the submitting process; "sqlite": SQLite backends
(PN_DB), a PersistentProcessRunner with two worker processes in a process of its own."""
import json
import os

from pynenc import PynencBuilder

KIND = os.environ.get("PN_KIND", "mem")
builder = PynencBuilder().app_id(f"pn-calls-{KIND}") \
    .runner_tuning(runner_loop_sleep_time_sec=0.01, invocation_wait_results_sleep_time_sec=0.01)
if KIND == "sqlite":
    builder = builder.sqlite(os.environ["PN_DB"]).persistent_process_runner(num_processes=2)
else:
    builder = builder.memory().thread_runner(min_threads=1, max_threads=4)
app = builder.build()


@app.task
def add(x, y):
    return x + y


@app.task(max_retries=3, retry_for=(ValueError,))
def shaky(tag):
    """Fails twice, then succeeds; each exception it raises is written to raised-<tag>.jsonl (the test's
    record of what was raised, whichever process ran the attempt)."""
    path = f"attempts-{tag}"
    n = (int(open(path).read()) if os.path.exists(path) else 0) + 1
    with open(path, "w") as f:
        f.write(str(n))
    if n <= 2:
        message = f"attempt {n} of {tag} failed"
        with open(f"raised-{tag}.jsonl", "a") as f:
            f.write(json.dumps({"type": "ValueError", "message": message}) + "\n")
        raise ValueError(message)
    return n
