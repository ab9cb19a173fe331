"""The read API's contract: filters, cursor pagination, one error shape, tokens, health."""
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tasktrail.proto.reference import render
from tasktrail.store.duckdb import migration_files

from .helpers import PB, fixture_requests, start_server, wait_until


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(str(tmp_path_factory.mktemp("api") / "tt.duckdb"), "--ingest-token", "tok123")
    for sig, body in fixture_requests():
        assert httpx.post(f"{s.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
    yield s
    s.stop()


def ids(page):
    return [i["invocation_id"] for i in page["items"]]


def test_cursor_pagination_walks_everything_once(srv):
    everything = ids(srv.get("/invocations").json())
    assert len(everything) == 6
    seen, cursor = [], None
    while True:
        page = srv.get("/invocations", params={"limit": 4, **({"cursor": cursor} if cursor else {})}).json()
        seen += ids(page)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    created = [i["created_at"] for i in srv.get("/invocations").json()["items"]]
    assert created == sorted(created, reverse=True)


def test_filters(srv):
    assert len(ids(srv.get("/invocations", params={"status": "SUCCESS"}).json())) == 5
    assert len(ids(srv.get("/invocations", params=[("status", "FAILED"), ("status", "SUCCESS")]).json())) == 6
    assert len(ids(srv.get("/invocations", params={"status": "failed,running"}).json())) == 1
    assert len(ids(srv.get("/invocations", params={"task": "python::rvapp.add"}).json())) == 4
    parent = ids(srv.get("/invocations", params={"task": "python::rvapp.parent"}).json())[0]
    assert len(ids(srv.get("/invocations", params={"parent": parent}).json())) == 3
    assert len(ids(srv.get("/invocations", params={"workflow": parent}).json())) == 4
    assert len(ids(srv.get("/invocations", params={"runner": "vm-5251"}).json())) == 3  # the submitter's
    worker = "9594a0f8-d8ab-42a1-8845-52ef62fdce9d"
    ran = srv.get("/invocations", params={"runner": worker}).json()["items"]
    assert {i["task_id"] for i in ran} == {"python::rvapp.add", "python::rvapp.boom"}
    assert ids(srv.get("/invocations", params={"q": parent[:8]}).json()) == [parent]
    assert ids(srv.get("/invocations", params={"since": "2030-01-01T00:00:00Z"}).json()) == []
    assert len(ids(srv.get("/invocations", params={"until": "2030-01-01T00:00:00Z", "app": "demo"}).json())) == 6
    assert ids(srv.get("/invocations", params={"app": "other"}).json()) == []


@pytest.mark.parametrize("path, params, status, needle", [
    ("/invocations", {"status": "DONE"}, 400, "unknown status 'DONE'"),
    ("/invocations", {"limit": "0"}, 400, "limit must be between 1 and 1000"),
    ("/invocations", {"limit": "x"}, 400, "limit must be an integer"),
    ("/invocations", {"cursor": "garbage"}, 400, "cursor is not one this server issued"),
    ("/invocations", {"since": "yesterday"}, 400, "since is not an RFC 3339 time"),
    ("/invocations/nope", {}, 404, "invocation nope is not in the log"),
    ("/invocations/nope/history", {}, 404, "not in the log"),
    ("/traces/xyz", {}, 400, "trace id must be 32 hex characters"),
    ("/traces/" + "0" * 32, {}, 404, "not in the log"),
    ("/no/such/path", {}, 404, ""),
])
def test_one_error_shape(srv, path, params, status, needle):
    r = srv.get(path, params=params)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"error"} and body["error"]["status"] == status
    assert needle in body["error"]["message"]


def test_sql_endpoint_refusals(srv):
    for sql, needle in [("insert into transitions select * from transitions", "only read-only SELECT"),
                        ("select 1; select 2", "exactly one statement"),
                        ("attach '/tmp/x.db'", "only read-only SELECT"),
                        ("select * from glob('/etc/*')", "not allowed in ad-hoc SQL"),
                        ("select * from '/etc/hosts'", "does not exist"),
                        ("selec 1", "does not parse")]:
        r = httpx.post(srv.api + "/sql", json={"sql": sql})
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (sql, r.text)
    assert httpx.post(srv.api + "/sql", content=b"not json").status_code == 400
    r = httpx.post(srv.api + "/sql", json={"sql": "select sum(attempt) as s, 1.5::DECIMAL(4,1) as d "
                                                  "from transitions"}).json()
    # boom: attempt 0 on 4 rows, 1 on 3, 2 on 2; every other row is attempt 0. Integer sums stay integers.
    assert r["rows"] == [[7, 1.5]]
    r = httpx.post(srv.api + "/sql", json={"sql": "select * from range(20000)"}).json()
    assert r["truncated"] is True and len(r["rows"]) == 10_000


def test_health_and_tokens(tmp_path):
    s = start_server(str(tmp_path / "tt.duckdb"), "--api-token", "sekret")
    try:
        assert httpx.get(s.web + "/healthz").json() == {"status": "ok"}
        ready = httpx.get(s.web + "/readyz")
        assert ready.status_code == 200 and ready.json()["schema_version"] == migration_files()[-1][0] == "0011_commands"
        r = httpx.get(s.api + "/invocations")
        assert r.status_code == 401 and r.json()["error"]["status"] == 401
        assert httpx.get(s.api + "/invocations", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(s.api + "/invocations", headers={"Authorization": "Bearer sekret"})
        assert ok.status_code == 200 and ok.json() == {"items": [], "next_cursor": None}
        # No ingest token configured: ingest is open.
        sig, body = fixture_requests()[0]
        assert httpx.post(f"{s.otlp_http}/v1/{sig}", content=body,
                          headers={"Content-Type": "application/x-protobuf"}).status_code == 200
    finally:
        s.stop()


def test_records_no_dialect_knows_are_kept_raw(srv):
    provider = LoggerProvider(resource=Resource.create({"service.name": "plain-app"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=srv.otlp_http + "/v1/logs", headers={"authorization": "Bearer tok123"})))
    provider.get_logger("plain-app").emit(body="disk almost full", severity_text="WARN",
                                          severity_number=SeverityNumber.WARN,
                                          attributes={"invocation_id": "inv-raw-1"})
    # A tasktrail.v1 status without its invocation id is not a transition, but it is not lost either.
    provider.get_logger("tasktrail").emit(event_name="tasktrail.status", body="tasktrail.status",
                                          attributes={"tasktrail.status": "RUNNING"})
    provider.shutdown()

    def rows():
        r = httpx.post(srv.api + "/sql", json={"sql": "select message, level, invocation_id, event_name, app_id "
                                                      "from logs where app_id = 'plain-app' order by message"}).json()
        return r["rows"] if len(r["rows"]) == 2 else None

    got = wait_until(rows, message="raw log records")
    assert got == [["disk almost full", "WARN", "inv-raw-1", None, "plain-app"],
                   ["tasktrail.status", None, None, "tasktrail.status", "plain-app"]]


def test_reference_page_is_generated_from_the_code():
    doc = Path(__file__).resolve().parents[1] / "docs" / "tasktrail-v1.md"
    assert doc.read_text() == render(), "run: tasktrail conventions -o docs/tasktrail-v1.md"
