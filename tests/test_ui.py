"""The web UI in a real headless Chromium (Debian's), against a server filled by a real rustvello
run plus emitter traffic: every page loads clean, offline, and the views work as a user clicks them."""
import json
import re
from pathlib import Path

import httpx
from urllib.parse import quote
import pytest

from .helpers import SHOTS, require_chromium, start_server, wait_until
from .ui_fill import XSS_ARG, XSS_TASK, emit_shop, run_rustvello

require_chromium()  # CI installs it (.ci/run); elsewhere the module is skipped, loudly

pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui")
    srv = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123")
    theirs = run_rustvello(srv, work, 8)
    ids = emit_shop(srv)
    wait_until(lambda: srv.get(f"/invocations/{ids['running']}").status_code == 200, message="shop data")
    wait_until(lambda: all(srv.get(f"/invocations/{i}").status_code == 200 for i in theirs), message="rustvello data")
    ids["rustvello"] = theirs
    yield srv, ids
    srv.stop()


class Watched:
    """A page that records console errors, page errors, dialogs and any request leaving 127.0.0.1."""

    def __init__(self, browser, base):
        self.page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        self.problems = []
        self.outside = []
        self.dialogs = []
        self.page.on("console", lambda m: self.problems.append(f"{m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"pageerror: {e}"))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
                     else self.outside.append(r.url))

    def clean(self):
        assert self.problems == [] and self.outside == [] and self.dialogs == [], (self.problems, self.outside,
                                                                                 self.dialogs)


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_every_page_loads_clean_and_offline(filled, browser):
    srv, ids = filled
    w = Watched(browser, srv.web)
    trace_id = httpx.post(srv.api + "/sql", json={"sql": "select trace_id from spans limit 1"}).json()["rows"][0][0]
    runner = next(r["runner_id"] for r in srv.get("/runners").json() if r["runner_class"] == "PersistentTokioRunner")
    pages = {"overview": "/", "invocations": "/invocations", "detail": f"/invocations/{ids['root']}",
             "timeline": "/timeline?since=-15m", "runners": "/runners", "runner": f"/runners/{runner}",
             "runner-shop": "/runners/runner-A", "atomic": "/atomic-services", "events": "/events",
             "event": "/events/ev-1", "trigger-runs": "/trigger-runs", "trigger-run": "/trigger-runs/tr-1",
             "sql": "/sql", "trace": f"/traces/{trace_id}", "ops": "/ops", "runs": "/runs", "logs": "/logs",
             "log-explorer": "/log-explorer", "tasks": "/tasks", "workflows": "/workflows", "anomalies": "/anomalies",
             "workflow-runs": "/workflows/runs"}
    fan = next(t for t in srv.get("/workflows").json()["items"] if t["workflow_type"].endswith(".fan"))
    fan_run = srv.get("/workflows/runs", params={"type": fan["workflow_type"]}).json()["items"][0]["workflow_id"]
    pages.update({"task": "/tasks/" + quote(fan["workflow_type"], safe=""),
                  "workflow-type": "/workflows/" + quote(fan["workflow_type"], safe=""),
                  "workflow-run": f"/workflows/runs/{fan_run}", "workflow-compare": f"/workflows/compare?runs={fan_run}"})
    for name, path in pages.items():
        resp = w.page.goto(srv.web + path)
        assert resp.status == 200, path
        w.page.wait_for_load_state("networkidle")
        shot(w.page, name)
        assert w.page.locator("h1").inner_text()
        # Every page has its JSON twin.
        twin = httpx.get(srv.web + path + ("&" if "?" in path else "?") + "format=json")
        assert twin.status_code == 200 and twin.headers["content-type"] == "application/json", path
    w.clean()
    # The overview counts what the API counts.
    w.page.goto(srv.web + "/")
    counts = srv.get("/overview").json()["counts_by_status"]
    for status, n in counts.items():
        if n:
            card = w.page.locator(f"a.stat:has(.s-{status})")
            assert card.locator(".n").inner_text() == str(n)
    headers = httpx.get(srv.web + "/").headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"


def test_click_through_to_family_and_timeline(filled, browser):
    srv, ids = filled
    w = Watched(browser, srv.web)
    p = w.page
    p.goto(srv.web + "/invocations?task=shop.step0")
    rows = p.locator("table.grid tbody tr")
    assert rows.count() == 2
    child = ids["kids"][0]
    p.click(f'a[href="/invocations/{child}"]')
    p.wait_for_load_state("networkidle")
    assert child in p.locator("h1").inner_text()
    # The family (loaded after the page shows): root and its six children, in the graph and in the list.
    p.locator('#family-card[data-loaded="yes"]').wait_for()
    p.wait_for_function("() => window.TT.cy")
    assert p.locator("#family-list li").count() == 7
    nodes = p.evaluate("window.TT.cy.nodes().length")
    assert nodes == 7
    # Selecting a node highlights it on the family timeline.
    p.click(f'#family-list li[data-invocation-id="{ids["failed"]}"] .task')
    assert p.locator("#family-list").get_attribute("data-selected") == ids["failed"]
    assert p.evaluate(f"window.TT.cy.$id('{ids['failed']}').selected()") is True
    shot(p, "detail-family-selected")
    # Open the family on the big timeline, with this invocation highlighted.
    p.click("#family-timeline-link")
    p.wait_for_load_state("networkidle")
    info = p.locator("#selected-info")
    info.wait_for(state="visible")
    wait_until(lambda: info.get_attribute("data-found") == "yes", message="the selection on the timeline")
    assert child in info.inner_text()
    assert int(p.locator("#timeline").get_attribute("data-total")) == 7
    shot(p, "timeline-selected")
    w.clean()


def test_untrusted_text_is_shown_never_run(filled, browser):
    srv, ids = filled
    w = Watched(browser, srv.web)
    p = w.page
    for path in (f"/invocations/{ids['root']}", "/invocations?app=shop", "/", f"/invocations/{ids['kids'][0]}"):
        p.goto(srv.web + path)
        p.wait_for_load_state("networkidle")
        assert p.evaluate("window.__xss") is None, path
    p.goto(srv.web + f"/invocations/{ids['root']}")
    assert XSS_TASK in p.locator("h1").inner_text()
    assert p.locator("#arguments").inner_text() == json.dumps({"q": XSS_ARG})
    assert p.locator("img[src=x]").count() == 0
    w.clean()


def test_timeline_zoom_hover_and_open(filled, browser):
    srv, ids = filled
    w = Watched(browser, srv.web)
    p = w.page
    p.goto(srv.web + "/timeline?since=-15m&app=shop")
    wait_until(lambda: p.locator("#timeline").get_attribute("data-total"), message="the timeline to load")
    assert p.locator("#timeline").get_attribute("data-total") == "7"
    box = p.locator("#timeline").bounding_box()
    before = p.evaluate("location.search")
    p.mouse.move(box["x"] + 400, box["y"] + 60)
    p.mouse.down()
    p.mouse.move(box["x"] + 900, box["y"] + 60, steps=5)
    p.mouse.up()
    wait_until(lambda: p.evaluate("location.search") != before, message="the zoom to change the URL")
    q = p.evaluate("location.search")
    assert "since=" in q and "until=" in q
    # Hover and click a bar: find one through the renderer's hit list, then act as a user would.
    p.goto(srv.web + "/timeline?since=-15m&app=shop")
    wait_until(lambda: p.evaluate("window.TT.timeline && window.TT.timeline.hits.length > 0"),
               message="the timeline to draw")
    hit = p.evaluate("""() => { const h = window.TT.timeline.hits.find(h => h.inv && h.status === 'RUNNING');
        return {x: (h.x0 + h.x1) / 2, y: (h.y0 + h.y1) / 2, inv: h.inv}; }""")
    box = p.locator("#timeline").bounding_box()
    p.mouse.move(box["x"] + hit["x"], box["y"] + hit["y"])
    tip = p.locator("#timeline-tip")
    tip.wait_for(state="visible")
    assert hit["inv"] in tip.inner_text()
    p.mouse.click(box["x"] + hit["x"], box["y"] + hit["y"])
    p.wait_for_url(re.compile(r"/invocations/"))
    assert hit["inv"] in p.url
    w.clean()


def test_sql_page_table_and_csv(filled, browser):
    srv, _ = filled
    w = Watched(browser, srv.web)
    p = w.page
    p.goto(srv.web + "/sql")
    p.fill("#sql-text", "select status, count(*) as n from invocations where app_id = 'shop' group by 1 order by 1")
    p.click("#sql-run")
    p.locator("#sql-table").wait_for()
    rows = p.locator("#sql-table tbody tr")
    assert [rows.nth(i).inner_text().split("\t") for i in range(rows.count())] == [
        ["FAILED", "1"], ["RUNNING", "1"], ["SUCCESS", "5"]]
    with p.expect_download() as dl:
        p.click("#sql-csv")
    text = Path(dl.value.path()).read_text()
    assert text.splitlines() == ["status,n", "FAILED,1", "RUNNING,1", "SUCCESS,5"]
    w.clean()
    p.fill("#sql-text", "delete from transitions")
    p.click("#sql-run")
    assert "only read-only SELECT" in p.locator("#sql-result .error-message").inner_text()
    # The only complaint is the browser noting the refusal's 400.
    assert w.problems == ["error: Failed to load resource: the server responded with a status of 400 (Bad Request)"]


def test_timeline_renders_ten_thousand_and_says_what_it_cut(tmp_path, browser):
    from datetime import datetime, timezone

    from benchmarks.workload import Workload

    srv = start_server(str(tmp_path / "big.duckdb"))
    try:
        wl = Workload(per_request=2000)
        with httpx.Client(timeout=60) as c:
            for sig, body in wl.requests(75_000):
                assert c.post(f"{srv.otlp_http}/v1/{sig}", content=body,
                              headers={"Content-Type": "application/x-protobuf"}).status_code == 200
        total = httpx.post(srv.api + "/sql", json={"sql": "select count(distinct invocation_id) from transitions"}
                           ).json()["rows"][0][0]
        assert total >= 10_000
        start = datetime.fromtimestamp(wl.start_ns / 1e9, timezone.utc).isoformat()
        end = datetime.fromtimestamp(wl.start_ns / 1e9 + 3600, timezone.utc).isoformat()
        w = Watched(browser, srv.web)
        p = w.page
        p.goto(srv.web + "/timeline?" + httpx.QueryParams({"since": start, "until": end, "limit": "20000"}).__str__())
        wait_until(lambda: p.locator("#timeline").get_attribute("data-total"), timeout=60, message="10k timeline")
        assert int(p.locator("#timeline").get_attribute("data-shown")) == total
        assert p.locator("#timeline-count").inner_text().startswith(f"{total} invocations")
        drawn = p.evaluate("new Set(window.TT.timeline.hits.filter(h => h.inv).map(h => h.inv)).size")
        assert drawn == total
        shot(p, "timeline-10k")
        p.goto(srv.web + "/timeline?" + str(httpx.QueryParams({"since": start, "until": end, "limit": "500"})))
        wait_until(lambda: p.locator("#timeline").get_attribute("data-total"), timeout=60, message="cut timeline")
        assert p.locator("#timeline-count").inner_text().startswith(f"showing 500 of {total} invocations")
        w.clean()
    finally:
        srv.stop()


def _log_provider(srv, invocation):
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create({"service.namespace": "shop", "service.name": "shop-worker",
                                                        "tasktrail.runner.id": "worker-A1",
                                                        "tasktrail.runner.parent.id": "runner-A"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=srv.otlp_http + "/v1/logs", headers={"authorization": "Bearer tok123"})))
    return provider


def _emit(provider, body, level, invocation):
    from opentelemetry._logs import SeverityNumber

    number = {"DEBUG": SeverityNumber.DEBUG, "INFO": SeverityNumber.INFO, "ERROR": SeverityNumber.ERROR}[level]
    provider.get_logger("shop").emit(body=body, severity_text=level, severity_number=number,
                                     attributes={"invocation_id": invocation, "task_id": "shop.step0"})


def _line(l):
    """tasktrail's own log line format, as the Download button writes it."""
    parts = [l["timestamp"], (l["level"] or "INFO").ljust(5)]
    for key, kind in (("runner_id", "runner"), ("worker_id", "worker"), ("invocation_id", "invocation"),
                      ("task_id", "task")):
        if l.get(key):
            parts.append(f"{kind}:{l[key]}")
    return " ".join(parts) + " | " + l["message"]


def test_logs_search_follow_pause_download_and_explore(filled, browser):
    srv, ids = filled
    inv = ids["kids"][0]
    provider = _log_provider(srv, inv)
    for body, level in (("alpha ok", "INFO"), ('beta <b onmouseover="window.__xss=3">bold</b>', "ERROR"),
                        ("gamma debug", "DEBUG")):
        _emit(provider, body, level, inv)
    wait_until(lambda: len(srv.get("/logs", params={"app": "shop"}).json()["items"]) == 3, message="lines")
    w = Watched(browser, srv.web)
    p = w.page
    p.goto(srv.web + "/logs?app=shop&level=INFO")
    assert p.locator("#log-rows tr").count() == 2
    assert 'beta <b onmouseover="window.__xss=3">bold</b>' in p.locator("#log-rows").inner_text()
    p.click("#follow")
    wait_until(lambda: p.evaluate("window.TT.tailState()") == 1, message="the tail to open")
    _emit(provider, "delta live", "INFO", inv)
    _emit(provider, "epsilon debug, filtered out", "DEBUG", inv)
    p.locator("#log-rows tr:has-text('delta live')").wait_for(timeout=5000)
    p.click("#pause")
    _emit(provider, "zeta while paused", "INFO", inv)
    wait_until(lambda: "1 new" in p.locator("#tail-state").inner_text(), message="held while paused")
    assert p.locator("#log-rows tr:has-text('zeta')").count() == 0
    p.click("#pause")
    p.locator("#log-rows tr:has-text('zeta while paused')").wait_for(timeout=5000)
    provider.shutdown()
    assert p.locator("#log-rows tr:has-text('epsilon')").count() == 0
    with p.expect_download() as dl:
        p.click("#download")
    got = Path(dl.value.path()).read_text().splitlines()
    expected = [_line(l) for l in reversed(srv.get("/logs", params={"app": "shop", "level": "INFO"}).json()["items"])]
    assert got == expected and len(got) == 4
    assert p.evaluate("window.__xss") is None
    shot(p, "logs-following")
    w.clean()
    # The downloaded file goes back into the explorer: every invocation, runner and task resolves.
    p.goto(srv.web + "/log-explorer")
    unknown = ("2026-11-22 10:25:22.648+00:00 INFO     pynenc.x [TR(deadbeef)00000000-0000-4000-8000-000000000000"
               ":x.y] invocation:00000000-0000-4000-8000-000000000000 status:running")
    p.fill("#explorer-text", "\n".join(got + [unknown]))
    p.click("#explorer-run")
    p.locator("#explorer-lines tbody tr").nth(4).wait_for()
    assert p.locator("#explorer-lines tbody tr").count() == 5
    resolved = p.locator("#explorer-lines .chip.resolved")
    # Each of the 4 downloaded lines names the invocation in its column and among its references.
    assert p.locator(f'#explorer-lines .chip.resolved[data-invocation-id="{inv}"]').count() == 8
    assert p.locator('#explorer-lines .chip.resolved[data-runner-id="worker-A1"]').count() >= 4
    assert resolved.count() >= 12
    first = p.locator("#explorer-lines tbody tr").nth(0)
    assert first.locator("td").nth(4).locator(".chip.resolved").get_attribute("data-invocation-id") == inv
    unresolved = p.locator("#explorer-lines tbody tr").nth(4).locator(".chip.unresolved")
    assert unresolved.count() == 4  # the runner, the bracket's invocation and task, the invocation: reference
    assert unresolved.nth(0).inner_text() == "TR:deadbeef"
    wait_until(lambda: p.locator("#explorer-timeline").get_attribute("data-shown"), message="mini timeline")
    assert int(p.locator("#explorer-timeline").get_attribute("data-shown")) == 2  # it and its parent
    shot(p, "log-explorer")
    w.clean()


def test_invocation_page_streams_its_logs_while_it_runs(filled, browser):
    srv, ids = filled
    w = Watched(browser, srv.web)
    p = w.page
    p.goto(srv.web + f"/invocations/{ids['running']}")
    p.locator('#logs-card[data-loaded="yes"]').wait_for()  # the lines so far first, then the tail
    wait_until(lambda: p.evaluate("window.TT.invocationTail && window.TT.invocationTail.readyState") == 1,
               message="the invocation's tail to open")
    provider = _log_provider(srv, ids["running"])
    _emit(provider, "step 3 of 5 done", "INFO", ids["running"])
    _emit(provider, "another invocation's line", "INFO", ids["kids"][1])
    provider.shutdown()
    p.locator("#inv-logs tr:has-text('step 3 of 5 done')").wait_for(timeout=5000)
    assert p.locator("#inv-logs tr:has-text('another invocation')").count() == 0
    w.clean()


def test_runs_table(filled, browser):
    srv, ids = filled
    w = Watched(browser, srv.web)
    p = w.page
    p.goto(srv.web + "/runs?app=shop")
    rows = p.locator("#runs tbody tr")
    assert rows.count() == 7
    started = [rows.nth(i).locator("time").get_attribute("datetime") for i in range(7)]
    assert started == sorted(started, reverse=True)
    running = p.locator(f'#runs tr[data-invocation-id="{ids["running"]}"]')
    assert running.locator(".live-dur").inner_text().endswith("…")
    child = p.locator(f'#runs tr[data-invocation-id="{ids["failed"]}"] .started-by')
    assert child.inner_text() == f"child of {ids['root'][:8]}"
    assert p.locator("[data-live=on]").count() == 1  # something runs: the table refreshes itself
    p.check('#runs-form input[value="FAILED"]')
    p.click("#runs-form button[type=submit]")
    p.wait_for_load_state("networkidle")
    assert [p.locator("#runs tbody tr").nth(i).get_attribute("data-invocation-id")
            for i in range(p.locator("#runs tbody tr").count())] == [ids["failed"]]
    shot(p, "runs")
    w.clean()
