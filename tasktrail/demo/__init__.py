"""Real runner workloads for `tasktrail demo` and the tests: a pynenc 0.4 app (Python 3.12) and a
rustvello 0.9 app, each with retries and a workflow; the pynenc one also has a status trigger, cron
core tasks and the atomic service. They run as scripts in their own processes."""
from pathlib import Path

HERE = Path(__file__).resolve().parent
PYNENC_RUN = HERE / "run_pn.py"
RUSTVELLO_RUN = HERE / "rv_app.py"
