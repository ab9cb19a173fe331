"""`tasktrail demo`: real runners feeding a running tasktrail, round after round, until stopped."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

from . import HERE, PYNENC_RUN, RUSTVELLO_RUN


# What a newcomer runs to get each runner (said once by `tasktrail demo` when one is missing).
GET_RUSTVELLO = "pip install -e '.[demo]'   (or: pip install 'rustvello==0.9.0')"
GET_PYNENC = ("python3.12 -m venv .venv312 && .venv312/bin/pip install -e '.[emitter]' 'pynenc==0.4.0'   "
              "(or set TASKTRAIL_PY312 to a Python 3.12 that has both)")


def has_rustvello() -> bool:
    """Whether this Python can run the rustvello demo app (rustvello is in the `demo` and `test` extras)."""
    import importlib.util
    try:
        return importlib.util.find_spec("rustvello") is not None
    except (ImportError, ValueError):  # a broken install, or blocked in sys.modules
        return False


def find_python312(root: Path) -> Optional[str]:
    """A Python 3.12 that can import pynenc and tasktrail: TASKTRAIL_PY312, the project's .venv312."""
    for candidate in (os.environ.get("TASKTRAIL_PY312"), str(root / ".venv312" / "bin" / "python")):
        if candidate and os.path.exists(candidate):
            ok = subprocess.run([candidate, "-c", "import pynenc, tasktrail.proto.pynenc"], capture_output=True)
            if ok.returncode == 0:
                return candidate
    return None


class DemoLoop:
    """Runs one workload round every `every_s` seconds in a thread; `stop()` ends it. A round runs the
    pynenc app when `python312` is given, the rustvello app when `rustvello` is true (both: one after
    the other)."""

    def __init__(self, otlp_http: str, otlp_grpc: str, token: Optional[str], every_s: float = 15.0,
                 python312: Optional[str] = None, out=sys.stdout, rustvello: Optional[bool] = None) -> None:
        self.otlp_http, self.otlp_grpc, self.token = otlp_http, otlp_grpc, token
        self.every_s = every_s
        self.python312 = python312
        self.rustvello = (python312 is None) if rustvello is None else rustvello
        self.out = out
        self._stop = threading.Event()
        self._proc: Optional[subprocess.Popen] = None
        self._thread = threading.Thread(target=self._run, name="tasktrail-demo", daemon=True)
        self.rounds = 0

    @property
    def runner_name(self) -> str:
        names = (["pynenc 0.4 (thread and persistent-process runners)"] if self.python312 else []) + \
            (["rustvello 0.9"] if self.rustvello else [])
        return " and ".join(names) or "no runner"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
        self._thread.join(30)

    def _round(self, work: Path) -> None:
        for python312 in ([self.python312] if self.python312 else []) + ([None] if self.rustvello else []):
            if self._stop.is_set():
                return
            self._one(work, python312)
        self.rounds += 1

    def _one(self, work: Path, python312: Optional[str]) -> None:
        """One run of one runner's app (pynenc's with `python312`, else rustvello's)."""
        name = "pynenc 0.4" if python312 else "rustvello 0.9"
        env = dict(os.environ)
        if python312:
            kind = "ppr" if self.rounds % 2 else "thread"
            env.update({"TASKTRAIL_ENDPOINT": f"http://{self.otlp_grpc}", "PN_KIND": kind,
                        "PN_DB": str(work / f"pn-{self.rounds}.sqlite"), "PYTHONPATH": str(HERE)})
            if self.token:
                env["TASKTRAIL_TOKEN"] = self.token
            cmd = [python312, str(PYNENC_RUN)]
        else:
            cmd = [sys.executable, str(RUSTVELLO_RUN), self.otlp_http, self.token or "",
                   str(work / f"rv-{self.rounds}.db"), "8"]
        self._proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True)
        _, err = self._proc.communicate()
        if self._proc.returncode and not self._stop.is_set():
            last = (err or "").strip().splitlines()[-1:] or ["(no output)"]
            print(f"demo: round {self.rounds + 1} of {name} failed: {last[0]}", file=self.out, flush=True)
        else:
            print(f"demo: round {self.rounds + 1} of {name} done", file=self.out, flush=True)

    def _run(self) -> None:
        work = Path(tempfile.mkdtemp(prefix="tasktrail-demo-"))
        try:
            while not self._stop.is_set():
                try:
                    self._round(work)
                except OSError as exc:
                    print(f"demo: a round failed to start: {exc}", file=self.out, flush=True)
                self._stop.wait(self.every_s)
        finally:
            shutil.rmtree(work, ignore_errors=True)
