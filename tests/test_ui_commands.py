"""Abort and Re-run on the invocation page, in Chromium (issue 19): the buttons appear only once an agent of
the app polls, ask for confirmation, and show the command's states live and the links between the original
and its re-run. The agent here is the protocol of docs/control.md written out in a few lines (long-poll with
the ingest token, reports and statuses as tasktrail.v1 over OTLP), as a runner in any language would."""
import threading
import uuid

import httpx
import pytest

from tasktrail.proto.emitter import Emitter

from .helpers import require_chromium, start_server, wait_until

require_chromium()
pytest.importorskip("playwright.sync_api")


class ProtocolAgent(threading.Thread):
    def __init__(self, srv) -> None:
        super().__init__(daemon=True)
        self.srv, self.stop = srv, threading.Event()
        # reports name the runner context it polls as: only the runner a command was delivered to closes it
        self.em = Emitter(srv.otlp_http, "ui", "ui-agent", protocol="http/protobuf", token="tok123",
                          export_interval_ms=50)

    def run(self) -> None:
        while not self.stop.is_set():
            r = httpx.get(self.srv.api + "/agent/commands", params={"app": "ui", "runner": "ui-agent", "wait": 1},
                          headers={"Authorization": "Bearer tok123"}, timeout=30)
            for c in r.json()["commands"]:
                if c["kind"] == "abort":
                    for inv in c["parameters"]["invocations"]:
                        self.em.status(inv, "KILLED", error_type="Aborted")
                    self.em.command(c["command_id"], "done", reason="cancelled")
                else:
                    new = "ui-new-" + uuid.uuid4().hex[:6]
                    self.em.status(new, "REGISTERED", task_id=c["parameters"]["task_id"])
                    self.em.status(new, "SUCCESS", result=1)
                    self.em.command(c["command_id"], "done", new_invocation_id=new)
                self.em.flush()


@pytest.fixture
def srv(tmp_path):
    s = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123")
    em = Emitter(s.otlp_http, "ui", "worker-1", protocol="http/protobuf", token="tok123")
    em.status("ui-run", "REGISTERED", task_id="m.long")
    em.status("ui-run", "RUNNING", attempt=0)
    em.status("ui-bad", "REGISTERED", task_id="m.fail", arguments={"x": 1})
    em.status("ui-bad", "FAILED", error_type="ValueError")
    em.status("wf-r", "REGISTERED", task_id="m.flow", workflow_id="wf-r", workflow_type="m.flow")
    em.status("wf-r", "RUNNING", attempt=0, workflow_id="wf-r")
    em.status("wf-k", "REGISTERED", task_id="m.step", workflow_id="wf-r", workflow_type="m.flow",
              parent_invocation_id="wf-r")
    em.status("wf-k", "PENDING", workflow_id="wf-r")
    em.shutdown()
    wait_until(lambda: s.get("/invocations/ui-bad").status_code == 200 and s.get("/invocations/ui-run").status_code == 200,
               timeout=20, message="the invocations")
    yield s
    s.stop()


def _page(browser):
    """A new page and the list its script errors and console errors go to."""
    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    return page, problems


def test_abort_and_rerun_buttons(srv, browser):
    page, problems = _page(browser)
    page.goto(srv.web + "/invocations/ui-run")
    assert page.locator("#abort-btn").count() == 0 and "no agent" in page.locator("#actions-why").inner_text()
    assert page.locator("#rerun-btn").count() == 0

    agent = ProtocolAgent(srv)
    agent.start()
    try:
        wait_until(lambda: srv.get("/invocations/ui-run/control").json()["abort"], timeout=20, message="the agent seen")
        page.goto(srv.web + "/invocations/ui-run")
        assert page.locator("#rerun-btn").is_hidden()          # unfinished: abort only
        page.click("#abort-btn")
        assert page.locator("#confirm").is_visible()
        page.click("#confirm-yes")
        page.wait_for_selector("#command-list tr[data-state=done]", timeout=20_000)
        # Once it is over (KILLED), Re-run shows in place of Abort, without a reload.
        page.wait_for_selector("#rerun-btn", state="visible", timeout=20_000)
        assert page.locator("#abort-btn").is_hidden()
        (cmd,) = srv.get("/commands", params={"target": "ui-run"}).json()["items"]
        assert [r["state"] for r in srv.get(f"/commands/{cmd['command_id']}").json()["records"]] == \
            ["requested", "delivered", "done"]
        lines = srv.get("/invocations/ui-run/history", params={"commands": "true"}).json()
        assert [h.get("state") or h["status"] for h in lines][-4:] == ["requested", "delivered", "KILLED", "done"] \
            or [h.get("state") or h["status"] for h in lines][-4:] == ["requested", "delivered", "done", "KILLED"]
        assert "command" not in str(srv.get("/invocations/ui-run/history").json())   # statuses only by default
        page.reload()
        assert page.locator("#history tr.command-line").count() == 3     # the command's records in line
        assert page.locator("#history tr[data-status=KILLED]").count() == 1

        page.goto(srv.web + "/invocations/ui-bad")
        assert page.locator("#abort-btn").is_hidden()
        page.click("#rerun-btn")
        page.click("#confirm-no")                              # a change of mind sends nothing
        assert srv.get("/commands", params={"target": "ui-bad"}).json()["items"] == []
        page.click("#rerun-btn")
        page.click("#confirm-yes")
        page.wait_for_selector("#reruns a", timeout=20_000)
        new = page.locator("#reruns a").first.get_attribute("data-invocation-id")
        assert new == srv.get("/invocations/ui-bad").json()["reruns"][0]
        page.click("#reruns a")
        page.wait_for_selector("#rerun-of a")
        assert page.locator("#rerun-of a").get_attribute("data-invocation-id") == "ui-bad"

        page.goto(srv.web + "/workflows/runs/wf-r")                  # the same on a workflow run's page
        assert page.locator("#rerun-btn").is_hidden()
        page.click("#abort-btn")
        assert "workflow run wf-r" in page.locator("#confirm-text").inner_text()
        page.click("#confirm-yes")
        page.wait_for_selector("#command-list tr[data-state=done]", timeout=20_000)
        wait_until(lambda: all(srv.get(f"/invocations/{i}").json()["status"] == "KILLED" for i in ("wf-r", "wf-k")),
                   timeout=20, message="the run's members KILLED")
        assert not problems, problems
    finally:
        agent.stop.set()
        agent.join(10)
        page.close()


def test_row_menus_of_the_runs_tables(srv, browser):
    page, problems = _page(browser)
    page.goto(srv.web + "/runs")
    assert page.locator("#runs tr[data-invocation-id=ui-bad]").count() == 1
    assert page.locator("details.row-menu").count() == 0      # no agent of the app seen: no menu
    agent = ProtocolAgent(srv)
    agent.start()
    try:
        wait_until(lambda: srv.get("/invocations/ui-run/control").json()["abort"], timeout=20, message="the agent seen")
        page.goto(srv.web + "/runs")
        bad, running = (page.locator(f"#runs tr[data-invocation-id={i}]") for i in ("ui-bad", "ui-run"))
        assert bad.locator("button[data-kind=rerun]").count() == 1 and bad.locator("button[data-kind=abort]").count() == 0
        assert running.locator("button[data-kind=abort]").count() == 1 and running.locator("button[data-kind=rerun]").count() == 0
        bad.locator("details.row-menu summary").click()
        bad.locator("button[data-kind=rerun]").click()
        assert "Re-run invocation ui-bad?" in bad.locator(".row-confirm-text").inner_text()
        bad.locator(".row-no").click()                         # a change of mind sends nothing
        assert srv.get("/commands", params={"target": "ui-bad"}).json()["items"] == []
        bad.locator("button[data-kind=rerun]").click()
        bad.locator(".row-yes").click()
        page.wait_for_selector("#runs tr[data-invocation-id=ui-bad] .row-command[data-state=done] a.rerun-as",
                               timeout=20_000)
        new = bad.locator("a.rerun-as").get_attribute("data-invocation-id")
        assert new == srv.get("/invocations/ui-bad").json()["reruns"][0]
        # The re-run's own row links back to the original, on the page and in its JSON twin.
        wait_until(lambda: srv.get("/invocations/" + new).status_code == 200, timeout=20, message="the re-run stored")
        page.goto(srv.web + "/runs")
        assert page.locator(f"#runs tr[data-invocation-id={new}] .rerun-of a").get_attribute("data-invocation-id") == "ui-bad"
        twin = {r["invocation_id"]: r for r in srv.get("/runs").json()["items"]}
        assert twin[new]["rerun_of"] == "ui-bad" and twin["ui-bad"]["rerun_of"] is None
        # Abort from a row of the workflow runs table: the run's unfinished members end KILLED.
        page.goto(srv.web + "/workflows/runs")
        row = page.locator("tr[data-workflow-id=wf-r]")
        row.locator("details.row-menu summary").click()
        row.locator("button[data-kind=abort]").click()
        assert "Abort workflow run wf-r?" in row.locator(".row-confirm-text").inner_text()
        row.locator(".row-yes").click()
        page.wait_for_selector("tr[data-workflow-id=wf-r] .row-command[data-state=done]", timeout=20_000)
        wait_until(lambda: all(srv.get(f"/invocations/{i}").json()["status"] == "KILLED" for i in ("wf-r", "wf-k")),
                   timeout=20, message="the run's members KILLED")
        # A row that is over by the time the click is confirmed shows the server's refusal in the row.
        page.goto(srv.web + "/runs")
        running = page.locator("#runs tr[data-invocation-id=ui-run]")
        running.locator("details.row-menu summary").click()
        running.locator("button[data-kind=abort]").click()
        assert httpx.post(srv.api + "/invocations/ui-run/abort").status_code == 202
        wait_until(lambda: srv.get("/invocations/ui-run").json()["status"] == "KILLED", timeout=20, message="ui-run KILLED")
        running.locator(".row-yes").click()
        page.wait_for_selector("#runs tr[data-invocation-id=ui-run] .row-command .cmd-refused", timeout=10_000)
        assert "only an unfinished one can be aborted" in running.locator(".row-command").inner_text()
        problems[:] = [p for p in problems if "409" not in p]    # the browser logs the refused POST itself
        assert not problems, problems
    finally:
        agent.stop.set()
        agent.join(10)
        page.close()
