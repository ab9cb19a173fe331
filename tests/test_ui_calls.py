"""Issue 18's calls in a real headless Chromium (Debian's), on a server filled by a real pynenc 0.4 run
(tests/pn_calls_app.py, memory backends) and an emitter whose call id holds every awkward character: the
invocation page links its call, the call page lists the call's invocations as the API does, the history
table shows each record's runner context (class, host, pid, thread) and the attempts table what each retry
raised; a task page lists its calls."""
import json
import os
import subprocess
from pathlib import Path

import pytest

from tasktrail.proto.emitter import Emitter, Runner
from tasktrail.proto.urlpath import segment

from .helpers import SHOTS, require_chromium, require_python312, start_server, wait_until

require_chromium()
PY312 = require_python312()
pytest.importorskip("playwright.sync_api")
HERE = Path(__file__).resolve().parent
ODD = "odd/call %2F?#é:1"


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    work = tmp_path_factory.mktemp("ui-calls")
    srv = start_server(str(work / "tt.duckdb"), "--ingest-token", "tok123")
    env = {**os.environ, "TASKTRAIL_ENDPOINT": f"http://{srv.otlp_grpc}", "TASKTRAIL_TOKEN": "tok123",
           "PN_KIND": "mem", "PYTHONPATH": str(HERE)}
    proc = subprocess.run([PY312, str(HERE / "pn_calls_app.py")], capture_output=True, text=True, timeout=240,
                          cwd=work, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pn = json.loads(proc.stdout.strip().splitlines()[-1])
    em = Emitter(f"http://{srv.otlp_grpc}", "odd-app", Runner("odd-runner", "ThreadRunner"), token="tok123")
    em.status("odd-inv", "REGISTERED", task_id="odd.task", arguments='{"x": 1}', call_id=ODD)
    assert em.flush()
    em.shutdown()
    wait_until(lambda: all(len(srv.get(f"/invocations/{segment(i)}/history").json()) == len(h["records"])
                           for i, h in pn["histories"].items()) and srv.get(f"/calls/{segment(ODD)}").status_code == 200,
               timeout=30, message="every invocation and the odd call")
    raised = [json.loads(line) for line in (work / "raised-s1.jsonl").read_text().splitlines()]
    yield srv, pn, raised
    srv.stop()


def _cells(page, selector: str) -> list[list[str]]:
    return page.eval_on_selector_all(selector + " tbody tr",
                                     "rows => rows.map(r => [...r.cells].map(c => c.textContent.trim()))")


def test_invocation_page_links_its_call_and_shows_contexts_and_retry_errors(filled, browser):
    srv, pn, raised = filled
    shaky = pn["shaky"]
    call_id = pn["histories"][shaky]["call_id"]
    page = browser.new_page(viewport={"width": 1600, "height": 1200})
    page.goto(f"{srv.web}/invocations/{segment(shaky)}")
    assert page.locator("#inv-call a").inner_text() == call_id
    # The history table: the context columns of each row as the history JSON has them.
    heads = page.eval_on_selector_all("#history thead th", "ths => ths.map(t => t.textContent.trim())")
    col = {h: i for i, h in enumerate(heads)}
    rows = _cells(page, "#history")
    history = srv.get(f"/invocations/{segment(shaky)}/history").json()
    assert [[r[col[k]] for k in ("class", "host", "pid", "thread")] for r in rows] == [
        [h["runner_class"], h["hostname"], str(h["pid"]), str(h["thread_id"])] for h in history]
    retry_errors = [r[col["error"]] for r in rows if r[col["status"]] == "RETRY"]
    assert retry_errors == [f"{e['type']}: {e['message']}" for e in raised]
    # The attempts table: each retry's exception as raised.
    attempts = page.eval_on_selector_all("#attempts tbody tr td.attempt-error", "tds => tds.map(t => t.textContent.trim())")
    assert attempts == [f"{e['type']}: {e['message']}" for e in raised] + [""]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "invocation-history-contexts.png"), full_page=True)
    # The call link opens the call's page: its invocations as the API (and pynenc) have them.
    page.click("#inv-call a")
    page.wait_for_selector("#call-invocations")
    assert page.locator("#call-id").inner_text() == call_id
    shown = page.eval_on_selector_all("#call-invocations tbody tr", "rows => rows.map(r => r.dataset.invocationId)")
    api = srv.get(f"/calls/{segment(call_id)}", params={"app": pn["app_id"]}).json()
    assert shown == [i["invocation_id"] for i in api["invocations"]]
    assert sorted(shown) == pn["calls"][call_id]["invocation_ids"]
    assert page.locator("#call-arguments").inner_text() == pn["calls"][call_id]["arguments"]
    page.screenshot(path=str(SHOTS / "call.png"), full_page=True)
    page.close()


def test_task_page_lists_its_calls_and_odd_call_ids_resolve(filled, browser):
    srv, pn, _ = filled
    twice = next(k for k, c in pn["calls"].items() if len(c["invocation_ids"]) == 2)
    task = pn["calls"][twice]["task_id"]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{srv.web}/tasks/{segment(task)}?since=all&app={pn['app_id']}")
    listed = dict(page.eval_on_selector_all(
        "#task-calls tbody tr", "rows => rows.map(r => [r.dataset.callId, r.cells[1].textContent.trim()])"))
    want = {k: str(len(c["invocation_ids"])) for k, c in pn["calls"].items() if c["task_id"] == task}
    assert listed == want
    page.click(f'#task-calls tr[data-call-id="{twice}"] a')
    page.wait_for_selector("#call-invocations")
    assert page.locator("#call-id").inner_text() == twice
    # A call id with '/', '%', '?', '#' and non-ASCII: its page resolves through the encoded link.
    page.goto(f"{srv.web}/invocations/odd-inv")
    page.click("#inv-call a")
    page.wait_for_selector("#call-invocations")
    assert page.locator("#call-id").inner_text() == ODD
    assert page.eval_on_selector_all("#call-invocations tbody tr", "rows => rows.map(r => r.dataset.invocationId)") == [
        "odd-inv"]
    page.close()
