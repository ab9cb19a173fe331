"""Who may act (issue 19): command requests need the API token when one is set (401), come from this origin
(403 cross-site), are off under --read-only (403, no buttons); the agents' poll takes the ingest token, not
the API token. A refused request leaves nothing in the log (checked by a scan of `command_records`)."""
import httpx
import pytest

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import start_server, wait_until

API = "api-token-c0ffee"


def seeded(srv, *, auth=None) -> None:
    em = Emitter(srv.otlp_http, "sec", "worker-1", protocol="http/protobuf", token="tok123")
    em.status("sec-1", "REGISTERED", task_id="m.long")
    em.status("sec-1", "RUNNING", attempt=0)
    em.shutdown()
    wait_until(lambda: httpx.get(srv.api + "/invocations/sec-1", headers=auth or {}).status_code == 200, timeout=20,
               message="the invocation")


def records(srv, auth) -> list:
    r = httpx.post(srv.api + "/sql", json={"sql": "SELECT command_id, state FROM command_records"}, headers=auth)
    return r.json()["rows"]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("sec") / "tt.duckdb"), "--ingest-token", "tok123",
                       "--api-token", API)
    seeded(srv, auth={"Authorization": f"Bearer {API}"})
    yield srv
    srv.stop()


def test_no_token_401_cross_site_403_then_202(guarded):
    auth = {"Authorization": f"Bearer {API}"}
    url = guarded.api + "/invocations/sec-1/abort"
    assert httpx.post(url).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer tok123"}).status_code == 401   # the ingest token is not it
    r = httpx.post(url, headers={**auth, "Origin": "https://evil.example"})
    assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"]
    assert records(guarded, auth) == []
    r = httpx.post(url, headers=auth)
    assert r.status_code == 202, r.text
    cmd = httpx.get(guarded.api + f"/commands/{r.json()['command_id']}", headers=auth).json()
    assert cmd["requested_by"] == "api" and cmd["state"] == "requested"
    assert httpx.get(guarded.api + "/commands").status_code == 401


def test_agent_poll_takes_the_ingest_token(guarded):
    url = guarded.api + "/agent/commands"
    params = {"app": "sec", "runner": "agent-x"}
    assert httpx.get(url, params=params).status_code == 401
    assert httpx.get(url, params=params, headers={"Authorization": f"Bearer {API}"}).status_code == 401
    r = httpx.get(url, params=params, headers={"Authorization": "Bearer tok123"})
    assert r.status_code == 200 and isinstance(r.json()["commands"], list)


def test_read_only_refuses_and_hides(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--read-only")
    try:
        seeded(srv)
        httpx.get(srv.api + "/agent/commands", params={"app": "sec", "runner": "agent-y"},
                  headers={"Authorization": "Bearer tok123"})            # an agent polls: buttons would show
        for path in ("/invocations/sec-1/abort", "/invocations/sec-1/rerun", "/workflows/runs/sec-1/abort"):
            r = httpx.post(srv.api + path)
            assert r.status_code == 403 and "read-only" in r.json()["error"]["message"], (path, r.text)
        assert records(srv, {}) == []
        ctl = srv.get("/invocations/sec-1/control").json()
        assert ctl["read_only"] and not ctl["abort"] and not ctl["rerun"]
        html = httpx.get(srv.web + "/invocations/sec-1").text
        assert 'id="abort-btn"' not in html and 'id="rerun-btn"' not in html and 'id="confirm"' not in html
        html = httpx.get(srv.web + "/runs", params={"since": "all"}).text      # nor the runs table's row menu
        assert "sec-1" in html and "row-menu" not in html and "data-kind=" not in html
    finally:
        srv.stop()


AUTH = {"Authorization": f"Bearer {API}"}


def running(srv, inv_id: str, final: str = "RUNNING") -> None:
    em = Emitter(srv.otlp_http, "sec", "worker-1", protocol="http/protobuf", token="tok123")
    em.status(inv_id, "REGISTERED", task_id="m.long")
    em.status(inv_id, final, attempt=0)
    em.shutdown()
    wait_until(lambda: httpx.get(srv.api + f"/invocations/{inv_id}", headers=AUTH).json().get("status") == final,
               timeout=20, message=f"{inv_id} {final}")


def scan(srv, command_id: str) -> list:
    """The command's records as the log holds them (state, app, runner), independent of the view."""
    r = httpx.post(srv.api + "/sql", headers=AUTH, json={
        "sql": f"SELECT state, app_id, runner_id FROM command_records WHERE command_id = '{command_id}' "
               f"ORDER BY batch, ts"})
    return [tuple(x) for x in r.json()["rows"]]


def test_a_forged_report_closes_nothing(guarded):
    running(guarded, "sec-f")
    cmd = httpx.post(guarded.api + "/invocations/sec-f/abort", headers=AUTH).json()["command_id"]
    forger = Emitter(guarded.otlp_grpc, "other-app", Runner("intruder"), token="tok123")
    forger.command(cmd, "done", reason="forged", new_invocation_id="fake-inv")
    forger.shutdown()
    wait_until(lambda: ("done", "other-app", "intruder") in scan(guarded, cmd), timeout=20, message="the forgery")
    shown = httpx.get(guarded.api + f"/commands/{cmd}", headers=AUTH).json()
    assert (shown["state"], shown["runner_id"], shown["new_invocation_id"]) == ("requested", None, None)
    assert [r["state"] for r in shown["records"]] == ["requested"]
    got = httpx.get(guarded.api + "/agent/commands", params={"app": "sec", "runner": "agent-z"},
                    headers={"Authorization": "Bearer tok123"}).json()["commands"]
    assert cmd in [c["command_id"] for c in got]                        # still handed out to a real agent
    agent = Emitter(guarded.otlp_grpc, "sec", Runner("agent-z"), token="tok123")
    agent.command(cmd, "done", reason="cancelled")
    agent.shutdown()
    final = wait_until(lambda: (lambda c: c if c["is_final"] else None)(
        httpx.get(guarded.api + f"/commands/{cmd}", headers=AUTH).json()), timeout=20, message="done")
    assert (final["state"], final["runner_id"], final["reason"]) == ("done", "agent-z", "cancelled")
    assert [(r["state"], r["runner_id"]) for r in final["records"]] == \
        [("requested", None), ("delivered", "agent-z"), ("done", "agent-z")]
    assert len(scan(guarded, cmd)) == 4                                  # the forgery is kept in the log


def test_one_open_command_and_action_paths_post_only(guarded):
    running(guarded, "sec-o")
    running(guarded, "sec-d", final="FAILED")
    for path in ("/invocations/sec-o/abort", "/invocations/sec-d/rerun"):
        first = httpx.post(guarded.api + path, headers=AUTH)
        assert first.status_code == 202, first.text
        second = httpx.post(guarded.api + path, headers=AUTH)
        assert second.status_code == 409 and set(second.json()) == {"error"}, second.text
        assert first.json()["command_id"] in second.json()["error"]["message"]
        kind, target = path.rsplit("/", 1)[1], path.split("/")[2]
        assert scan(guarded, first.json()["command_id"])[0][0] == "requested"
        count = httpx.post(guarded.api + "/sql", headers=AUTH, json={
            "sql": f"SELECT count(*) FROM command_records WHERE kind = '{kind}' AND target = '{target}'"}).json()
        assert count["rows"] == [[1]]
        got = httpx.get(guarded.api + path, headers=AUTH)
        assert got.status_code == 405 and got.headers["allow"] == "POST", got.text
        assert got.json()["error"]["status"] == 405
    assert httpx.get(guarded.api + "/workflows/runs/sec-o/rerun", headers=AUTH).status_code == 405
    upper = httpx.get(guarded.api + "/commands", params={"state": "REQUESTED", "target": "sec-o"}, headers=AUTH)
    assert upper.status_code == 200 and [c["state"] for c in upper.json()["items"]] == ["requested"]
