"""An agent's reports on a command (issue 19, docs/control.md): the report exactly as docs/control.md writes it
(OTLP/JSON) closes a command; an early report under the rightful sender's own record id does not shadow the
real one; the first outcome is final; a long reason is cut in the API, kept whole in the log; `?app=` picks
an id two apps share; the agents' poll refuses a `wait` that is not a number of seconds."""
import re
from pathlib import Path

import httpx

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import final_command, start_server, wait_until
from .test_commands_security import AUTH, guarded, running, scan  # noqa: F401  (guarded: the fixture)

CONTROL_MD = Path(__file__).resolve().parents[1] / "docs" / "control.md"
INGEST = {"Authorization": "Bearer tok123"}


def _poll(srv, app: str, runner: str) -> list[str]:
    r = httpx.get(srv.api + "/agent/commands", params={"app": app, "runner": runner}, headers=INGEST)
    return [c["command_id"] for c in r.json()["commands"]]


def test_the_documented_report_closes_a_command(guarded):
    running(guarded, "doc-1")
    cmd = httpx.post(guarded.api + "/invocations/doc-1/abort", headers=AUTH).json()["command_id"]
    assert cmd in _poll(guarded, "sec", "agent-doc")
    text = CONTROL_MD.read_text()
    doc = re.search(r"```json\n(.*?)```", text[text.index("One report as OTLP/JSON"):], re.S).group(1)
    body = (doc.replace('"shop"', '"sec"').replace("<command id>", cmd)
            .replace("<the runner it was delivered to>", "agent-doc"))
    r = httpx.post(guarded.otlp_http + "/v1/logs", content=body,
                   headers={**INGEST, "Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    final = final_command(guarded, cmd, headers=AUTH)
    assert (final["state"], final["runner_id"], final["reason"]) == ("done", "agent-doc", "cancelled 1")


def test_an_early_report_does_not_shadow_the_real_one_and_the_first_outcome_is_final(guarded):
    running(guarded, "early-1")
    cmd = httpx.post(guarded.api + "/invocations/early-1/abort", headers=AUTH).json()["command_id"]
    # A forger who knows the runner that will take it reports first, under the rightful record id.
    forger = Emitter(guarded.otlp_grpc, "sec", Runner("agent-e"), token="tok123")
    forger.command(cmd, "refused", reason="forged early")
    forger.shutdown()
    wait_until(lambda: ("refused", "sec", "agent-e") in scan(guarded, cmd), timeout=20, message="the forgery")
    assert cmd in _poll(guarded, "sec", "agent-e")
    agent = Emitter(guarded.otlp_grpc, "sec", Runner("agent-e"), token="tok123")
    agent.command(cmd, "done", reason="cancelled")
    agent.flush()
    final = final_command(guarded, cmd, headers=AUTH)
    assert (final["state"], final["reason"]) == ("done", "cancelled")
    # Later outcomes (a refusal, another done, the same report again) change nothing.
    agent.command(cmd, "refused", reason="second thoughts")
    agent.command(cmd, "done", reason="again", new_invocation_id="late-inv")
    agent.command(cmd, "done", reason="cancelled")
    agent.shutdown()
    wait_until(lambda: len(scan(guarded, cmd)) == 7, timeout=20, message="every report in the log")
    shown = httpx.get(guarded.api + f"/commands/{cmd}", headers=AUTH).json()
    assert (shown["state"], shown["reason"], shown["new_invocation_id"]) == ("done", "cancelled", None)
    assert [r["state"] for r in shown["records"]] == ["requested", "delivered", "done"]


def test_a_long_reason_is_cut_in_the_api_and_whole_in_the_log(guarded):
    running(guarded, "long-1")
    cmd = httpx.post(guarded.api + "/invocations/long-1/abort", headers=AUTH).json()["command_id"]
    assert cmd in _poll(guarded, "sec", "agent-l")
    agent = Emitter(guarded.otlp_grpc, "sec", Runner("agent-l"), token="tok123")
    agent.command(cmd, "refused", reason="x" * 100_000)
    agent.shutdown()
    final = final_command(guarded, cmd, headers=AUTH)
    assert final["reason_truncated"] and len(final["reason"]) == 2001 and final["reason"].endswith("…")
    page = httpx.get(guarded.web + "/invocations/long-1", headers=AUTH)
    assert page.status_code == 200 and len(page.content) < 60_000
    whole = httpx.post(guarded.api + "/sql", headers=AUTH, json={
        "sql": f"SELECT length(reason) FROM command_records WHERE command_id = '{cmd}' AND state = 'refused'"})
    assert whole.json()["rows"] == [[100_000]]


def test_app_picks_an_id_two_apps_share_and_wait_must_be_seconds(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123")
    try:
        for app in ("shop", "other"):
            em = Emitter(srv.otlp_http, app, "worker-1", protocol="http/protobuf", token="tok123")
            em.status("dup-1", "REGISTERED", task_id=f"{app}.t")
            em.status("dup-1", "RUNNING", attempt=0)
            em.shutdown()
        wait_until(lambda: all(httpx.get(srv.api + "/invocations/dup-1", params={"app": a}).status_code == 200
                               for a in ("shop", "other")), timeout=20, message="both apps' dup-1")
        for app in ("shop", "other"):
            r = httpx.post(srv.api + "/invocations/dup-1/abort", params={"app": app})
            assert r.status_code == 202 and r.json()["app_id"] == app, r.text
            ctl = httpx.get(srv.api + "/invocations/dup-1/control", params={"app": app}).json()
            assert [c["app_id"] for c in ctl["commands"]] == [app]
        for wait in ("nan", "-1", "soon"):
            r = httpx.get(srv.api + "/agent/commands", params={"app": "shop", "runner": "a", "wait": wait},
                          headers=INGEST)
            assert r.status_code == 400 and "wait" in r.json()["error"]["message"], (wait, r.text)
        # The scheme of the bearer token in any case (RFC 7235).
        r = httpx.get(srv.api + "/agent/commands", params={"app": "shop", "runner": "a"},
                      headers={"Authorization": "bearer tok123"})
        assert r.status_code == 200 and len(r.json()["commands"]) == 1
    finally:
        srv.stop()
