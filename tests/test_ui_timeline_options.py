"""Issue 18's timeline options in a real headless Chromium (Debian's) at 1440×900, on a live server fed the
minute of tests/timeline_options_fill.py: each option toggled on the page lands in the URL, survives a
reload and changes what is drawn — the atomic-service lane, system tasks, resolution, the occupancy's
Registered / Pending / Running toggles — the histogram's stacks are the API's series per task (by the
renderer's list and by the canvas's pixels), and "max N in flight" is the API's true peak."""
import pytest

from .helpers import SHOTS, require_chromium, start_server, wait_until
from .timeline_options_fill import emit_opts, wait_stored

require_chromium()
pytest.importorskip("playwright.sync_api")

W, H = 1440, 900


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("tlui") / "tt.duckdb"), "--ingest-token", "tok123")
    sent = emit_opts(srv)
    window = wait_stored(srv, sent)
    yield srv, sent, window
    srv.stop()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": W, "height": H})
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    yield pg
    assert pg.errors == [], pg.errors
    pg.close()


def _query(window) -> str:
    from urllib.parse import urlencode
    return "/timeline?" + urlencode(window)


def _loaded(pg, **options):
    """Wait until the page drew an answer whose `options` hold `options` (the API's names and values)."""
    probe = "() => { const d = window.TT.timeline && window.TT.timeline.data; return d && d.options ? d.options : null; }"
    wait_until(lambda: (o := pg.evaluate(probe)) is not None and all(o.get(k) == v for k, v in options.items())
               and pg.evaluate("() => window.TT.timeline.hits.length > 0"), timeout=20, message=f"a timeline with {options}")


def _state(pg) -> dict:
    """What the page shows: the atomic rows, invocations drawn, the occupancy as drawn, the label, the ticks."""
    return pg.evaluate("""() => {
      const tl = window.TT.timeline, occ = document.getElementById('occupancy');
      const g = occ.getContext('2d'), dpr = occ.width / occ.clientWidth;
      const px = (x, y) => Array.from(g.getImageData(Math.round(x * dpr), Math.round(y * dpr), 1, 1).data);
      const hex = (c) => '#' + c.slice(0, 3).map((v) => v.toString(16).padStart(2, '0')).join('');
      return {
        atomicRows: tl.rows.filter((r) => r.kind === 'atomic').length,
        invs: Array.from(new Set(tl.hits.filter((h) => h.inv).map((h) => h.inv))),
        drawn: occ.drawn.map((d) => ({ bucket: d.bucket, task: d.task, count: d.count,
                                       ink: (d.x1 - d.x0 >= 2 && d.y1 - d.y0 >= 2) ? hex(px((d.x0 + d.x1) / 2, (d.y0 + d.y1) / 2)) : null,
                                       color: window.TT.taskColor(d.task) })),
        categories: occ.dataset.categories, peak: occ.dataset.peak,
        info: document.getElementById('occupancy-info').textContent,
        legend: Array.from(document.querySelectorAll('#occupancy-legend span')).map((s) => s.dataset.task),
        tickMs: Number(document.getElementById('timeline').dataset.tickMs),
        bucketMs: Number(occ.dataset.bucketMs),
        count: document.getElementById('timeline-count').textContent,
        boxes: { system: document.getElementById('show-system').checked, atomic: document.getElementById('show-atomic').checked,
                 resolution: document.getElementById('resolution').value,
                 cats: Array.from(document.querySelectorAll('#hist-toggles input')).filter((b) => b.checked).map((b) => b.dataset.category) },
      }; }""")


def _api(srv, window, **options) -> dict:
    return srv.get("/timeline", params={**window, **options}).json()


def _stacks_match(state, occ):
    """The drawn stacks are the API's series: bucket by bucket, task by task, busiest at the bottom, each in its colour."""
    want = [(k, s["task_id"], s["counts"][k]) for k in range(len(occ["buckets"])) for s in occ["series"] if s["counts"][k]]
    assert [(d["bucket"], d["task"], d["count"]) for d in state["drawn"]] == want
    inked = [d for d in state["drawn"] if d["ink"]]  # rects of at least 2 × 2 px, their middle pixel
    assert {d["task"] for d in inked} >= {s["task_id"] for s in occ["series"][:2]}
    for d in inked:
        assert d["ink"] == d["color"].lower(), d
    assert state["legend"] == [s["task_id"] for s in occ["series"]]
    assert state["bucketMs"] == pytest.approx(occ["bucket_s"] * 1000)


def test_histogram_stacks_per_task_and_the_true_peak(filled, page):
    srv, _, window = filled
    page.goto(srv.web + _query(window))
    _loaded(page, show_system=True)
    api = _api(srv, window)
    st = _state(page)
    _stacks_match(st, api["occupancy"])
    assert len({d["task"] for d in st["drawn"]}) >= 3  # stacked by task
    peak = api["occupancy"]["peak"]
    assert st["info"].startswith(f"max {peak['in_flight']} in flight") and st["peak"] == str(peak["in_flight"])
    assert peak["in_flight"] < api["occupancy"]["max"]  # a bucket's stack is not what was in flight at once
    # Hovering the tallest stack names its tasks' counts.
    top = max(st["drawn"], key=lambda d: d["count"])
    box = page.locator("#occupancy").bounding_box()
    rect = page.evaluate("(i) => { const d = document.getElementById('occupancy').drawn[i]; return [d.x0, d.x1, d.y0, d.y1]; }",
                         st["drawn"].index(top))
    page.mouse.move(box["x"] + (rect[0] + rect[1]) / 2, box["y"] + (rect[2] + rect[3]) / 2)
    title = page.locator("#occupancy").get_attribute("title")
    for d in st["drawn"]:
        if d["bucket"] == top["bucket"]:
            assert f"{d['task']}: {d['count']}" in title, title
    page.locator("section, body").first.screenshot(path=str(_shot("timeline-options")))


def _shot(name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS / f"{name}.png"


def test_status_toggles_change_the_series_and_stay_in_the_url(filled, page):
    srv, _, window = filled
    page.goto(srv.web + _query(window))
    _loaded(page)
    before = _state(page)
    assert before["boxes"]["cats"] == ["pending", "running"] and before["categories"] == "pending,running"
    page.check("#hist-toggles input[data-category=registered]")
    _loaded(page, histogram_status=["registered", "pending", "running"])
    assert "histogram_status=registered%2Cpending%2Crunning" in page.url
    three = _state(page)
    _stacks_match(three, _api(srv, window, histogram_status="registered,pending,running")["occupancy"])
    assert three["categories"] == "registered,pending,running" and "registered" in three["info"]
    page.uncheck("#hist-toggles input[data-category=pending]")
    page.uncheck("#hist-toggles input[data-category=running]")
    _loaded(page, histogram_status=["registered"])
    only = _state(page)
    api = _api(srv, window, histogram_status="registered")["occupancy"]
    _stacks_match(only, api)
    assert only["categories"] == "registered" and only["info"].startswith(f"max {api['peak']['in_flight']} in flight")
    assert only["drawn"] != before["drawn"] and only["peak"] != before["peak"]
    page.reload()
    _loaded(page, histogram_status=["registered"])
    again = _state(page)
    assert again["boxes"]["cats"] == ["registered"] and again["drawn"] == only["drawn"]  # colours too
    page.uncheck("#hist-toggles input[data-category=registered]")
    _loaded(page, histogram_status=[])
    assert _state(page)["drawn"] == [] and "histogram_status=&" in page.url + "&"


def test_system_tasks_and_atomic_lane_hide_and_stay_hidden(filled, page):
    srv, sent, window = filled
    page.goto(srv.web + _query(window))
    _loaded(page, show_system=True, show_atomic_service=True)
    st = _state(page)
    assert st["atomicRows"] == 1 and set(sent["system"]) | set(sent["others"]) <= set(st["invs"])
    assert st["boxes"]["system"] and st["boxes"]["atomic"]
    page.uncheck("#show-atomic")
    _loaded(page, show_atomic_service=False)
    assert "show_atomic_service=0" in page.url and _state(page)["atomicRows"] == 0
    page.uncheck("#show-system")
    _loaded(page, show_system=False)
    assert "show_system=0" in page.url
    st = _state(page)
    assert set(st["invs"]).isdisjoint(sent["system"]) and set(sent["others"]) <= set(st["invs"])
    assert f"{len(sent['system'])} system-task invocations hidden" in st["count"]
    _stacks_match(st, _api(srv, window, show_system="0", show_atomic_service="0")["occupancy"])
    page.locator("body").screenshot(path=str(_shot("timeline-options-hidden")))
    page.reload()
    _loaded(page, show_system=False, show_atomic_service=False)
    st = _state(page)
    assert not st["boxes"]["system"] and not st["boxes"]["atomic"] and st["atomicRows"] == 0
    assert set(st["invs"]).isdisjoint(sent["system"])
    page.check("#show-system")
    page.check("#show-atomic")
    _loaded(page, show_system=True, show_atomic_service=True)
    st = _state(page)
    assert "show_system" not in page.url and "show_atomic_service" not in page.url
    assert st["atomicRows"] == 1 and set(sent["system"]) <= set(st["invs"])


def test_resolution_sets_ticks_and_buckets_and_stays_in_the_url(filled, page):
    srv, _, window = filled
    page.goto(srv.web + _query(window))
    _loaded(page, resolution="auto")
    auto = _state(page)
    page.select_option("#resolution", "30s")
    _loaded(page, resolution="30s")
    assert "resolution=30s" in page.url
    st = _state(page)
    assert st["tickMs"] == 30000 and st["bucketMs"] == 30000 and st["tickMs"] != auto["tickMs"]
    _stacks_match(st, _api(srv, window, resolution="30s")["occupancy"])
    page.reload()
    _loaded(page, resolution="30s")
    assert _state(page)["boxes"]["resolution"] == "30s"
    page.select_option("#resolution", "1s")  # finer than 110 px between labels allow: ticks coarsen, buckets follow
    _loaded(page, resolution="1s")
    st = _state(page)
    assert st["bucketMs"] == 1000 and st["tickMs"] >= 1000
    page.select_option("#resolution", "auto")
    _loaded(page, resolution="auto")
    assert "resolution" not in page.url and _state(page)["tickMs"] == auto["tickMs"]
