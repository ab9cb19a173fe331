"""Search (issue 18) in a real headless Chromium: typing `kwargs:order=1234` in the search box of /invocations
and of /runs shows exactly the rows an independent scan of the stored log finds (tests/search_data.py,
pynenc-shaped previews included); the query stays in the URL and in the box; a malformed one is shown
under the box."""
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import pytest

from tasktrail.proto.emitter import Emitter

from .helpers import SHOTS, require_chromium, sql, start_server, wait_until
from .search_data import APP, CASES, RUNNER, SCAN_SQL, emit, scan

require_chromium()
pytest.importorskip("playwright.sync_api")

ROWS = {"/invocations": "table.inv-table tbody tr[data-invocation-id]", "/runs": "#runs tbody tr[data-invocation-id]"}


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("ui-search") / "tt.duckdb"), "--ingest-token", "tok123")
    em = Emitter(f"http://{srv.otlp_grpc}", APP, RUNNER, token="tok123")
    emit(em, datetime.now(timezone.utc))
    em.flush()
    em.shutdown()
    wait_until(lambda: len(srv.get("/runs", params={"since": "all", "limit": 500}).json()["items"]) == len(CASES)
               and not srv.get("/runs", params={"since": "all"}).json()["running"], timeout=30,
               message="the scenario stored")
    rows = []
    for r in sql(srv, SCAN_SQL.replace(" ts,", " epoch_us(ts) AS ts,")):
        d = dict(zip(["invocation_id", "task_id", "status", "ts", "arguments", "result", "error_type",
                      "error_message"], r))
        d["ts"] = datetime(1970, 1, 1) + timedelta(microseconds=d["ts"])
        rows.append(d)
    yield srv, rows
    srv.stop()


@pytest.mark.parametrize("path", list(ROWS))
def test_typing_kwargs_order_finds_exactly_the_right_rows(filled, browser, path):
    srv, rows = filled
    day = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=24)
    expected = scan(rows, "kwargs", "1234", key="order", since=day)
    assert "inv-pynenc" in expected and "inv-old" not in expected  # pynenc's str(Arguments) is found; the window holds
    page = browser.new_page()
    page.goto(srv.web + path)
    assert page.locator(ROWS[path]).count() == len(CASES)  # no search: every row (no window given)
    box = page.locator("#search-q")
    assert "kwargs:order=1234" in page.locator("#search-help").inner_text()
    box.fill("kwargs:order=1234")
    with page.expect_navigation():
        box.press("Enter")
    shown = {tr.get_attribute("data-invocation-id") for tr in page.locator(ROWS[path]).all()}
    assert shown == expected
    assert parse_qs(urlparse(page.url).query)["q"] == ["kwargs:order=1234"]
    assert page.locator("#search-q").input_value() == "kwargs:order=1234"
    assert "read values recorded since" in page.locator("#search-window").inner_text()  # the default 24 h
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"search{path.replace('/', '-')}.png"), full_page=True)
    # Reloading the URL (a shared link) gives the same rows.
    page.reload()
    assert {tr.get_attribute("data-invocation-id") for tr in page.locator(ROWS[path]).all()} == expected
    # A malformed query: the message under the box, the query kept in it.
    page.locator("#search-q").fill('args:"open')
    with page.expect_navigation():
        page.locator("#search-q").press("Enter")
    assert "unclosed quote" in page.locator("#search-error").inner_text()
    assert page.locator("#search-q").input_value() == 'args:"open'
    page.close()
