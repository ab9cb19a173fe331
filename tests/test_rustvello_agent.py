"""The rustvello agent's own rules (proto/rustvello_agent.py), fast: its reports through ingest into a store
(tests/helpers.LocalStore), a journal re-sent after a restart counting once, and a re-run refused when
rustvello's state backend does not hold the call (the arguments are not known exactly). The live app is
tests/test_commands_live.py."""
import json

import pytest

from tasktrail.commands import CommandDesk
from tasktrail.proto.rustvello_agent import RustvelloAgent

from .helpers import LocalStore


class Status:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return f"InvocationStatus.{self.name}"


class FakeApp:
    """What the agent uses of a rustvello.App, answering as rustvello 0.9 does."""
    _app_id = "fake"

    def __init__(self, calls=None):
        self.cancelled, self.sent = [], []
        self._engine = self
        self._backend_objects = {"state_backend": self}
        self.calls = calls or {}

    def cancel(self, inv_id):
        self.cancelled.append(str(inv_id))
        return True

    def get_status(self, inv_id):
        return Status("CANCELLED")

    def get_invocation(self, inv_id):
        if inv_id not in self.calls:
            raise KeyError(inv_id)
        return json.dumps({"task_id": {"language": "python", "module": "m", "name": "t"},
                           "call_id": {"args_id": "a1"}})

    def get_call(self, key):
        return json.dumps({"serialized_arguments": {k: json.dumps(v) for k, v in self.calls["x"].items()}})

    def send_task(self, name, kwargs, language="python"):
        self.sent.append((language, name, kwargs))
        return type("Inv", (), {"id": "new-1"})()


@pytest.fixture
def local(tmp_path):
    store = LocalStore(tmp_path / "a.duckdb")
    yield store
    store.close()


def _setup(local, inv_id, status):
    em = local.emitter("fake")
    em.status(inv_id, "REGISTERED", task_id="m.t")
    em.status(inv_id, status)
    em.flush()
    qs = local.service()
    return qs, CommandDesk(local.store, qs, ttl_s=600)


def test_journal_replayed_after_restart_counts_once(local, tmp_path, monkeypatch):
    import rustvello
    monkeypatch.setattr(rustvello.InvocationId, "from_string", staticmethod(lambda s: s))
    qs, desk = _setup(local, "x", "RUNNING")
    cmd = desk.request("abort", "invocation", "x", "local")
    (handed,) = desk.hand_out("fake", "agent-1")
    journal = str(tmp_path / "journal.jsonl")
    agent = RustvelloAgent(FakeApp(), "http://unused", otlp_endpoint="http://unused",
                           emitter=local.emitter("fake"), journal=journal, runner_id="agent-1")
    out = agent.handle(handed)
    assert out["state"] == "done" and agent.app.cancelled == ["x"]
    assert qs.invocation("x")["status"] == "KILLED"                   # rustvello sends no cancellation event
    restarted = RustvelloAgent(FakeApp(), "http://unused", otlp_endpoint="http://unused",
                               emitter=local.emitter("fake"), journal=journal, runner_id="agent-1b")
    restarted._replay_journal()
    restarted.emitter.flush()
    rows = local.store.query("SELECT state FROM command_records WHERE command_id = ?", [cmd["command_id"]]).rows
    assert sorted(r[0] for r in rows) == ["delivered", "done", "done", "requested"]   # the log keeps the re-sent one
    shown = qs.command(cmd["command_id"])
    assert shown["state"] == "done" and [r["state"] for r in shown["records"]] == ["requested", "delivered", "done"]


def test_rerun_exact_arguments_or_refused(local):
    qs, desk = _setup(local, "x", "FAILED")
    app = FakeApp(calls={"x": {"n": 3, "label": "a b"}})
    agent = RustvelloAgent(app, "http://unused", otlp_endpoint="http://unused", emitter=local.emitter("fake"))
    desk.request("rerun", "invocation", "x", "local")
    (handed,) = desk.hand_out("fake", "agent-1")
    out = agent.handle(handed)
    assert out["state"] == "done" and out["new_invocation_id"] == "new-1"
    assert app.sent == [("python", "m.t", {"n": 3, "label": "a b"})]
    handed = {**handed, "target": "purged"}                             # rustvello holds no call for it
    out = agent.handle(handed)
    assert out["state"] == "refused" and out["reason"].startswith("arguments not known exactly")
