"""Any id a runner can send opens everywhere: ids holding `/`, `%`, `#`, `?`, spaces, `+`, quotes,
non-ASCII, only dots, or thousands of characters, sent through the real emitter (and a real OTel SDK span),
answer in every route that takes one (API and page), and every link the pages build for them leads back
to the same entity."""
from __future__ import annotations

import html
import re
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import quote, urlsplit

import httpx
import pytest
from markupsafe import escape
from opentelemetry import trace as otel_trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tasktrail.proto.emitter import Emitter, Runner
from tasktrail.proto.urlpath import segment, unsegment

from .helpers import CHROMIUM, start_server, wait_until

# One id per hostile character class; each is used as an invocation, runner, task, workflow type, workflow
# run, event and trigger-run id at once (ids of different kinds live in different namespaces).
HOSTILE = {
    "slashes": "export/2026-11/user-7",
    "slash-ends": "/lead and trail/",
    "percent": "100% done, %2F stays text",
    "hash-query": "job #7?x=1&y=2",
    "plus-space": "a+b c  d",
    "quotes-angle": "q\"uote'<b>&amp;",
    "non-ascii": "zadanie-é-日本-🚀",
    "edge-spaces": "  padded  ",
    "dots": "..",
    "dot": ".",
    "dot-path": "a/../b/./c",
    "suffix-like": "x/history",
    "suffix-word": "family",
    "tilde-escape": "~2E~2E",
    "tilde-plain": "~home~",
    "comma-semicolon": "a,b;c=d",
    "backslash": "C:\\jobs\\7",
    "long": "long-" + "ž/" * 400 + "x" * 1200,
}
PAGE_KINDS = ("slashes", "slash-ends", "hash-query", "quotes-angle", "non-ascii", "dots", "tilde-escape", "long")
APP = "team/a & b"
PARENT = "parent/of #all"
FAMILIES = ("invocation", "runner", "task", "workflow_type", "workflow_run", "event", "trigger_run", "call")


def sent_raw(path: str) -> tuple[int, bytes]:
    """GET with the path exactly as written (urllib leaves '..' and '//' alone; httpx would normalize)."""
    try:
        with urllib.request.urlopen(path, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    work = tmp_path_factory.mktemp("ids")
    server = start_server(str(work / "tt.duckdb"))
    tp = TracerProvider(resource=Resource.create({"service.name": "ids-worker"}))
    tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.otlp_http + "/v1/traces")))
    tracer = tp.get_tracer("ids-test")
    em = Emitter(endpoint=server.otlp_http, app_id=APP, protocol="http/protobuf")
    t0 = datetime.now(timezone.utc) - timedelta(minutes=2)
    at = lambda s: t0 + timedelta(seconds=s)  # noqa: E731
    em.status(PARENT, "REGISTERED", task_id="ids.parent", timestamp=at(0))
    trace_ids = {}
    for i, v in enumerate(HOSTILE.values()):
        runner = Runner(v, "ThreadRunner", hostname="h1", pid=100 + i)
        em.runner_started(runner, timestamp=at(i))
        em.heartbeat(runner, timestamp=at(i + 0.1))
        em.status(v, "REGISTERED", task_id=v, parent_invocation_id=PARENT, workflow_id=v, workflow_type=v,
                  call_id=v, timestamp=at(i + 0.2))
        with tracer.start_as_current_span("run " + v, attributes={"tasktrail.invocation.id": v}) as span:
            trace_ids[v] = format(span.get_span_context().trace_id, "032x")
            em.status(v, "RUNNING", runner=runner, attempt=0, timestamp=at(i + 0.3))
            em.status(v, "SUCCESS", runner=runner, attempt=0, timestamp=at(i + 0.4))
        em.event(v, "ids.code", {"n": i}, emitted_by_invocation_id=v, emitted_by_task_id=v,
                 emitted_by_runner_id=v, runner=runner, timestamp=at(i + 0.5))
        em.trigger_run(v, trigger_id=v, task_id=v, logic="and", event_ids=[v], source_invocation_ids=[v],
                       triggered_invocation_id=v, participants=[{"context_type": "EventContext", "event_id": v}],
                       executed_at=at(i + 0.6), runner=runner, timestamp=at(i + 0.6))
    em.status(PARENT, "SUCCESS", task_id="ids.parent", timestamp=at(len(HOSTILE) + 1))
    assert em.flush()
    em.shutdown()
    tp.shutdown()
    last = list(HOSTILE.values())[-1]
    wait_until(lambda: server.get("/trigger-runs/" + segment(last)).status_code == 200, timeout=30,
               message="the hostile ids stored")
    server.trace_ids = trace_ids
    yield server
    server.stop()


def api_url(srv, family: str, v: str) -> str:
    seg = segment(v)
    return srv.api + {"invocation": f"/invocations/{seg}", "runner": f"/runners/{seg}", "task": f"/tasks/{seg}",
                      "workflow_type": f"/workflows/{seg}", "workflow_run": f"/workflows/runs/{seg}",
                      "event": f"/events/{seg}", "trigger_run": f"/trigger-runs/{seg}", "call": f"/calls/{seg}"}[family]


def id_of(family: str, doc: dict) -> str:
    return {"invocation": lambda d: d["invocation_id"], "runner": lambda d: d["runner_id"],
            "task": lambda d: d["task_id"], "workflow_type": lambda d: d["workflow_type"],
            "workflow_run": lambda d: d["workflow_id"], "event": lambda d: d["event_id"],
            "trigger_run": lambda d: d["trigger_run_id"], "call": lambda d: d["call_id"]}[family](doc)


def hrefs(body: str) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', body)]


ENTITY = re.compile(r"^/(invocations|runners|tasks|workflows/runs|workflows|events|trigger-runs|traces|calls)/")


def test_segments_round_trip():
    for v in list(HOSTILE.values()) + ["", "...", "~2e", "%7E2E", "~2E~2", "~~2E"]:
        s = segment(v)
        assert "/" not in s and s not in (".", "..") and s.isascii() and unsegment(s) == v, (v, s)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", list(HOSTILE))
def test_api_and_page_answer_with_the_same_id(srv, family, kind):
    v = HOSTILE[kind]
    r = httpx.get(api_url(srv, family, v), timeout=30)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    assert id_of(family, r.json()) == v
    if family not in ("invocation", "runner") and kind not in PAGE_KINDS:
        return  # the pages of the other families are read for a cross-section of the classes (time)
    page_url = api_url(srv, family, v).replace("/api/v1", "", 1)
    page = httpx.get(page_url, timeout=30)
    assert page.status_code == 200, page.text[:300]
    assert str(escape(v)) in page.text
    # The page's links to itself (its JSON twin, its API twin) name the same id.
    links = hrefs(page.text)
    twin_link = next(h for h in links if "format=json" in h)
    twin = httpx.get(srv.web + twin_link, timeout=30)
    assert twin.status_code == 200 and id_of(family, twin.json()) == v
    api_link = next(h for h in links if h.startswith("/api/v1/"))
    assert id_of(family, httpx.get(srv.web + api_link, timeout=30).json()) == v


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_invocation_suffix_routes(srv, kind):
    v = HOSTILE[kind]
    base = api_url(srv, "invocation", v)
    hist = httpx.get(base + "/history", timeout=30)
    assert hist.status_code == 200 and [h["status"] for h in hist.json()] == ["REGISTERED", "RUNNING", "SUCCESS"]
    fam = httpx.get(base + "/family", timeout=30)
    assert fam.status_code == 200 and {"parent": PARENT, "child": v, "kind": "direct"} in fam.json()["edges"]
    logs = httpx.get(base + "/logs", timeout=30)
    assert logs.status_code == 200 and isinstance(logs.json(), list)


SLASHED = [k for k, v in HOSTILE.items() if "/" in v and not v.endswith("/") and k not in ("suffix-like", "dot-path")]


@pytest.mark.parametrize("kind", SLASHED)
def test_raw_slash_and_encoded_slash_both_resolve(srv, kind):
    """`/` written raw (as a hand-made URL would) and as %2F (as the links write it) open the same entity;
    /history after a raw-slashed id is still the history."""
    v = HOSTILE[kind]
    raw = quote(v, safe="/")
    for family, path in (("invocation", "/invocations/"), ("runner", "/runners/"), ("task", "/tasks/"),
                         ("workflow_type", "/workflows/"), ("workflow_run", "/workflows/runs/"),
                         ("event", "/events/"), ("trigger_run", "/trigger-runs/"), ("call", "/calls/")):
        import json
        for prefix in (srv.api, srv.web):
            st, body = sent_raw(prefix + path + raw + ("?format=json" if prefix == srv.web else ""))
            assert st == 200, (family, prefix, st, body[:200])
            assert id_of(family, json.loads(body)) == v
    st, body = sent_raw(srv.api + "/invocations/" + raw + "/history")
    assert st == 200 and b'"SUCCESS"' in body


def test_suffix_words_inside_ids_are_ids(srv):
    """An id ending in '/history' (sent as %2F) is an invocation, not the history of 'x'; an id that is
    the word 'family' is an invocation too."""
    st, body = sent_raw(srv.api + "/invocations/x%2Fhistory")
    assert st == 200 and b'"invocation_id":"x/history"' in body.replace(b" ", b"")
    st, body = sent_raw(srv.api + "/invocations/family")
    assert st == 200 and b'"invocation_id":"family"' in body.replace(b" ", b"")
    st, _ = sent_raw(srv.api + "/invocations/x/history")  # the history of "x", which does not exist
    assert st == 404


def test_unknown_ids_are_404_with_the_id_named(srv):
    for path in ("/invocations/", "/runners/", "/events/", "/trigger-runs/", "/workflows/runs/", "/calls/"):
        r = httpx.get(srv.api + path + segment("no/such #id"), timeout=30)
        assert r.status_code == 404 and "no/such #id" in r.json()["error"]["message"], (path, r.text)


def test_trace_ids_are_hex_or_a_clear_400(srv):
    v = HOSTILE["slashes"]
    tid = srv.trace_ids[v]
    r = httpx.get(f"{srv.api}/traces/{tid}", timeout=30)
    assert r.status_code == 200 and r.json()["resourceSpans"]
    for bad in ("not-hex", "a/b", "a%2Fb", segment(".."), "0" * 31 + "g", quote("日本", safe="")):
        for prefix in (srv.api, srv.web):
            st, body = sent_raw(f"{prefix}/traces/{bad}" + ("?format=json" if prefix == srv.web else ""))
            assert st == 400 and b"32 hex characters" in body, (prefix, bad, st, body[:200])


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_query_string_filters_take_any_id(srv, kind):
    v = HOSTILE[kind]
    for param in ("runner", "workflow", "task"):
        items = srv.get("/invocations", params={param: v, "app": APP}).json()["items"]
        assert [i["invocation_id"] for i in items] == [v], param
    kids = srv.get("/invocations", params={"parent": PARENT, "limit": 100}).json()["items"]
    assert v in {i["invocation_id"] for i in kids}
    runs = srv.get("/trigger-runs", params={"invocation": v}).json()
    assert [r["trigger_run_id"] for r in runs] == [v]
    wf = srv.get("/workflows/runs", params={"type": v}).json()["items"]
    assert [r["workflow_id"] for r in wf] == [v]
    # The family timeline asks for its ids one per value (an id may hold commas); one value alone is
    # still read whole.
    for params in ([("since", "-1h"), ("invocations", v), ("invocations", PARENT)], {"since": "-1h", "invocations": v}):
        lanes = srv.get("/timeline", params=params).json()["lanes"]
        drawn = {bar["invocation_id"] for lane in lanes for sub in lane["sublanes"] for bar in sub}
        assert v in drawn, params


def _links(srv, path: str) -> set[str]:
    """The same-site links of a page (not static files). An invocation's page loads its family and log
    lines after it shows (web/static/invocation-parts-1.js): their links are those the script builds from
    /family and /logs (TT.seg, which test_browser_clicks_from_the_list_to_a_slash_and_hash_id holds to
    segment() for every hostile id)."""
    page = httpx.get(srv.web + path, timeout=30)
    assert page.status_code == 200, path
    found = {h for h in hrefs(page.text) if h.startswith("/") and not h.startswith(("//", "/static/"))}
    if path.startswith("/invocations/"):
        fam = httpx.get(srv.api + path + "/family", timeout=30)
        lines = httpx.get(srv.api + path + "/logs", timeout=30)
        assert fam.status_code == 200 and lines.status_code == 200, path
        found |= {"/invocations/" + segment(n["invocation_id"]) for n in fam.json()["nodes"]}
        found |= {"/runners/" + segment(l["worker_id"] or l["runner_id"]) for l in lines.json()
                  if l["worker_id"] or l["runner_id"]}
    return found


def _ident(doc: dict):
    for k in ("call_id", "invocation_id", "runner_id", "trigger_run_id", "event_id", "workflow_id", "task_id", "workflow_type"):
        if isinstance(doc.get(k), str):
            return doc[k]
    return None


def test_every_link_on_every_page_resolves(srv):
    """Every link to an entity (or to a list filtered by one) on the list pages and on the invocation and
    runner pages of hostile ids answers 200, and an entity link's JSON twin names one of the ids we sent:
    a link never opens another entity than the one it shows."""
    known = set(HOSTILE.values()) | {PARENT, "ids.parent"}
    pages = ["/", "/invocations?limit=100", "/runners", "/events", "/trigger-runs", "/tasks?since=all",
             "/workflows?since=all", "/workflows/runs", "/runs", "/anomalies", f"/invocations/{segment(PARENT)}"]
    for kind in ("slashes", "hash-query", "dots", "quotes-angle", "suffix-like"):
        pages += [f"/invocations/{segment(HOSTILE[kind])}", f"/runners/{segment(HOSTILE[kind])}"]
    links = set().union(*(_links(srv, p) for p in pages))
    entity_links = 0
    for h in sorted(links):
        path, query = urlsplit(h).path, urlsplit(h).query
        entity = ENTITY.match(path) and not path.startswith(("/traces/", "/workflows/compare")) \
            and path != "/workflows/runs"
        if not entity and not re.search(r"(^|&)(runner|task|workflow|parent|invocation|type)=", query):
            continue  # navigation, filters without an id
        r = httpx.get(srv.web + h, params={"format": "json"}, timeout=30)
        assert r.status_code == 200, (h, r.status_code, r.text[:200])
        if entity:
            assert _ident(r.json()) in known, (h, _ident(r.json()))
            entity_links += 1
    assert entity_links >= 6 * len(HOSTILE), entity_links


def test_log_explorer_links_resolve(srv):
    v = HOSTILE["slashes"]
    res = httpx.post(srv.api + "/log-explorer", json={"text": f"2026-11-30 10:00:00 INFO x invocation:{v} runner:{v}"},
                     timeout=30).json()
    chips = {r["kind"]: r for r in res["lines"][0]["refs"]}
    for kind in ("invocation", "runner"):
        assert chips[kind]["resolved"] and chips[kind]["link"]
        assert httpx.get(srv.web + chips[kind]["link"], timeout=30).status_code == 200


def test_login_redirect_keeps_the_id(tmp_path):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--api-token", "secret-token")
    try:
        v = HOSTILE["hash-query"]
        r = httpx.get(f"{srv.web}/invocations/{segment(v)}", headers={"Accept": "text/html"}, timeout=30)
        assert r.status_code == 303
        nxt = httpx.URL(r.headers["location"]).params["next"]
        assert nxt == f"/invocations/{segment(v)}"
    finally:
        srv.stop()


def test_browser_clicks_from_the_list_to_a_slash_and_hash_id(srv):
    """A user clicks the id in the invocations list and lands on that invocation's page, in Chromium;
    and the JS link builder (TT.seg) reaches every hostile id through the browser's own URL handling."""
    import os
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    v = "release/v2 #3"
    em = Emitter(endpoint=srv.otlp_http, app_id="clicks", protocol="http/protobuf")
    em.status(v, "REGISTERED", task_id="ids.click")
    em.status(v, "SUCCESS", task_id="ids.click")
    assert em.flush()
    em.shutdown()
    wait_until(lambda: srv.get("/invocations/" + segment(v)).status_code == 200, message="the clicked id")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page()
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(srv.web + "/invocations?app=clicks")
            page.locator(f'a.id[data-invocation-id="{v}"]').click()
            page.wait_for_load_state("networkidle")
            assert page.evaluate("window.TT.data.invocation_id") == v
            assert v in page.locator("h1").inner_text()
            assert page.url == f"{srv.web}/invocations/{segment(v)}"
            # The JS builder: every hostile id, navigated to as the pages' scripts build the link.
            for hv in HOSTILE.values():
                href = page.evaluate("(id) => '/invocations/' + window.TT.seg(id)", hv)
                assert href == "/invocations/" + segment(hv)
                page.goto(srv.web + href)
                assert page.evaluate("window.TT.data.invocation_id") == hv, hv
            assert errors == []
        finally:
            browser.close()


def test_an_id_holding_a_newline_reaches_its_api_routes(server):
    """Starlette's Mount stops at a newline; /api/v1 matches the whole rest of the path."""
    from tasktrail.proto.emitter import Emitter, Runner
    rid = "odd\nrunner\t1"
    em = Emitter(f"http://{server.otlp_grpc}", "nl", Runner(rid, "ThreadRunner", hostname="h", pid=5), token="tok123")
    em.runner_started()
    em.status("nl\ninv", "REGISTERED", task_id="nl\ntask")
    em.flush()
    em.shutdown()
    from urllib.parse import quote
    got = wait_until(lambda: (lambda r: r if r.status_code == 200 else None)(
        httpx.get(server.api + "/invocations/" + quote("nl\ninv", safe=""))), timeout=15, message="the invocation")
    assert got.json()["invocation_id"] == "nl\ninv"
    assert httpx.get(server.api + "/runners/" + quote(rid, safe="")).json()["runner_id"] == rid
    assert httpx.get(server.api + "/tasks/" + quote("nl\ntask", safe=""), params={"since": "all"}).status_code == 200
