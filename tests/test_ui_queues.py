"""Issue 18, /queues in a real headless Chromium (Debian's): a queue nobody consumes is flagged, each row
shows the depth /api/v1/queues holds and draws the series the API gives (read back from the chart), and the
page is in the nav. Filled over OTLP by the tasktrail.v1 emitter (a runner's heartbeats and depth reports)."""
import time

import httpx
import pytest

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import SHOTS, require_chromium, start_server, wait_until

require_chromium()
pytest.importorskip("playwright.sync_api")

APP = "ui-queues"
W = Runner("ui-q-worker-1", "ThreadRunner", hostname="host-q", pid=41)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui-queues")
    server = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123")
    em = Emitter(f"http://{server.otlp_grpc}", APP, token="tok123")
    now = time.time()
    for k in range(20):  # a report every 30 s over the last 10 minutes
        t = now - 600 + 30 * k
        em.queue_depth("default", (k * 5) % 9, consumers=[W.runner_id], runner=W, timestamp=t)
        em.queue_depth("reports", k + 1, runner=W, timestamp=t)  # grows: nobody consumes it
    em.heartbeat(W, consumed_queues=["default"])
    assert em.flush()
    em.shutdown()
    wait_until(lambda: len(server.get("/queues", params={"app": APP}).json()["queues"]) == 2, timeout=30,
               message="both queues stored")
    yield server
    server.stop()


def test_queues_page_flags_and_draws_what_the_api_holds(srv, browser):
    api = {q["queue"]: q for q in srv.get("/queues", params={"app": APP}).json()["queues"]}
    assert api["reports"]["unconsumed"] and not api["default"]["unconsumed"]
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(srv.web + "/")
    page.click("header nav a[href^='/queues']")
    page.wait_for_url("**/queues*")
    page.goto(srv.web + f"/queues?app={APP}")
    page.wait_for_function("document.querySelectorAll('.queue-chart').length === 2 && "
                           "[...document.querySelectorAll('.queue-chart')].every(e => e.uplot)")
    rows = page.eval_on_selector_all("#queues > tbody > tr", """rs => rs.map(r => ({
        queue: r.dataset.queue, depth: Number(r.dataset.depth), shown: r.querySelector('td.num').textContent.trim(),
        flag: !!r.querySelector('[data-flag=unconsumed]'), consumers: r.querySelector('.consumers').textContent,
        drawn: r.querySelector('.queue-chart').uplot.data[1]}))""")
    got = {r["queue"]: r for r in rows}
    assert set(got) == {"default", "reports"}
    for name, q in api.items():
        assert got[name]["depth"] == q["depth"] and got[name]["shown"] == str(q["depth"])
        assert got[name]["flag"] == q["unconsumed"]
        assert got[name]["drawn"] == q["series"]["depth"]  # the chart holds the API's series
    assert "nobody consumes this queue" in page.inner_text("tr[data-queue=reports]")
    assert W.runner_id in page.inner_html("tr[data-queue=default] .consumers")
    assert page.inner_text("#unconsumed-note").strip().startswith("nobody consumes")
    assert page.get_attribute("header nav a[aria-current=page]", "href").startswith("/queues")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "queues.png"), full_page=True)
    # The page's JSON twin is the API's answer.
    twin = httpx.get(srv.web + f"/queues?app={APP}&format=json", timeout=30).json()
    assert [q["queue"] for q in twin["queues"]] == sorted(api)
    page.close()


def test_queues_bad_window_is_a_clear_400(srv):
    for path in ("/api/v1/queues", "/queues", "/api/v1/queues/default"):
        r = httpx.get(srv.web + path, params={"since": "not-a-time"}, timeout=30)
        assert r.status_code == 400 and "since" in r.json()["error"]["message"], (path, r.text)
    r = httpx.get(srv.api + "/queues/no-such-queue", timeout=30)
    assert r.status_code == 404 and r.json()["error"]["status"] == 404
