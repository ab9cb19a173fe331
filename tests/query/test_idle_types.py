"""/tasks and /workflows list every known task and workflow type: one idle for two days shows with zero
counts in the default window (24 h) and its last run; a busy one keeps its figures."""
import pytest

from tasktrail.proto.emitter import Runner

from .common import NOW, ago, iso

IDLE_AT = ago(2 * 86_400)


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("idle", Runner("idle-runner", "PersistentProcessRunner", hostname="h", pid=7))
    wf = {"workflow_id": "old-wf", "workflow_type": "idle.flow"}
    em.status("old-wf", "REGISTERED", task_id="idle.flow_root", timestamp=IDLE_AT, **wf)
    em.status("old-wf", "SUCCESS", timestamp=ago(2 * 86_400 - 5), **wf)
    em.status("old-task", "REGISTERED", task_id="idle.sleepy", timestamp=ago(2 * 86_400 - 60))
    em.status("old-task", "SUCCESS", timestamp=ago(2 * 86_400 - 59))
    em.status("new-task", "REGISTERED", task_id="idle.busy", timestamp=ago(600))
    em.status("new-task", "SUCCESS", timestamp=ago(599))
    em.flush()
    return local.service(clock=lambda: NOW)


def test_idle_task_listed_with_zero_counts_and_last_run(qs):
    items = {t["task_id"]: t for t in qs.tasks()["items"]}
    assert list(items)[0] == "idle.busy"  # the window's rows first, then the idle ones
    sleepy = items["idle.sleepy"]
    assert (sleepy["invocations"], sleepy["counts_by_status"], sleepy["finished"]) == (0, {}, 0)
    assert sleepy["last_run"] == iso(ago(2 * 86_400 - 60)) and sleepy["app_id"] == "idle"
    assert items["idle.busy"]["invocations"] == 1 and items["idle.busy"]["last_run"] == iso(ago(600))
    assert {t["task_id"] for t in qs.tasks(app="other")["items"]} == set()


def test_idle_workflow_type_listed(qs):
    items = {t["workflow_type"]: t for t in qs.workflow_types()["items"]}
    flow = items["idle.flow"]
    assert (flow["runs"], flow["counts_by_status"], flow["members"]) == (0, {}, 0)
    assert flow["last_run_at"] == iso(IDLE_AT)
    # A window that holds the run counts it as before.
    old = {t["workflow_type"]: t for t in qs.workflow_types(since="-3d")["items"]}
    assert old["idle.flow"]["runs"] == 1


def test_an_idle_task_page_says_its_last_run(qs):
    t = qs.task("idle.sleepy")
    assert (t["invocations"], t["last_run"]) == (0, iso(ago(2 * 86_400 - 60)))
    assert qs.task("idle.busy")["last_run"] == iso(ago(600))
