"""Search (issue 18) through the API over real OTLP ingest: q= on /api/v1/invocations and /api/v1/runs
finds what an independent scan of the stored log finds (tests/search_data.py), in the window; a
malformed query is a 400 in the one error shape, on the API and on the pages."""
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tasktrail.proto.emitter import Emitter

from .helpers import sql, start_server, wait_until
from .search_data import APP, CASES, RUNNER, SCAN_SQL, emit, quote, scan


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(str(tmp_path_factory.mktemp("search") / "tt.duckdb"), "--ingest-token", "tok123")
    em = Emitter(f"http://{s.otlp_grpc}", APP, RUNNER, token="tok123")  # the OTel SDK's gRPC exporter
    emit(em, datetime.now(timezone.utc))
    em.flush()
    em.shutdown()
    wait_until(lambda: len(s.get("/runs", params={"app": APP, "since": "all", "limit": 500}).json()["items"])
               == len(CASES) and not s.get("/runs", params={"app": APP, "since": "all"}).json()["running"],
               timeout=30, message="the scenario stored")
    yield s
    s.stop()


@pytest.fixture(scope="module")
def rows(srv):
    """The stored transitions, read back with plain SQL (times as naive UTC)."""
    out = []
    for r in sql(srv, SCAN_SQL.replace(" ts,", " epoch_us(ts) AS ts,")):
        d = dict(zip(["invocation_id", "task_id", "status", "ts", "arguments", "result", "error_type",
                      "error_message"], r))
        d["ts"] = datetime(1970, 1, 1) + timedelta(microseconds=d["ts"])
        out.append(d)
    return out


def found(srv, q, **params) -> set:
    got = []
    for path in ("/invocations", "/runs"):
        r = srv.get(path, params={"app": APP, "q": q, "limit": 500, **params})
        assert r.status_code == 200, r.text
        got.append({i["invocation_id"] for i in r.json()["items"]})
    assert got[0] == got[1], q
    return got[0]


@pytest.mark.parametrize("q,field,value,key", [
    ("kwargs:order=1234", "kwargs", "1234", "order"),
    ('kwargs:customer="ACME Corp"', "kwargs", "ACME Corp", "customer"),
    ("kwargs:name=MÜLLER", "kwargs", "MÜLLER", "name"),
    ("args:100%_off", "args", "100%_off", None),
    ("args:" + quote("C:\\temp"), "args", "C:\\temp", None),
    ("result:grüße", "result", "grüße", None),
    ("error:" + quote('"quoted"'), "error", '"quoted"', None),
    ("東京", "", "東京", None),
    ("args:" + "x" * 2000, "args", "x" * 2000, None)])
def test_q_finds_what_the_scan_finds(srv, rows, q, field, value, key):
    day = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=24)
    assert found(srv, q) == scan(rows, field, value, key=key, since=day)
    assert found(srv, q, since="all") == scan(rows, field, value, key=key)


def test_the_issue_example_and_the_window(srv, rows):
    assert found(srv, "kwargs:order=1234") == {"inv-json-num", "inv-json-str", "inv-json-nested", "inv-array-objs",
                                               "inv-text-eq", "inv-repr", "inv-pynenc", "inv-json-scalar", "inv-3h"}
    assert "inv-old" in found(srv, "kwargs:order=1234", since="all")
    assert found(srv, "kwargs:order=1234", since="-1h") == scan(
        rows, "kwargs", "1234", key="order", since=datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1))
    page = srv.get("/invocations", params={"app": APP, "q": "args:acme"}).json()
    assert set(page["search_window"]) == {"since", "until"} and page["search_window"]["until"] is None
    assert found(srv, "state:FAILED kwargs:order=1234") == {"inv-json-nested", "inv-3h"}
    assert found(srv, "state:RETRY", status_mode="history") == {"inv-repr"}


@pytest.mark.parametrize("q,says", [('args:"open', "unclosed quote"), ("worker:x", "unknown prefix 'worker:'"),
                                    ("state:DONE", "unknown status"), ("x" * 3000, "longer than 2048")])
def test_malformed_queries_answer_400_in_the_one_shape(srv, q, says):
    for path in ("/invocations", "/runs"):
        r = srv.get(path, params={"q": q})
        assert r.status_code == 400
        body = r.json()
        assert set(body) == {"error"} and body["error"]["status"] == 400 and says in body["error"]["message"]
        # The page keeps the query in its box and shows the message under it (still a 400).
        page = httpx.get(srv.web + path, params={"q": q},
                         headers={"accept": "text/html"}, timeout=30)
        assert page.status_code == 400 and says.replace("'", "&#39;") in page.text and 'id="search-q"' in page.text
        twin = httpx.get(srv.web + path, params={"q": q, "format": "json"}, timeout=30)
        assert twin.status_code == 400 and says in twin.json()["error"]["message"]
