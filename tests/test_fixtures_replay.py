"""Replaying rustvello 0.9's real OTLP captures yields the histories rustvello lived."""
import httpx
import pytest

from .helpers import PB, fixture_requests


@pytest.fixture
def replayed(server):
    with httpx.Client(timeout=30) as c:
        for sig, body in fixture_requests():
            r = c.post(f"{server.otlp_http}/v1/{sig}", content=body, headers=PB)
            assert r.status_code == 200, r.content
    return server


def _by_task(srv):
    items = srv.get("/invocations", params={"limit": 100}).json()["items"]
    out = {}
    for it in items:
        out.setdefault(it["task_id"].rsplit(".", 1)[-1], []).append(it)
    return out


def test_statuses_and_retries(replayed):
    by = _by_task(replayed)
    assert [i["status"] for i in by["boom"]] == ["FAILED"]
    assert {i["status"] for i in by["add"]} == {"SUCCESS"} and len(by["add"]) == 4
    assert [i["status"] for i in by["parent"]] == ["SUCCESS"]

    boom = by["boom"][0]["invocation_id"]
    hist = replayed.get(f"/invocations/{boom}/history").json()
    assert [h["status"] for h in hist] == ["REGISTERED", "RUNNING", "RETRY", "RUNNING", "RETRY", "RUNNING", "FAILED"]
    assert hist[0]["runner_id"] == "vm-5251"  # the submitter (ExternalRunner)
    assert [h["previous_status"] for h in hist[1:]] == [h["status"] for h in hist[:-1]]

    detail = replayed.get(f"/invocations/{boom}").json()
    assert detail["status"] == "FAILED" and detail["is_final"] is True
    assert [a["attempt"] for a in detail["attempts"]] == [0, 1, 2]
    assert [a["status"] for a in detail["attempts"]] == ["RETRY", "RETRY", "FAILED"]
    assert {a["error_type"] for a in detail["attempts"]} == {"ValueError"}
    assert detail["error"]["type"] == "ValueError"


def test_each_attempt_has_its_trace(replayed):
    boom = _by_task(replayed)["boom"][0]["invocation_id"]
    attempts = replayed.get(f"/invocations/{boom}").json()["attempts"]
    # rustvello: one span per attempt, all in one trace; each attempt its own span.
    assert {a["trace_id"] for a in attempts} == {"a0b781b7f25b9fdb07cec69510edc694"}
    assert [a["span_id"] for a in attempts] == ["66c83f66280f230d", "b5e2cbe9fdf34030", "fdbcebdd1cc72332"]
    trace = replayed.get("/traces/a0b781b7f25b9fdb07cec69510edc694").json()
    spans = [s for rs in trace["resourceSpans"] for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert sorted(s["spanId"] for s in spans) == sorted(a["span_id"] for a in attempts)
    assert all(s["name"] == "rustvello.task.execute" and s["status"]["code"] == 2 for s in spans)
    retry_span = next(s for s in spans if s["spanId"] == "b5e2cbe9fdf34030")
    assert retry_span["links"][0]["spanId"] == "66c83f66280f230d"


def test_workflow_family(replayed):
    by = _by_task(replayed)
    parent = by["parent"][0]["invocation_id"]
    fam = replayed.get(f"/invocations/{parent}/family").json()
    assert fam["root_id"] == parent and fam["truncated"] is False
    children = {e["child"] for e in fam["edges"] if e["parent"] == parent and e["kind"] == "direct"}
    assert children == {i["invocation_id"] for i in by["add"] if i["parent_invocation_id"] == parent}
    assert len(children) == 3
    # Asked from a child, the same tree comes back.
    child = sorted(children)[0]
    assert replayed.get(f"/invocations/{child}/family").json()["root_id"] == parent
    detail = replayed.get(f"/invocations/{child}").json()
    assert detail["workflow"] == {"id": parent, "type": "python::rvapp.parent", "parent_id": parent,
                                  "role": "member"}
    assert replayed.get(f"/invocations/{parent}").json()["workflow"]["role"] == "root"


def test_runners_and_workers(replayed):
    runners = {r["runner_id"]: r for r in replayed.get("/runners").json()}
    main = "4594959a-f51c-46bf-b47b-07fa767a519a"
    assert runners[main]["runner_class"] == "PersistentTokioRunner"
    workers = [r for r in runners.values() if r["parent_runner_id"] == main]
    assert len(workers) == 4 and {w["runner_class"] for w in workers} == {"PersistentTokioWorker"}
    assert runners["vm-5251"]["runner_class"] == "ExternalRunner"
    # Everything stopped at the end of the capture (and it is two days old): nobody is alive.
    assert all(r["stopped_at"] for r in workers) and not any(r["alive"] for r in runners.values())
    detail = replayed.get(f"/runners/{main}").json()
    assert {w["runner_id"] for w in detail["workers"]} == {w["runner_id"] for w in workers}
    assert replayed.get("/runners/nope").status_code == 404


def test_apps_and_sql(replayed):
    apps = replayed.get("/apps").json()
    assert [(a["app_id"], a["invocations"]) for a in apps] == [("demo", 6)]
    r = httpx.post(replayed.api + "/sql", json={"sql": "select count(*) from status_transitions"}).json()
    # 6 REGISTERED + 8 RUNNING + 5 SUCCESS + 3 FAILED + 2 RETRY, as sent.
    assert r == {"columns": ["count_star()"], "rows": [[24]], "truncated": False, "truncated_by": None,
                 "notice": None}


def test_replaying_again_stores_nothing_twice(replayed):
    before = httpx.post(replayed.api + "/sql", json={"sql": "select count(*) from transitions"}).json()["rows"]
    with httpx.Client(timeout=30) as c:
        for sig, body in fixture_requests():
            assert c.post(f"{replayed.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
    after = httpx.post(replayed.api + "/sql", json={"sql": "select count(*) from transitions"}).json()["rows"]
    assert before == after
