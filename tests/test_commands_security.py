"""Who may act (issue 19): command requests need the API token when one is set (401), come from this origin
(403 cross-site), are off under --read-only (403, no buttons); the agents' poll takes the ingest token, not
the API token. A refused request leaves nothing in the log (checked by a scan of `command_records`)."""
import httpx
import pytest

from tasktrail.proto.emitter import Emitter

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
    finally:
        srv.stop()
