"""Test helpers: a real `tasktrail serve` subprocess on free ports, polling, what the tests send it (the
protobuf headers, the `shop` scenario), its SQL endpoint; and a store filled in this process through
ingest's decode and map, without a server (LocalStore, with the tasktrail.v1 emitter writing into it)."""
from __future__ import annotations

import glob
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tasktrail.proto.emitter import Emitter
from tasktrail.proto.otlp_sender import SenderStats, encode


SHARED = Path(__file__).resolve().parents[2] / "shared"
FIXTURES = SHARED / "fixtures" / "rustvello-otel-v1"
# Headers of an OTLP/HTTP protobuf request with the ingest token the test servers run with.
PB = {"Content-Type": "application/x-protobuf", "Authorization": "Bearer tok123"}


def fixture_requests() -> list[tuple[str, bytes]]:
    """(signal, body) of every captured rustvello request, in arrival order."""
    out = []
    for f in sorted(glob.glob(str(FIXTURES / "*.bin"))):
        signal_name = os.path.basename(f).split("_v1_")[1].split("_")[0]
        out.append((signal_name, Path(f).read_bytes()))
    return out


def wait_until(fn, timeout: float = 10.0, interval: float = 0.05, message: str = "condition"):
    """Poll `fn` until it returns a truthy value; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # the server may not be up yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message} (last error: {last_exc!r})")


@dataclass
class Server:
    proc: subprocess.Popen
    db: str
    web: str
    otlp_http: str
    otlp_grpc: str
    output: list = field(default_factory=list)

    @property
    def api(self) -> str:
        return self.web + "/api/v1"

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(self.api + path, timeout=30, **kw)

    def stop(self, sig=signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(db: str, *args: str, timeout: float = 30, env: dict | None = None, preexec_fn=None) -> Server:
    """Start `tasktrail serve` on port 0 for every listener and read the ports it prints (`preexec_fn` runs
    in the child before it starts, e.g. to lower its file limit)."""
    cmd = [sys.executable, "-m", "tasktrail", "serve", "--db", db, "--http-port", "0",
           "--otlp-http-port", "0", "--otlp-grpc-port", "0", "--log-level", "warning", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1, env=env,
                            preexec_fn=preexec_fn)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    ports = {}
    while time.monotonic() < deadline and len(ports) < 3:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        lines.append(line)
        for key, pat in (("web", r"web \+ API\s+(http://\S+)"), ("http", r"OTLP HTTP\s+(http://\S+)"),
                         ("grpc", r"OTLP gRPC\s+(\S+)")):
            m = re.search(pat, line)
            if m:
                ports[key] = m.group(1)
    if len(ports) < 3:
        proc.kill()
        raise AssertionError("tasktrail serve did not start:\n" + "".join(lines) + (proc.stdout.read() or ""))
    # Keep draining output so the pipe never fills.
    import threading

    def drain():
        for line in proc.stdout:
            lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return Server(proc, db, ports["web"], ports["http"], ports["grpc"], lines)


def sql(srv: Server, query: str) -> list:
    """The rows of one ad-hoc SQL read through the server's /api/v1/sql."""
    r = httpx.post(srv.api + "/sql", json={"sql": query}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["rows"]


def post_command(srv: Server, path: str, headers: dict | None = None) -> dict:
    """Ask for a command (`path`: /invocations/{id}/abort, …/rerun, /workflows/runs/{id}/…); its 202 answer."""
    r = httpx.post(srv.api + path, timeout=30, headers=headers)
    assert r.status_code == 202, r.text
    return r.json()


def final_command(srv: Server, command_id: str, timeout: float = 30, headers: dict | None = None) -> dict:
    """GET /commands/{id} once it is final (done, refused or expired); fails after `timeout`."""
    return wait_until(lambda: (lambda c: c if c["is_final"] else None)(
        srv.get(f"/commands/{command_id}", headers=headers).json()), timeout=timeout, interval=0.2,
        message=f"command {command_id} final")


def shop_server(directory: Path) -> tuple[Server, dict]:
    """A served store holding tests/workflow_data.py's `shop` scenario, sent over OTLP and all stored;
    returns (server, what workflow_data.send returned)."""
    from . import workflow_data as wd
    srv = start_server(str(directory / "tt.duckdb"), "--ingest-token", "tok123")
    sent = wd.send(srv.otlp_http)
    wait_until(lambda: srv.get("/invocations/wf-9").status_code == 200
               and srv.get("/invocations/wf-9").json()["status"] == "SUCCESS"
               and srv.get("/invocations/pay-39").status_code == 200, timeout=30, message="the scenario stored")
    return srv, sent


# --- a store filled in this process (no server) --------------------------------------------------
class LocalStore:
    """A DuckDBStore at `path`, filled through ingest's own decode and map (Ingestor.prepare) and the
    writer: what a server stores for the same requests, without the network."""

    def __init__(self, path) -> None:
        from tasktrail.ingest.pipeline import Ingestor
        from tasktrail.store.duckdb import DuckDBStore
        self.store = DuckDBStore(str(path))
        self.ingestor = Ingestor(self.store)

    def send(self, signal: str, request) -> None:
        """Store one OTLP request of `signal` (logs, traces, metrics): a protobuf message, its bytes,
        or an OTLP/JSON document (a dict)."""
        import json
        if isinstance(request, dict):
            body, fmt = json.dumps(request).encode(), "json"
        else:
            body, fmt = (request if isinstance(request, bytes) else request.SerializeToString()), "protobuf"
        prepared = self.ingestor.prepare(signal, body, fmt, "test")
        if prepared is not None:  # None: an identical request is stored already
            rows, n, entry = prepared
            self.store.submit(rows, n, entry).result(10)

    def emitter(self, app_id: str, runner=None) -> LocalEmitter:
        return LocalEmitter(self, app_id, runner)

    def service(self, **settings):
        """A QueryService over this store (`clock`: its clock; the rest QuerySettings)."""
        from tasktrail.query.service import QueryService, QuerySettings
        clock = settings.pop("clock", None)
        return QueryService(self.store, QuerySettings(**settings), clock=clock)

    def close(self) -> None:
        self.store.close()


class _LocalSender:
    """LogSender's interface over a list: `flush` encodes what it holds as one OTLP logs request (the
    emitter's own encoder, proto/otlp_sender.py) and stores it."""

    def __init__(self, target: LocalStore) -> None:
        self.records, self.target, self.resource, self.stats = [], target, {}, SenderStats()

    def add(self, record) -> bool:
        self.records.append(record)
        return True

    def full(self) -> bool:
        return False

    def flush(self, timeout_ms: int = 10_000) -> bool:
        batch, self.records = self.records, []
        if batch:
            self.target.send("logs", encode(self.resource, batch))
            self.stats.sent += len(batch)
        return True

    def shutdown(self) -> None:
        self.flush()


class LocalEmitter(Emitter):
    """The tasktrail.v1 emitter storing into a LocalStore in-process: each `flush` stores what it holds
    as one OTLP logs request."""

    def __init__(self, target: LocalStore, app_id: str, runner=None) -> None:
        local = _LocalSender(target)
        super().__init__("http://in-process", app_id, runner, protocol="http/protobuf", sender=local)
        local.resource = self.resource


def json_kv(key: str, value) -> dict:
    """One OTLP/JSON attribute (bool, int, float or string)."""
    if isinstance(value, bool):
        v = {"boolValue": value}
    elif isinstance(value, int):
        v = {"intValue": str(value)}
    elif isinstance(value, float):
        v = {"doubleValue": value}
    else:
        v = {"stringValue": str(value)}
    return {"key": key, "value": v}


def json_attributes(attrs: dict) -> list:
    return [json_kv(k, v) for k, v in attrs.items()]


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"


@contextlib.contextmanager
def chromium():
    """Debian's chromium, headless, driven by Playwright (never its own browser download); closed after."""
    from playwright import sync_api
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def require_chromium() -> None:
    """Skip the calling module without Debian's chromium; under CI (which installs it) fail instead."""
    import pytest
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            raise RuntimeError("Debian's chromium is not installed at /usr/bin/chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


PROMTOOL = "/usr/bin/promtool"
PROMETHEUS = "/usr/bin/prometheus"


def require_prometheus_tools() -> None:
    """Skip the calling module without Debian's prometheus package (promtool and prometheus); under CI
    (which installs it) fail instead."""
    import pytest
    missing = [p for p in (PROMTOOL, PROMETHEUS) if not os.path.exists(p)]
    if missing:
        if os.environ.get("CI"):
            raise RuntimeError(f"Debian's prometheus package is not installed ({', '.join(missing)} missing)")
        pytest.skip(f"Debian's prometheus package is not installed ({', '.join(missing)} missing; "
                    "apt-get install prometheus)", allow_module_level=True)


def require_python312() -> str:
    """A Python 3.12 with pynenc 0.4.0 and tasktrail (.venv312); skips the module without one, fails in CI."""
    import pytest
    from tasktrail.demo.loop import find_python312
    py = find_python312(Path(__file__).resolve().parents[1])
    if py is None:
        if os.environ.get("CI"):
            raise RuntimeError("no Python 3.12 with pynenc 0.4.0 (.ci/run builds .venv312)")
        pytest.skip("no Python 3.12 with pynenc 0.4.0 and tasktrail (.venv312)", allow_module_level=True)
    return py


def json_steps(proc: subprocess.Popen) -> dict:
    """Collect, in a background thread, the JSON lines {"step": ...} a workload prints, by step."""
    import json
    import threading
    steps: dict = {}

    def read():
        for line in proc.stdout:
            if line.startswith("{"):
                d = json.loads(line)
                steps[d["step"]] = d
    threading.Thread(target=read, daemon=True).start()
    return steps


def is_running(srv: Server, invocation_id: str) -> bool:
    r = srv.get(f"/invocations/{invocation_id}")
    return r.status_code == 200 and r.json()["status"] == "RUNNING"


def wait_flagged(srv: Server, expected: set, timeout: float) -> dict:
    """Wait until /anomalies holds at least these (kind, invocation_id) pairs; returns its answer."""
    def flagged():
        a = srv.get("/anomalies").json()
        return a if expected <= {(x["kind"], x.get("invocation_id")) for x in a["items"]} else None
    return wait_until(flagged, timeout=timeout, interval=0.5, message=f"anomalies {sorted(expected)}")
