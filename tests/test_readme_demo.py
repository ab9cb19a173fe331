"""The README's first command, followed as a newcomer would: a fresh virtualenv, `pip install -e ".[demo]"`,
`tasktrail demo`, 90 seconds of real runner work, then the pages a newcomer opens first, in Debian's
chromium: each shows content, with no console error. Screenshots of every page go to test-artifacts/."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from .helpers import SHOTS, chromium, require_chromium, wait_until

require_chromium()

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _first_command() -> str:
    """The README's first shell block: the command the newcomer copies."""
    return re.search(r"```sh\n(.*?)\n```", README, re.S).group(1).strip()


@pytest.mark.slow
def test_readme_first_command_then_the_demo_fills_every_page(tmp_path):
    command = _first_command()
    assert command == 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[demo]" && tasktrail demo'
    venv = tmp_path / "venv"
    # The command's steps, in a fresh virtualenv of this Python, installing this checkout; the demo on free ports.
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-e", f"{ROOT}[demo]"],
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    proc = subprocess.Popen([str(venv / "bin" / "tasktrail"), "demo", "--db", str(tmp_path / "demo.duckdb"),
                             "--http-port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        web = None
        deadline = time.monotonic() + 60
        while web is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            m = re.search(r"web \+ API\s+(http://\S+)", line)
            web = m.group(1) if m else None
        assert web, "the demo did not print its address:\n" + "".join(lines)
        time.sleep(90)  # the demo, as a newcomer leaves it running
        api = web + "/api/v1"
        inv = wait_until(lambda: next((i["invocation_id"] for i in httpx.get(api + "/invocations", params={
            "since": "all", "limit": 200}).json()["items"] if i["attempts"] > 1), None), timeout=30,
            message="a retried invocation")
        assert httpx.get(api + "/logs", params={"since": "all"}).json(), "log lines from the runners"
        assert httpx.get(api + "/events", params={"since": "all"}).json(), "events"
        pages = {"overview": "/", "timeline": "/timeline", "runners": "/runners", "logs": "/logs",
                 "events": "/events", "invocation": f"/invocations/{inv}", "invocations": "/invocations",
                 "runs": "/runs", "tasks": "/tasks", "workflows": "/workflows", "ops": "/ops",
                 "anomalies": "/anomalies", "atomic": "/atomic-services", "trigger-runs": "/trigger-runs",
                 "log-explorer": "/log-explorer", "sql": "/sql"}
        # What each page must show once the demo ran (a selector that matches only with data).
        content = {"overview": "table tbody tr", "runners": "table tbody tr", "logs": "#logs tr, table tbody tr",
                   "events": "table tbody tr", "invocation": "table tbody tr", "timeline": "canvas"}
        SHOTS.mkdir(parents=True, exist_ok=True)
        with chromium() as browser:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            problems = []
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            for name, path in pages.items():
                page.goto(web + path, wait_until="networkidle")
                if name in content:
                    assert page.locator(content[name]).count() > 0, f"{path} shows nothing"
                if name == "timeline":
                    drawn = page.evaluate("() => document.querySelector('canvas[data-lanes]')?.dataset.lanes")
                    assert drawn and int(drawn) > 0, "the timeline drew no lanes"
                page.screenshot(path=str(SHOTS / f"demo-{name}.png"))
                assert problems == [], (path, problems)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
