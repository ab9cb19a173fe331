"""`tasktrail demo` shows a newcomer a full store in one command, with real runners."""
import re
import signal
import subprocess
import sys
import time

from pathlib import Path

import httpx
import pytest

from tasktrail.demo.loop import find_python312

from .helpers import wait_until


def run_demo(tmp_path, runner):
    proc = subprocess.Popen([sys.executable, "-m", "tasktrail", "demo", "--db", str(tmp_path / "demo.duckdb"),
                             "--http-port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0", "--every", "2",
                             "--runner", runner], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    web = None
    deadline = time.monotonic() + 30
    while web is None and time.monotonic() < deadline:
        m = re.search(r"web \+ API\s+(http://\S+)", proc.stdout.readline())
        web = m.group(1) if m else None
    assert web, "the demo did not print its address"
    return proc, web


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["rustvello", "pynenc"])
def test_demo_fills_the_ui(tmp_path, runner):
    if runner == "pynenc" and find_python312(Path(__file__).resolve().parents[1]) is None:
        pytest.skip("no Python 3.12 with pynenc (bash .ci/run builds .venv312)")
    proc, web = run_demo(tmp_path, runner)
    try:
        def filled():
            ov = httpx.get(web + "/api/v1/overview").json()
            c = ov["counts_by_status"]
            return ov if c["SUCCESS"] >= 5 and c["FAILED"] >= 1 else None
        ov = wait_until(filled, timeout=90, interval=0.5, message="the demo's first round")
        # Each rustvello round stops its runners when done, and their last records (stop included)
        # may land with the round's results: count the runners seen, alive or stopped since, and the
        # client that submitted the round's work (an ExternalRunner: neither alive nor dead).
        seen = ov["runners"]
        ran = seen["alive"] + seen["dead"] + seen["stopped"]
        assert ran >= 1 and ran + seen["clients"] >= 2, seen
        items = httpx.get(web + "/api/v1/invocations", params={"limit": 200}).json()["items"]
        roots = [i for i in items if i["workflow_id"] and i["workflow_id"] == i["invocation_id"]]
        assert roots, "a workflow ran"
        retried = [i for i in items if i["attempts"] == 3 and i["status"] == "FAILED"]
        assert retried, "a task failed after its retries"
        if runner == "pynenc":
            assert wait_until(lambda: httpx.get(web + "/api/v1/trigger-runs").json(), timeout=60,
                              message="a trigger run")
            assert httpx.get(web + "/api/v1/atomic-services/decisions").json()
        assert httpx.get(web + "/").status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0


def test_demo_says_once_what_is_missing_and_serves_anyway(tmp_path):
    """A newcomer without rustvello (the `demo` extra) is told once, with the command that installs it,
    and the server is up all the same."""
    code = "import sys; sys.modules['rustvello'] = None; from tasktrail.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "demo", "--db", str(tmp_path / "demo.duckdb"),
                             "--http-port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0", "--every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, web = [], None
    try:
        deadline = time.monotonic() + 30
        while web is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"web \+ API\s+(http://\S+)", line)
            web = m.group(1) if m else None
        assert web, "".join(lines)
        assert httpx.get(web + "/healthz").status_code == 200
        said = [ln for ln in lines if "rustvello is not installed" in ln]
        assert len(said) == 1 and "pip install -e '.[demo]'" in said[0], lines
        time.sleep(2.5)  # a few rounds later it has not said it again
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "rustvello is not installed" not in out
