"""Issue 17, "timeline and charts that fit the data", checked in a real headless Chromium (Debian's) at
1440×900 the way a user would look: against one server filled by a real rustvello run (app "live"), the
shop traffic of tests/ui_fill.py and two minutes of 43 runner contexts (tests/timeline_fill.py, app
"burst"). Measures what is drawn: the canvas's own pixels beside the renderer's list of what it drew."""
import re
from datetime import datetime

import pytest

from .helpers import SHOTS, require_chromium, start_server, wait_until
from .timeline_fill import CLIENT_HOSTS, emit_burst
from .ui_fill import emit_shop, run_rustvello

require_chromium()  # CI installs it (.ci/run); elsewhere the module is skipped, loudly

pytest.importorskip("playwright.sync_api")

W, H = 1440, 900
MIN_BAR_PX = 6      # an instant invocation's bar is at least this wide
MIN_COVER = 0.6     # the data's span takes at least this share of the drawing width


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("tl")
    srv = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123")
    live = run_rustvello(srv, work, 8)
    shop = emit_shop(srv)
    burst = emit_burst(srv)
    wait_until(lambda: all(srv.get(f"/invocations/{i}").status_code == 200 for i in live), message="rustvello data")
    wait_until(lambda: srv.get(f"/invocations/{shop['running']}").status_code == 200, message="shop data")
    wait_until(lambda: srv.get("/timeline", params={"app": "burst", "since": "-1h"}).json()["total"]
               == burst["invocations"], timeout=30, message="burst data")
    yield srv, {"live": live, "shop": shop, "burst": burst}
    srv.stop()


@pytest.fixture
def page(browser):
    """A 1440×900 page that records console errors and page errors."""
    pg = browser.new_page(viewport={"width": W, "height": H})
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    yield pg
    assert pg.errors == [], pg.errors
    pg.close()


def shot(pg, name, full=False):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=full)


def open_timeline(pg, srv, query, obj="TT.timeline"):
    pg.goto(srv.web + query)
    wait_until(lambda: pg.evaluate(f"() => !!(window.{obj} && window.{obj}.rows && window.{obj}.hits.length)"),
               timeout=20, message=f"the timeline of {query} to draw")


# What the canvas shows: its plot area, and the columns and rows where its pixels are coloured (a status
# colour: saturated, unlike the grid, the labels' column and white).
MEASURE = """([obj, sel]) => {
    const tl = eval('window.' + obj), c = document.querySelector(sel);
    const dpr = c.width / c.clientWidth, left = +c.dataset.plotLeft, plotW = +c.dataset.plotWidth;
    const img = c.getContext('2d').getImageData(0, 0, c.width, c.height);
    const sat = (x, y) => { const i = (Math.round(y * dpr) * img.width + Math.round(x * dpr)) * 4, d = img.data;
                            return Math.max(d[i], d[i + 1], d[i + 2]) - Math.min(d[i], d[i + 1], d[i + 2]); };
    let lo = Infinity, hi = -Infinity;
    for (let x = Math.ceil(left); x < left + plotW; x++)
      for (let y = 40; y < c.clientHeight; y += 2) if (sat(x, y) > 80) { lo = Math.min(lo, x); hi = Math.max(hi, x); break; }
    const inv = tl.hits.filter((h) => h.inv);
    return { left, plotW, pixelLo: lo, pixelHi: hi,
             drawnLo: Math.min(...inv.map((h) => h.x0)), drawnHi: Math.max(...inv.map((h) => h.x1)),
             viewSince: c.dataset.viewSince, viewUntil: c.dataset.viewUntil,
             windowSince: c.dataset.windowSince, windowUntil: c.dataset.windowUntil };
}"""


def covered(m) -> tuple[float, float]:
    """Share of the drawing width between the first and the last thing drawn: by pixels, by the hit list."""
    return (m["pixelHi"] - m["pixelLo"]) / m["plotW"], (m["drawnHi"] - m["drawnLo"]) / m["plotW"]


@pytest.mark.parametrize("query", [
    "/timeline?app=live&since=-1h",   # one second of rustvello inside an hour
    "/timeline?app=burst&since=-6h",  # two minutes inside six hours
    "/timeline",                      # the default window, every app
])
def test_timeline_opens_on_the_data_span(filled, page, query):
    srv, _ = filled
    open_timeline(page, srv, query)
    m = page.evaluate(MEASURE, ["TT.timeline", "#timeline"])
    by_pixels, by_hits = covered(m)
    assert by_pixels >= MIN_COVER and by_hits >= MIN_COVER, (query, m)
    # Still inside the window asked for: the x-range is the data's, the query's window bounds it.
    t = {k: datetime.fromisoformat(m[k]) for k in ("windowSince", "viewSince", "viewUntil", "windowUntil")}
    assert t["windowSince"] <= t["viewSince"] < t["viewUntil"] <= t["windowUntil"], m
    api = srv.get("/timeline", params={**dict(re.findall(r"(\w+)=([^&]+)", query.partition("?")[2])),
                                       "since": m["windowSince"], "until": m["windowUntil"]}).json()
    assert page.locator("#timeline-count").inner_text().startswith(f"{api['total']} invocations")
    if "live" in query:
        assert "showing the data's span" in page.locator("#timeline-count").inner_text()
        # Unticking "fit to data" shows the whole hour again: the second of data is a sliver of it.
        page.uncheck("#fit")
        whole = page.evaluate(MEASURE, ["TT.timeline", "#timeline"])
        assert covered(whole)[1] < 0.1 and "fit=0" in page.url
        page.check("#fit")
        assert covered(page.evaluate(MEASURE, ["TT.timeline", "#timeline"]))[1] >= MIN_COVER


def test_instant_bars_have_width_and_connectors_show(filled, page):
    srv, ids = filled
    burst = ids["burst"]
    open_timeline(page, srv, "/timeline?app=burst&since=-6h")
    found = page.evaluate("""([pings, jobs]) => {
        const tl = window.TT.timeline, c = document.getElementById('timeline');
        const g = c.getContext('2d'), dpr = c.width / c.clientWidth;
        const px = (x, y) => Array.from(g.getImageData(Math.floor(x * dpr), Math.floor(y * dpr), 1, 1).data);
        const bars = tl.hits.filter((h) => h.bar && (pings.includes(h.inv) || jobs.includes(h.inv)) && h.b - h.a <= 3);
        return {
          bars: bars.map((h) => ({ inv: h.inv, w: h.x1 - h.x0, mid: px((h.x0 + h.x1) / 2, (h.y0 + h.y1) / 2) })),
          connectors: tl.connectors.map((k) => ({ parent: k.parent, child: k.child, len: k.y1 - k.y0,
                                                   mid: px(k.x, (k.y0 + k.y1) / 2) })),
        }; }""", [burst["pings"], burst["instant_jobs"]])
    # Every ping (3 ms) and every instant job has bars, each at least MIN_BAR_PX wide, inked in its colour.
    assert {b["inv"] for b in found["bars"]} == set(burst["pings"]) | set(burst["instant_jobs"])
    for b in found["bars"]:
        r, g, bl, a = b["mid"]
        assert b["w"] >= MIN_BAR_PX, b
        assert a == 255 and max(r, g, bl) - min(r, g, bl) > 60, b  # a status colour, not the background
    # The workflow's four parent → child connectors: drawn, long enough to see, dark over whatever is under.
    assert sorted(k["child"] for k in found["connectors"]) == sorted(burst["children"])
    for k in found["connectors"]:
        assert k["parent"] == burst["root"] and k["len"] >= 6, k
        r, g, bl, a = k["mid"]
        assert a == 255 and max(r, g, bl) < 90, k
    shot(page, "timeline-burst-collapsed")


def _labels(pg, canvas="#timeline"):
    """The lane labels of the timeline drawn on `canvas`: their text, whether it fits, where they end."""
    return pg.evaluate("""(sel) => {
      const canvas = document.querySelector(sel), cr = canvas.getBoundingClientRect();
      return Array.from(canvas.parentNode.querySelectorAll(':scope > .tl-labels .tl-label')).map((el) => {
        const n = el.querySelector('.tl-name'), sub = el.querySelector('.tl-sub'), r = el.getBoundingClientRect();
        return { kind: el.classList.contains('lane') ? 'lane' : el.classList.contains('header') ? 'header' : 'other',
                 text: n.textContent, title: el.title, scroll: n.scrollWidth, client: n.clientWidth,
                 sub: sub ? sub.textContent : '', subCut: sub ? sub.scrollWidth > sub.clientWidth : false,
                 right: r.right, plotLeft: cr.left + canvas.clientLeft + Number(canvas.dataset.plotLeft),
                 visible: r.width > 0 && r.height > 0 }; }); }""", canvas)


@pytest.mark.parametrize("query", ["/timeline", "/timeline?app=burst&since=-6h&collapse=0"])
def test_lane_labels_are_whole_and_distinct(filled, page, query):
    srv, _ = filled
    open_timeline(page, srv, query)
    api = srv.get("/timeline", params=dict(re.findall(r"(\w+)=([^&]+)", query.partition("?")[2]))).json()
    labels = _labels(page)
    lanes = [lb for lb in labels if lb["kind"] == "lane"]
    assert len(lanes) == int(page.locator("#timeline").get_attribute("data-lanes"))
    texts = [lb["text"] for lb in lanes]
    assert len(set(texts)) == len(texts), texts
    for lb in labels:
        # Not cut: the name's text fits its box, and the box ends left of the plot; at 1440 px the label
        # column has room for the host and pid too.
        assert lb["visible"] and lb["scroll"] <= lb["client"] and not lb["subCut"], lb
        assert lb["right"] <= lb["plotLeft"] + 1, lb
    if "collapse=0" in query:
        assert len(lanes) == len(api["lanes"])
        # Each runner context's label is its whole class name and (the start of) its id.
        for lane in api["lanes"]:
            match = [t for t in texts if t.startswith(f"{lane['runner_class']}(")
                     and lane["runner_id"].startswith(t[len(lane["runner_class"]) + 1:-1])]
            assert len(match) == 1, (lane["runner_id"], texts)
    else:
        classes = {lane["runner_class"] for lane in api["lanes"]}
        assert {"ExternalRunner", "PersistentTokioWorker", "PPRWorker"} <= classes
        for cls in classes:
            assert any(t.startswith(cls + "(") or t.startswith(cls + " ×") for t in texts), (cls, texts)
    shot(page, "timeline-labels" + ("-all-contexts" if "collapse=0" in query else ""), full=True)


def test_short_lived_contexts_collapse_by_host_and_class(filled, page):
    srv, ids = filled
    burst = ids["burst"]
    query = "/timeline?app=burst&since=-6h"
    open_timeline(page, srv, query)
    tl = page.locator("#timeline")
    # 43 contexts do not fit on a 900 px screen: collapsed by default, 40 ExternalRunner lanes → one per host.
    assert tl.get_attribute("data-collapsed") == "on"
    assert tl.get_attribute("data-contexts") == str(burst["contexts"])
    assert tl.get_attribute("data-lanes") == str(burst["collapsed_lanes"])
    assert tl.get_attribute("data-groups") == str(len(CLIENT_HOSTS))
    bar = page.locator("#timeline-wrap .tl-lanes").inner_text()
    assert bar.startswith(f"{burst['collapsed_lanes']} lanes ({burst['contexts']} contexts)"), bar
    assert f"in {len(CLIENT_HOSTS)} collapsed groups" in bar
    lanes = [lb["text"] for lb in _labels(page) if lb["kind"] == "lane"]
    assert sorted(lanes) == sorted([f"PPRWorker(burst-w{k})" for k in range(3)]
                                   + [f"ExternalRunner ×{n} on {h}" for h, n in CLIENT_HOSTS.items()])
    subs = page.locator("#timeline-wrap .tl-label.collapsed .tl-sub").all_inner_texts()
    assert sorted(subs) == ["pid 2000–2023", "pid 2024–2039"]
    # Nothing is lost: every invocation is still drawn.
    drawn = page.evaluate("new Set(window.TT.timeline.hits.filter(h => h.inv).map(h => h.inv)).size")
    assert drawn == burst["invocations"]
    shot(page, "timeline-collapsed")
    # Toggled off: one lane per context, and the choice stays in the URL (a reload keeps it).
    box = page.locator("#timeline-wrap input.tl-collapse")
    assert box.is_checked()
    box.uncheck()
    assert tl.get_attribute("data-collapsed") == "off" and tl.get_attribute("data-lanes") == str(burst["contexts"])
    assert len([lb for lb in _labels(page) if lb["kind"] == "lane"]) == burst["contexts"]
    assert page.locator("#timeline-wrap .tl-lanes").inner_text().startswith(
        f"{burst['contexts']} lanes ({burst['contexts']} contexts)")
    assert "collapse=0" in page.url
    page.reload()
    wait_until(lambda: page.evaluate("() => !!(window.TT.timeline && window.TT.timeline.rows)"), message="reload")
    assert tl.get_attribute("data-collapsed") == "off"
    page.locator("#timeline-wrap input.tl-collapse").check()
    assert tl.get_attribute("data-lanes") == str(burst["collapsed_lanes"]) and "collapse=1" in page.url
    # Few lanes (the shop's four workers): nothing to collapse, one lane each.
    open_timeline(page, srv, "/timeline?app=shop&since=-1h")
    assert tl.get_attribute("data-collapsed") == "off"
    assert tl.get_attribute("data-lanes") == tl.get_attribute("data-contexts")


def test_family_timeline_fits_and_links(filled, page):
    """The invocation page's own timeline: its family over the family's span, connectors to each child."""
    srv, ids = filled
    shop = ids["shop"]
    open_timeline(page, srv, f"/invocations/{shop['root']}", obj="TT.familyTimeline")
    m = page.evaluate(MEASURE, ["TT.familyTimeline", "#family-timeline"])
    assert min(covered(m)) >= MIN_COVER, m
    children = page.evaluate("window.TT.familyTimeline.connectors.map(k => k.child)")
    assert sorted(children) == sorted(shop["kids"])
    labels = _labels(page, "#family-timeline")
    assert {lb["text"] for lb in labels if lb["kind"] == "lane"} == ({"PersistentProcessRunner(runner-A)"}
                                                                       | {f"PPRWorker(worker-A{k})" for k in range(3)})
    for lb in labels:
        assert lb["scroll"] <= lb["client"] and lb["right"] <= lb["plotLeft"] + 1, lb
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("section:has(#family-timeline)").screenshot(path=str(SHOTS / "invocation-family-timeline.png"))


def test_task_chart_over_two_minutes_steps_in_seconds(filled, page):
    srv, ids = filled
    api = srv.get("/tasks/burst.job").json()  # the default window: the last 24 h
    step = api["series"]["step_s"]
    assert step <= 10, step  # two minutes of data, not 24 h of it
    page.goto(srv.web + "/tasks/burst.job")
    page.wait_for_selector("#throughput-chart canvas")
    legend = page.locator("#throughput-chart .u-legend").inner_text()
    assert f"finished per {step} s" in legend and "min" not in legend, legend
    assert page.locator("#throughput-step").inner_text() == f"finished per {step} s"
    assert page.locator("#duration-step").inner_text() == f"per {step} s, by finish time"
    # The x-axis spans the data (about two minutes), not the day.
    xr = page.evaluate("() => { const u = document.getElementById('throughput-chart').uplot;"
                       " return u.scales.x.max - u.scales.x.min; }")
    assert 100 <= xr <= 200, xr
    assert sum(api["series"]["finished"]) == len(ids["burst"]["jobs"])
    shot(page, "task-burst-job")
    # A task of one second (rustvello's add): one-second steps.
    add = next(t["task_id"] for t in srv.get("/tasks").json()["items"] if t["task_id"].endswith(".add"))
    assert srv.get(f"/tasks/{add}").json()["series"]["step_s"] == 1


def test_workflow_histogram_legend_reads_in_seconds(filled, page):
    srv, ids = filled
    page.goto(srv.web + "/workflows/runs/" + ids["burst"]["root"])
    page.wait_for_selector("[data-histogram] canvas")
    api = srv.get("/workflows/runs/" + ids["burst"]["root"]).json()
    size = api["histogram"]["bucket_s"]
    assert size < 60
    heading = page.locator("section:has([data-histogram]) h2").first.inner_text()
    assert re.search(r"buckets of \d+(\.\d)? s\b", heading) and " 0 s" not in heading, heading
    open_timeline(page, srv, "/workflows/runs/" + ids["burst"]["root"], obj="TT.runTimeline")
    assert sorted(page.evaluate("window.TT.runTimeline.connectors.map(k => k.child)")) == sorted(ids["burst"]["children"])
