"""Issue 17, "pages a user reads every day", in a real headless Chromium (Debian's): one server filled by a
real rustvello run and emitter traffic (app "pages": a task and a workflow type idle for two days, a
family whose tree order differs from its creation order, a lone invocation, one retried twice, a trigger
run by its condition). Asserts what a user checks on /tasks, /workflows, /runs, an invocation's page and
the log explorer, each page free of console errors."""
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import SHOTS, require_chromium, start_server, wait_until
from .ui_fill import run_rustvello

require_chromium()  # CI installs it (.ci/run); elsewhere the module is skipped, loudly

pytest.importorskip("playwright.sync_api")

MANY = 7  # runs of pages.many, paged 3 at a time


def _emit(srv) -> dict:
    now = datetime.now(timezone.utc)
    t = lambda s: now - timedelta(seconds=s)  # noqa: E731
    r = Runner("pages-runner", "PersistentProcessRunner", hostname="hp", pid=5)
    em = Emitter(f"http://{srv.otlp_grpc}", "pages", r, token="tok123")
    old = 2 * 86_400
    em.status("sleepy-1", "REGISTERED", task_id="pages.sleepy", timestamp=t(old))
    em.status("sleepy-1", "SUCCESS", timestamp=t(old - 1))
    em.status("oldflow-1", "REGISTERED", task_id="pages.oldflow_root", workflow_id="oldflow-1",
              workflow_type="pages.oldflow", timestamp=t(old + 60))
    em.status("oldflow-1", "SUCCESS", timestamp=t(old + 50))
    many = []
    for i in range(MANY):
        inv = f"many-{i}"
        many.append(inv)
        em.status(inv, "REGISTERED", task_id="pages.many", timestamp=t(900 - i * 10))
        em.status(inv, "RUNNING", attempt=0, timestamp=t(899 - i * 10))
        em.status(inv, "SUCCESS", timestamp=t(898 - i * 10))
    # A family created root, a, b, then a's child a1 (after b), then b's triggered child: tree order
    # (root, a, a1, b, b-trig) is not creation order. The root ends last, 400 s after it started.
    root, a, b, a1, trig = (f"fam-{k}-{uuid.uuid4().hex[:6]}" for k in ("root", "a", "b", "a1", "trig"))
    em.status(root, "REGISTERED", task_id="pages.root", timestamp=t(700))
    em.status(root, "RUNNING", attempt=0, timestamp=t(699))
    for inv, parent, s in ((a, root, 690), (b, root, 680), (a1, a, 670)):
        em.status(inv, "REGISTERED", task_id="pages." + inv.split("-")[1], parent_invocation_id=parent, timestamp=t(s))
        em.status(inv, "SUCCESS", timestamp=t(s - 5))
    em.trigger_run("tr-pages", trigger_id="on-b-done", task_id="pages.trig", condition_ids=["status:pages.b:SUCCESS"],
                   source_invocation_ids=[b], triggered_invocation_id=trig, logic="and", timestamp=t(660))
    em.status(trig, "REGISTERED", task_id="pages.trig", timestamp=t(659))
    em.status(trig, "SUCCESS", timestamp=t(650))
    em.status(root, "SUCCESS", timestamp=t(300))
    em.status("lone-1", "REGISTERED", task_id="pages.lone", timestamp=t(500))
    em.status("lone-1", "SUCCESS", timestamp=t(499))
    # Retried twice, then failed: each attempt's error.
    em.status("retried-1", "REGISTERED", task_id="pages.flaky", timestamp=t(400))
    for n, (etype, msg, st) in enumerate((("KeyError", "no stock", "RETRY"), ("TimeoutError", "slow bank", "RETRY"),
                                         ("ValueError", "card declined", "FAILED"))):
        em.status("retried-1", "RUNNING", attempt=n, timestamp=t(399 - n * 10))
        em.status("retried-1", st, error_type=etype, error_message=msg, timestamp=t(395 - n * 10))
    em.log("payment failed for order 7", level=40, invocation_id="retried-1", task_id="pages.flaky",
           timestamp=t(370))
    em.shutdown()
    return {"many": many, "family": [root, a, a1, b, trig], "root": root, "a1": a1, "trig": trig,
            "span": (t(700), t(300))}


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("pages")
    srv = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123")
    theirs = run_rustvello(srv, work, 4)
    ids = _emit(srv)
    wait_until(lambda: srv.get("/invocations/retried-1").status_code == 200
               and srv.get(f"/invocations/{ids['trig']}").status_code == 200, message="pages data")
    wait_until(lambda: all(srv.get(f"/invocations/{i}").status_code == 200 for i in theirs), message="rustvello data")
    wait_until(lambda: srv.get("/logs", params={"invocation": "retried-1"}).json()["items"], message="log line")
    yield srv, ids
    srv.stop()


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    pg.errors = []
    pg.on("console", lambda m: pg.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.errors.append(f"pageerror: {e}"))
    yield pg
    assert pg.errors == [], pg.errors
    pg.close()


def shot(pg, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def test_idle_task_and_workflow_type_are_listed(filled, page):
    srv, _ = filled
    page.goto(srv.web + "/tasks")
    row = page.locator('#tasks tr[data-task-id="pages.sleepy"]')
    assert row.count() == 1 and "idle" in row.get_attribute("class")
    assert row.locator("td").nth(2).inner_text() == "0"
    last = row.locator("td.last-run time")
    assert last.get_attribute("datetime").startswith(str((datetime.now(timezone.utc) - timedelta(days=2)).date()))
    wait_until(lambda: "d ago" in row.locator("td.last-run").inner_text(), message="relative time")
    twin = {t["task_id"]: t for t in srv.get("/tasks", params={"format": "json"}).json()["items"]}
    assert twin["pages.sleepy"]["invocations"] == 0 and twin["pages.sleepy"]["last_run"] == last.get_attribute("datetime")
    assert twin["pages.many"]["invocations"] == MANY
    shot(page, "tasks-idle")
    when = last.get_attribute("datetime")
    row.locator("td.task a").click()  # its task page says when it last ran
    page.wait_for_load_state()
    assert page.locator("#task-last-run time").get_attribute("datetime") == when
    page.goto(srv.web + "/workflows")
    wrow = page.locator('#workflow-types tr[data-workflow-type="pages.oldflow"]')
    assert wrow.count() == 1 and wrow.locator("td").nth(2).inner_text() == "0"
    wtwin = {t["workflow_type"]: t for t in srv.get("/workflows", params={"format": "json"}).json()["items"]}
    assert wtwin["pages.oldflow"]["runs"] == 0
    assert wtwin["pages.oldflow"]["last_run_at"] == wrow.locator("td.last-run time").get_attribute("datetime")


def test_runs_pages_by_cursor(filled, page):
    srv, ids = filled
    whole = [r["invocation_id"] for r in srv.get("/runs", params={"task": "pages.many", "limit": 100}).json()["items"]]
    assert sorted(whole) == sorted(ids["many"])
    page.goto(srv.web + "/runs?task=pages.many&limit=3")
    seen, pages = [], 0
    while True:
        pages += 1
        seen += page.eval_on_selector_all("#runs tbody tr", "rs => rs.map(r => r.dataset.invocationId)")
        nxt = page.locator("#next-page")
        if not nxt.count():
            break
        nxt.click()
        page.wait_for_load_state()
    assert seen == whole and pages == 3  # the same rows in order: no overlap, no gap
    # Task names link to their task page; times say how long ago.
    page.goto(srv.web + "/runs?since=-1h")
    link = page.locator('#runs tr[data-invocation-id="many-0"] td.task a')
    assert link.get_attribute("href") == "/tasks/pages.many?app=pages"
    wait_until(lambda: "min ago" in page.locator('#runs tr[data-invocation-id="many-0"]').inner_text(),
               message="relative time")
    # Several apps shown (rustvello's and pages): an app column; one app asked for: none.
    assert "app" in page.eval_on_selector_all("#runs thead th", "ths => ths.map(t => t.textContent)")
    page.goto(srv.web + "/runs?since=-1h&app=pages")
    assert "app" not in page.eval_on_selector_all("#runs thead th", "ths => ths.map(t => t.textContent)")
    page.goto(srv.web + "/invocations?since=-1h")  # the invocations list too
    assert "app" in page.eval_on_selector_all(".inv-table thead th", "ths => ths.map(t => t.textContent)")
    page.goto(srv.web + "/runs?since=-1h&app=pages")
    # A triggered run is shown by its condition, not a hash.
    cond = page.locator(f'#runs tr[data-invocation-id="{ids["trig"]}"] .trigger-cond')
    assert cond.inner_text() == "status:pages.b:SUCCESS"
    shot(page, "runs-paged")
    page.goto(srv.web + "/trigger-runs?app=pages")  # the trigger runs list and the invocation's page say it too
    assert page.locator('#trigger-runs tr[data-trigger-run-id="tr-pages"] .trigger-cond').inner_text() == \
        "status:pages.b:SUCCESS"
    page.goto(srv.web + f"/invocations/{ids['trig']}")
    assert page.locator("#inv-trigger-runs .trigger-cond").inner_text() == "status:pages.b:SUCCESS"


FAMILY_GEOMETRY = """() => {
  const cy = window.TT.cy, boxes = [];
  cy.nodes().forEach((n) => {  // the label's box: right of the node's own body
    const b = n.boundingBox({ includeNodes: false, includeLabels: true });
    boxes.push([n.id(), { x1: Math.max(b.x1, n.position("x") + n.width() / 2 + 1), x2: b.x2, y1: b.y1, y2: b.y2 }]);
  });
  const crossings = [];
  cy.edges().forEach((e) => {
    const pts = [e.sourceEndpoint(), ...(e.segmentPoints() || []), e.targetEndpoint()];
    for (let i = 0; i + 1 < pts.length; i++) {
      for (let k = 0; k <= 20; k++) {
        const x = pts[i].x + (pts[i + 1].x - pts[i].x) * k / 20, y = pts[i].y + (pts[i + 1].y - pts[i].y) * k / 20;
        for (const [id, b] of boxes) if (x > b.x1 + 1 && x < b.x2 - 1 && y > b.y1 + 1 && y < b.y2 - 1) crossings.push([e.id(), id]);
      }
    }
  });
  return { crossings, order: cy.nodes().sort((a, b) => a.position('y') - b.position('y')).map((n) => n.id()),
           width: cy.nodes()[0].renderedWidth() };
}"""


def test_family_list_is_the_tree_and_the_graph_draws_it(filled, page):
    srv, ids = filled
    page.goto(srv.web + f"/invocations/{ids['a1']}")
    page.wait_for_function("() => window.TT && window.TT.cy")
    order = page.eval_on_selector_all("#family-list li", "ls => ls.map(l => l.dataset.invocationId)")
    assert order == ids["family"]  # parent before children, in tree order (not creation order)
    depths = page.eval_on_selector_all("#family-list li", "ls => ls.map(l => +l.dataset.depth)")
    pads = page.eval_on_selector_all("#family-list li", "ls => ls.map(l => parseFloat(getComputedStyle(l).paddingLeft))")
    assert depths == [0, 1, 2, 1, 2] and all(pads[i] < pads[i + 1] for i in (0, 1)) and pads[3] == pads[1]
    geo = page.evaluate(FAMILY_GEOMETRY)
    assert geo["order"] == ids["family"] and geo["crossings"] == []
    legend = page.locator("#edge-legend")
    assert legend.is_visible() and legend.locator('[data-kind="trigger"]').is_visible()
    assert legend.locator('[data-kind="direct"]').inner_text() == "child"
    assert not legend.locator('[data-kind="event"]').is_visible()  # no such edge here
    # The timeline link's window covers the whole family (the root ran until after its children).
    q = parse_qs(urlparse(page.locator("#family-timeline-link").get_attribute("href")).query)
    lo, hi = ids["span"]
    assert _iso(q["since"][0]) <= lo and _iso(q["until"][0]) >= hi
    shot(page, "family-tree")


def test_one_node_family_is_a_small_node(filled, page):
    srv, _ = filled
    page.goto(srv.web + "/invocations/lone-1")
    page.wait_for_function("() => window.TT && window.TT.cy")
    geo = page.evaluate(FAMILY_GEOMETRY)
    assert geo["width"] <= 30, geo  # not a circle filling the box
    assert page.locator("#family-list li").count() == 1 and not page.locator("#edge-legend").is_visible()


def test_family_and_logs_load_after_the_page_shows(filled, page):
    """The page's HTML carries neither the family nor the log lines (Pynmon loads them lazily too); the
    browser fills them from the /family and /logs JSON: the same nodes in tree order with their edge marks,
    pills and links, and each log line with its level, runner and message."""
    srv, ids = filled
    html = httpx.get(srv.web + "/invocations/retried-1", timeout=30).text
    assert '<ol class="family-list" id="family-list"></ol>' in html and "payment failed" not in html
    assert "runner-labels" in html  # the labels the script draws runners with
    page.goto(srv.web + "/invocations/retried-1")
    page.locator('#logs-card[data-loaded="yes"]').wait_for()
    lines = srv.get("/invocations/retried-1/logs").json()
    rows = page.eval_on_selector_all("#inv-logs tbody tr", "rs => rs.map(r => [...r.cells].map(c => c.textContent.trim()))")
    assert [(r[1], r[3]) for r in rows] == [(l["level"], l["message"]) for l in lines] and len(rows) == 1
    assert rows[0][3] == "payment failed for order 7"
    # Its runner as every table of the page draws it (the runner macro's label: class, host/pid, short id).
    rid = lines[0]["worker_id"] or lines[0]["runner_id"]
    link = page.locator("#inv-logs tbody a.runner-label")
    assert link.get_attribute("data-runner-id") == rid and link.get_attribute("href") == "/runners/" + rid
    in_history = page.locator(f'#history a.runner-label[data-runner-id="{rid}"]').first
    assert " ".join(link.inner_text().split()) == " ".join(in_history.inner_text().split())
    assert link.inner_text().startswith("PersistentProcessRunner hp/5")
    assert page.locator("#inv-logs-loading").count() == 0 and page.locator("#inv-logs-empty").count() == 0
    assert page.locator("#inv-logs tbody time").first.get_attribute("datetime") == lines[0]["timestamp"]
    # A family of five, read from its child's page: tree order, depths, the trigger edge's mark, links.
    page.goto(srv.web + f"/invocations/{ids['a1']}")
    page.locator('#family-card[data-loaded="yes"]').wait_for()
    fam = srv.get(f"/invocations/{ids['a1']}/family").json()
    items = page.eval_on_selector_all("#family-list li", """ls => ls.map(l => ({id: l.dataset.invocationId,
        depth: +l.dataset.depth, href: l.querySelector('a.id').getAttribute('href'),
        status: l.querySelector('.pill').textContent, task: l.querySelector('.task').textContent,
        mark: (l.querySelector('.edge-kind') || {}).textContent || ''}))""")
    assert [i["id"] for i in items] == [n["invocation_id"] for n in fam["nodes"]] == ids["family"]
    assert [(i["depth"], i["status"], i["task"]) for i in items] == [(n["depth"], n["status"], n["task_id"])
                                                                     for n in fam["nodes"]]
    assert all(i["href"] == "/invocations/" + i["id"] for i in items)  # plain ids: the path is the id
    assert [i["mark"] for i in items] == ["", "└", "└", "└", "└tr"]
    assert page.locator("#family-count").inner_text() == "5 invocations"
    # A page with no log lines says so once they are read.
    page.locator('#logs-card[data-loaded="yes"]').wait_for()
    assert page.locator("#inv-logs-empty").inner_text() == "No log lines for this invocation yet."


def test_every_attempt_shows_its_error(filled, page):
    srv, _ = filled
    page.goto(srv.web + "/invocations/retried-1")
    cells = page.eval_on_selector_all("#attempts tbody tr td.attempt-error", "ts => ts.map(t => t.textContent.trim())")
    assert cells == ["KeyError: no stock", "TimeoutError: slow bank", "ValueError: card declined"]
    attempts = page.eval_on_selector_all("#history tbody td.attempt", "ts => ts.map(t => t.textContent.trim())")
    assert "" not in attempts and attempts[0] == "0" and attempts[-1] == "2"
    shot(page, "attempt-errors")


def test_log_explorer_says_why_unresolved_and_marks_errors(filled, page):
    srv, _ = filled
    line = srv.get("/logs", params={"invocation": "retried-1"}).json()["items"][0]
    unknown = "00000000-0000-4000-8000-0000000000aa"
    text = (f"{line['timestamp']} ERROR    pynenc.x [{'pages-runner'}:retried-1:pages.flaky] payment failed\n"
            f"2026-11-22 10:25:22.648+00:00 INFO     pynenc.x something about invocation:{unknown}")
    page.goto(srv.web + "/log-explorer")
    page.fill("#explorer-text", text)
    page.click("#explorer-run")
    page.locator("#explorer-lines tbody tr").nth(1).wait_for()
    rows = page.locator("#explorer-lines tbody tr")
    assert "lvl-ERROR" in (rows.nth(0).get_attribute("class") or "")
    assert "lvl-ERROR" not in (rows.nth(1).get_attribute("class") or "")
    bad = rows.nth(1).locator(".ref-unresolved")
    assert bad.count() >= 1 and bad.first.locator(".reason").inner_text() == "not in this store"
    chip = bad.first.locator(".chip")
    assert page.evaluate("(el) => getComputedStyle(el).textDecorationLine", chip.element_handle()) == "none"
    box = chip.bounding_box()
    assert box["height"] < 24  # the long id on one line
    shot(page, "log-explorer-unresolved")


def test_ever_had_status_filter_on_the_list_and_the_runs_table(filled, page):
    """'status is ever (in its history)': retried-1, FAILED now, is found among invocations that ever
    RETRYed; with 'now' it is not, and the choice stays selected."""
    srv, _ = filled
    for path, row in (("/invocations", "table tbody tr"), ("/runs", "#runs tbody tr")):
        page.goto(srv.web + path + "?status=RETRY&since=all")
        assert page.locator("tr[data-invocation-id='retried-1'], a[href='/invocations/retried-1']").count() == 0
        page.select_option("select[name=status_mode]", "history")
        page.locator("form button[type=submit], form input[type=submit]").first.click()
        page.wait_for_load_state("networkidle")
        assert "status_mode=history" in page.url
        assert page.locator("tr[data-invocation-id='retried-1'], a[href='/invocations/retried-1']").count() >= 1
        assert page.eval_on_selector("select[name=status_mode]", "s => s.value") == "history"
        api = srv.get(path.replace("/", "/", 1), params={"status": "RETRY", "status_mode": "history",
                                                         "since": "all"}).json()["items"]
        assert "retried-1" in {i["invocation_id"] for i in api}
