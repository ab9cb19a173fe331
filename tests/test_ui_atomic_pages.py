"""/atomic-services paginates like /invocations: 50 executions and 50 decisions a page, a next link to
older ones (and a Link header on the API), no row twice, none left out."""
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from tasktrail.proto.emitter import Emitter, Runner

from .helpers import chromium, require_chromium, start_server, wait_until

require_chromium()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = start_server(str(tmp_path_factory.mktemp("atomic") / "tt.duckdb"), "--ingest-token", "tok")
    runners = [Runner(f"asp-{k}", "PersistentProcessRunner", hostname="h", pid=100 + k) for k in range(3)]
    em = Emitter(f"http://{s.otlp_grpc}", "asp", runners[0], token="tok")
    now = datetime.now(timezone.utc)
    for k in range(120):
        t = now - timedelta(seconds=10 * (120 - k))
        em.atomic_decision("assigned" if k % 3 == 0 else "not_assigned_slot", runner=runners[k % 3],
                           cycle_start=t, position=k % 3, runner_count=3, timestamp=t)
        if k % 2 == 0:
            em.atomic_execution(f"asp-run-{k:03d}", "completed", runner=runners[k % 3], start=t,
                                end=t + timedelta(seconds=2), timestamp=t + timedelta(seconds=2))
    em.flush()
    em.shutdown()
    wait_until(lambda: len(httpx.get(s.api + "/atomic-services/decisions", params={"limit": 500}).json()) == 120,
               timeout=20, message="the decisions")
    yield s
    s.stop()


def _follow(first: str) -> list[list]:
    """Every page of an API list, following its Link rel=next headers."""
    pages, url = [], first
    while url:
        r = httpx.get(url)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        link = r.headers.get("link")
        url = link.split(";")[0].strip("<> ") if link else None
    return pages


def test_api_pages_by_link_header(srv):
    pages = _follow(srv.api + "/atomic-services/executions?limit=25")
    assert [len(p) for p in pages] == [25, 25, 10, 0] or [len(p) for p in pages] == [25, 25, 10]
    runs = [r["run_id"] for p in pages for r in p]
    assert runs == sorted({f"asp-run-{k:03d}" for k in range(0, 120, 2)}, reverse=True)
    decisions = [(d["ts"], d["runner_id"]) for p in _follow(srv.api + "/atomic-services/decisions?limit=50") for d in p]
    assert len(decisions) == 120 == len(set(decisions)) and decisions == sorted(decisions, reverse=True)
    assert httpx.get(srv.api + "/atomic-services/decisions", params={"cursor": "junk"}).status_code == 400


def test_page_next_links_walk_every_row(srv):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(srv.web + "/atomic-services?since=all", wait_until="networkidle")
        seen = []
        for _ in range(5):
            rows = page.locator("section:has(h2:text('Decisions')) table tbody tr")
            seen.append(rows.count())
            nxt = page.locator("a.next-decisions")
            if nxt.count() == 0:
                break
            nxt.click()
            page.wait_for_load_state("networkidle")
        assert seen[:3] == [50, 50, 20], seen
        page.goto(srv.web + "/atomic-services?since=all", wait_until="networkidle")
        assert page.locator("a.next-executions").count() == 1  # 60 executions: one more page
        page.locator("a.next-executions").click()
        page.wait_for_load_state("networkidle")
        assert page.locator("section:has(h2:text('Execution windows')) table tbody tr").count() == 10
        assert errors == []
