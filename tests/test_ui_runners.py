"""Issue 17 in a real headless Chromium (Debian's), on a server filled by a real rustvello run, a real pynenc
0.4 app (Python 3.12) and emitter traffic: a runner is shown as its class, host/pid and a short id that tells
rows apart, never cut; the same runner reads the same liveness word on /, /runners, /ops,
/api/v1/anomalies and /metrics; a runner's activity paginates."""
import json
import os
import subprocess
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tasktrail.demo import HERE as APP, PYNENC_RUN
from tasktrail.proto.emitter import Emitter, Runner

from .helpers import SHOTS, require_chromium, require_python312, start_server, wait_until
from .ui_fill import emit_shop, run_rustvello

require_chromium()
PY312 = require_python312()
pytest.importorskip("playwright.sync_api")
parser = pytest.importorskip("prometheus_client.parser")

GONE = Runner("gone-7d1e0c55-91aa", "PersistentProcessRunner", hostname="host-g", pid=77)  # killed, no stop


def emit_gone(srv) -> None:
    """A runner of its own app that heartbeated over an hour ago and never said it stopped: dead."""
    em = Emitter(f"http://{srv.otlp_grpc}", "gone-app", GONE, token="tok123")
    now = datetime.now(timezone.utc)
    em.runner_started(timestamp=now - timedelta(seconds=5000))
    for s in (4020, 4010, 4000):
        em.heartbeat(timestamp=now - timedelta(seconds=s))
    assert em.flush()
    em.shutdown()


def run_pynenc(srv, work) -> dict:
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{srv.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_KIND": "ppr", "PN_DB": str(work / "pn.sqlite"), "PYTHONPATH": str(APP)}
    proc = subprocess.run([PY312, str(PYNENC_RUN)], capture_output=True, text=True, timeout=240, cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui-runners")
    srv = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123", "--runner-dead-after", "600")
    rv = run_rustvello(srv, work, 6)
    pn = run_pynenc(srv, work)
    shop = emit_shop(srv)
    emit_gone(srv)

    def arrived():
        classes = {r["runner_class"] for r in srv.get("/runners").json()}
        return {"PersistentTokioRunner", "PPRWorker", "PersistentProcessRunner"} <= classes and \
            any(r["runner_id"] == GONE.runner_id for r in srv.get("/runners").json())
    wait_until(arrived, timeout=30, message="every runner")
    wait_until(lambda: all(srv.get(f"/invocations/{i}").status_code == 200 for i in pn["histories"]), timeout=30,
               message="pynenc's invocations")
    yield srv, {"rustvello": rv, "pynenc": pn, "shop": shop}
    srv.stop()


def labels(page) -> list[dict]:
    """Every runner label on the page: its id, text, and whether it fits its box."""
    return page.eval_on_selector_all("a.runner-label", """els => els.map(e => ({
        id: e.dataset.runnerId, text: e.textContent.replace(/\\s+/g, ' ').trim(),
        fits: e.scrollWidth <= e.clientWidth && e.clientWidth > 0}))""")


@pytest.mark.parametrize("path", ["/runners", "/invocations?limit=200", "/ops"])
def test_runner_labels_are_distinct_uncut_and_the_real_classes(filled, browser, path):
    srv, _ = filled
    classes = {r["runner_id"]: r["runner_class"] for r in srv.get("/runners").json()}
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(srv.web + path)
    shown = labels(page)
    assert shown, path
    text_of: dict = {}
    for lab in shown:
        assert lab["fits"], (path, lab)  # never cut
        assert text_of.setdefault(lab["id"], lab["text"]) == lab["text"], (path, lab)  # one label per id
        cls = classes.get(lab["id"])
        if cls:
            assert lab["text"].startswith(cls + " "), (path, lab)  # the class as the runner sent it, whole
    assert len(set(text_of.values())) == len(text_of), (path, text_of)  # distinct runners read apart
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"runner-labels{path.split('?')[0].replace('/', '-')}.png"), full_page=True)
    seen = {classes.get(i) for i in text_of}
    if path == "/runners":
        # The classes pynenc and rustvello really send, each whole; pynenc's placeholder `Runner` never.
        assert {"PersistentProcessRunner", "PPRWorker", "ExternalRunner", "PersistentTokioRunner"} <= seen, seen
        assert not any(t.startswith("Runner ") for t in text_of.values()), text_of
        # The JSON twin says the same label.
        assert {r["runner_id"]: r["runner_label"] for r in srv.get("/runners").json()} == text_of
    page.close()


def _metric_states(srv, app: str) -> dict:
    fams = {f.name: f for f in parser.text_string_to_metric_families(httpx.get(srv.web + "/metrics").text)}
    return {s.labels["state"]: s.value for s in fams["tasktrail_runners"].samples if s.labels["app"] == app}


def _word(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("data-state")


def test_one_state_word_everywhere(filled, browser):
    srv, _ = filled
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for rid, app, word in ((GONE.runner_id, "gone-app", "dead"), ("runner-A", "shop", "alive")):
        api = next(r for r in srv.get("/runners").json() if r["runner_id"] == rid)
        assert api["state"] == word
        page.goto(srv.web + "/runners")
        assert _word(page, f'#runners tr[data-runner-id="{rid}"] .badge[data-state]') == word
        page.goto(srv.web + "/")
        assert _word(page, f'tr[data-runner-id="{rid}"] .badge[data-state]') == word
        page.goto(srv.web + "/ops")
        assert _word(page, f'#heartbeats tr[data-runner-id="{rid}"] .badge[data-state]') == word
        named = [a for a in srv.get("/anomalies").json()["items"] if a.get("runner_id") == rid]
        assert all(a["runner_state"] == word for a in named)
        assert [a["kind"] for a in named if a["kind"] == "runner_silent"] == (["runner_silent"] if word == "dead" else [])
        assert wait_until(lambda: _metric_states(srv, app).get(word, 0) >= 1, timeout=15, message="/metrics")
        if word == "dead":  # the anomalies page names it by its label, with its word
            page.goto(srv.web + "/anomalies")
            cell = page.locator(f'td:has(a.runner-label[data-runner-id="{rid}"])').first
            assert cell.locator(".badge[data-state]").get_attribute("data-state") == word
    assert _metric_states(srv, "gone-app") == {"alive": 0, "stopped": 0, "dead": 1, "client": 0}
    # pynenc's runners said they stopped: stopped on /runners and /ops, and never late.
    stopped = [r for r in srv.get("/runners").json() if r["runner_class"] == "PersistentProcessRunner"
               and r["app_id"].startswith("pn-")]
    assert stopped and all(r["state"] == "stopped" for r in stopped)
    page.goto(srv.web + "/ops")
    for r in stopped:
        row = page.locator(f'#heartbeats tr[data-runner-id="{r["runner_id"]}"]')
        if row.count():
            assert row.locator(".badge[data-state]").get_attribute("data-state") == "stopped"
            assert row.locator(".badge.dead", has_text="late").count() == 0
    assert "0 s" not in [t.strip() for t in page.locator("#heartbeats td.every").all_inner_texts()]
    page.close()


def test_runner_activity_paginates(filled, browser):
    srv, _ = filled
    rid = "worker-A1"
    whole = srv.get(f"/runners/{rid}", params={"limit": 1000}).json()["recent_activity"]
    assert len(whole) > 2
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(srv.web + f"/runners/{rid}?limit=2")
    seen = []
    for _ in range(len(whole)):
        rows = page.locator("section.card:has(h2:text('Recent activity')) tbody tr")
        assert rows.count() <= 2
        seen += [r.get_attribute("data-invocation-id") + "/" + r.get_attribute("data-status")
                 for r in rows.all()]
        nxt = page.locator("#next-page")
        if not nxt.count():
            break
        nxt.click()
        page.wait_for_load_state()
    assert seen == [f"{a['invocation_id']}/{a['status']}" for a in whole]
    page.close()


def test_atomic_current_cycle_lists_only_runners_alive(filled, browser):
    srv, _ = filled
    states = {r["runner_id"]: r["state"] for r in srv.get("/runners").json()}
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(srv.web + "/atomic-services")
    in_cycle = page.eval_on_selector_all("#schedule tbody tr td:nth-child(2) a.runner-label",
                                         "els => els.map(e => e.dataset.runnerId)")
    assert "runner-A" in in_cycle  # the shop's runner heartbeats: alive, in the cycle
    assert all(states.get(r, "alive") == "alive" for r in in_cycle), (in_cycle, states)
    decided = {d["runner_id"] for d in srv.get("/atomic-services/decisions", params={"limit": 1000}).json()}
    gone = {r for r in decided if states.get(r) in ("stopped", "dead")}
    assert gone and not gone & set(in_cycle)  # pynenc's runners decided, then stopped: left out
    assert all(lab["fits"] for lab in labels(page))
    page.close()
