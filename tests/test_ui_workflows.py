"""Tasks and workflows in a real headless Chromium: a user ticks 10 runs and compares them; every figure
on the page and in its chart equals the API's; charts come from the vendored uPlot, offline."""
import pytest

from .helpers import SHOTS, chromium, require_chromium, shop_server, wait_until

require_chromium()
pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    srv, _ = shop_server(tmp_path_factory.mktemp("shop-ui"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def page(shop):
    with chromium() as b:
        pg = b.new_page(viewport={"width": 1400, "height": 1000})
        pg.problems, pg.outside = [], []
        pg.on("console", lambda m: pg.problems.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.problems.append(str(e)))
        pg.on("request", lambda r: None if r.url.startswith("http://127.0.0.1") else pg.outside.append(r.url))
        yield pg


def _painted(pg, selector) -> int:
    """Non-blank pixels of the chart's plot canvas."""
    return pg.evaluate("""(sel) => {
        const c = document.querySelector(sel + ' canvas');
        if (!c) return 0;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n; }""", selector)


def test_ten_runs_compared_in_the_browser_match_the_api(shop, page):
    pg = page
    pg.goto(shop.web + "/workflows/shop.checkout")
    boxes = pg.locator("#runs-form input[name=runs]")
    assert boxes.count() == 10
    compare = pg.locator("#runs-form button[type=submit]")
    assert compare.is_disabled()
    for k in range(10):
        boxes.nth(k).check()
    assert compare.is_enabled()
    compare.click()
    pg.wait_for_url("**/workflows/compare?**")
    pg.wait_for_selector("#compare-chart canvas")
    ids = [r.get_attribute("data-workflow-id") for r in pg.locator("#compare-runs tbody tr").all()]
    api = shop.get("/workflows/compare", params=[("runs", i) for i in ids]).json()
    assert sorted(ids) == sorted(f"wf-{k}" for k in range(10))
    for row, run in zip(pg.locator("#compare-runs tbody tr").all(), api["runs"]):
        assert row.get_attribute("data-workflow-id") == run["workflow_id"]
        assert row.locator("[data-figure=duration]").inner_text() == f"{run['duration_s']:.3f}"
        for c in ("REGISTERED", "PENDING", "RUNNING"):
            assert row.locator(f"[data-figure={c.lower()}]").inner_text() == f"{run['time_in'][c]:.3f}"
    assert pg.locator("[data-figure=slowest-duration]").inner_text() == f"{api['slowest']['duration_s']:.3f} s"
    assert pg.locator("[data-figure=slowest-excess]").inner_text() == f"{api['slowest']['excess_s']:.3f} s"
    assert pg.locator("[data-figure=mostly-task]").inner_text() == "shop.ship"
    assert pg.locator("[data-figure=mostly-status]").inner_text() == "pending"
    # The chart: one bar per run, stacked per status; its data are the API's figures.
    drawn = pg.evaluate("""() => { const u = document.getElementById('compare-chart').uplot;
                                   return {x: u.data[0], top: u.data[1], labels: u.series.map(s => s.label)}; }""")
    assert drawn["x"] == list(range(10)) and drawn["labels"][1:] == ["running", "pending", "registered"]
    for k, run in enumerate(api["runs"]):
        assert drawn["top"][k] == pytest.approx(sum(run["time_in"].values()), abs=1e-9)
    assert _painted(pg, "#compare-chart") > 2000
    pg.screenshot(path=str(_shots() / "workflow-compare.png"), full_page=True)
    assert not pg.problems and not pg.outside, (pg.problems, pg.outside)


def test_run_page_histogram_and_timeline(shop, page):
    pg = page
    pg.goto(shop.web + "/workflows/runs/wf-3")
    pg.wait_for_selector("[data-histogram] canvas")
    api = shop.get("/workflows/runs/wf-3").json()
    drawn = pg.evaluate("""() => { const u = document.querySelector('[data-histogram]').uplot;
                                   return {n: u.data[0].length, labels: u.series.slice(1).map(s => s.label)}; }""")
    assert drawn["n"] == len(api["histogram"]["buckets"])
    assert sorted(drawn["labels"]) == sorted(s["task_id"] for s in api["histogram"]["series"])
    assert _painted(pg, "[data-histogram]") > 500
    wait_until(lambda: pg.locator("#run-timeline").get_attribute("data-shown"), message="the run's timeline")
    assert pg.locator("#run-timeline").get_attribute("data-shown") == "4"  # root + 3 members
    assert pg.locator("#members tbody tr").count() == 3
    assert not pg.problems and not pg.outside, (pg.problems, pg.outside)


def test_task_page_charts_and_figures(shop, page):
    pg = page
    pg.goto(shop.web + "/tasks/shop.pay")
    pg.wait_for_selector("#duration-chart canvas")
    api = shop.get("/tasks/shop.pay").json()
    assert pg.locator("[data-figure=invocations]").inner_text() == "40"
    assert pg.locator("[data-figure=p99]").inner_text() == f"{api['duration_s']['p99']:.3f} s"
    assert pg.locator("#duration-chart").get_attribute("data-series") == "p50,p95,p99"
    assert int(pg.locator("#duration-chart").get_attribute("data-points")) == len(api["series"]["t"])
    assert _painted(pg, "#duration-chart") > 500 and _painted(pg, "#throughput-chart") > 500
    assert pg.locator("#errors tbody tr").count() == 2
    pg.goto(shop.web + "/tasks")
    assert pg.locator("#tasks tbody tr").count() == len(shop.get("/tasks").json()["items"])
    pg.locator("#tasks a", has_text="shop.pay").click()
    pg.wait_for_url("**/tasks/shop.pay**")
    assert not pg.problems and not pg.outside, (pg.problems, pg.outside)


def _shots():
    SHOTS.mkdir(parents=True, exist_ok=True)
    return SHOTS
