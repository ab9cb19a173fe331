"""query/invocations.py over tests/ui_fill.py's `shop` scenario (a workflow root, six children: one failed,
one still running; a trigger run) plus one invocation retried once with a 10 KB argument list."""
import json

import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest, NotFound

from ..ui_fill import emit_shop
from .common import NOW, ago, iso

BIG = {"items": ["x" * 100] * 100}  # 10 KB of JSON: its preview is cut


@pytest.fixture(scope="module")
def shop(local):
    ids = emit_shop(None, connect=local.emitter, now=ago(0))
    em = local.emitter("shop", Runner("worker-R", "PPRWorker", hostname="host-r", pid=31))
    em.status("retried", "REGISTERED", task_id="shop.pay", arguments=BIG, timestamp=ago(100))
    em.status("retried", "RUNNING", attempt=0, timestamp=ago(99))
    em.status("retried", "RETRY", error_type="KeyError", error_message="no stock", timestamp=ago(98))
    em.status("retried", "RUNNING", attempt=1, timestamp=ago(97))
    em.status("retried", "SUCCESS", result={"paid": True}, timestamp=ago(95))
    em.shutdown()
    return local.service(clock=lambda: NOW), ids


def test_list_filters_by_status_task_runner_and_text(shop):
    qs, ids = shop
    assert [i["invocation_id"] for i in qs.invocations(status=["failed"])["items"]] == [ids["failed"]]
    kids = ids["kids"]
    assert [i["invocation_id"] for i in qs.invocations(task="shop.step0")["items"]] == [kids[3], kids[0]]
    # Children k even ran on worker-A1 (newest first).
    assert [i["invocation_id"] for i in qs.invocations(runner="worker-A1")["items"]] == [kids[4], kids[2], kids[0]]
    assert [i["invocation_id"] for i in qs.invocations(q="STEP2")["items"]] == [kids[5], kids[2]]
    assert qs.invocations(status=["RUNNING,PENDING"])["items"][0]["invocation_id"] == ids["running"]


def test_list_summary_shape(shop):
    qs, ids = shop
    failed = qs.invocations(status=["FAILED"])["items"][0]
    assert failed == {
        "invocation_id": ids["failed"], "app_id": "shop", "task_id": "shop.step0", "status": "FAILED",
        "is_final": True, "parent_invocation_id": ids["root"], "workflow_id": ids["root"],
        "workflow_type": "shop.flow", "runner_id": "runner-A", "worker_id": "worker-A2", "attempts": 1,
        "created_at": iso(ago(294)), "updated_at": iso(ago(260)), "duration_s": 34.0}


def test_pages_follow_the_cursor_in_every_sort(shop):
    qs, _ = shop
    for sort in ("-created_at", "created_at", "-updated_at", "task_id", "-status"):
        whole = [i["invocation_id"] for i in qs.invocations(sort=sort, limit=100)["items"]]
        assert len(whole) == 8
        got, cursor = [], None
        while True:
            page = qs.invocations(sort=sort, limit=3, cursor=cursor)
            got += [i["invocation_id"] for i in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert got == whole, sort
    since = qs.invocations(since=iso(ago(296)), until=iso(ago(293)), sort="created_at")["items"]
    assert [i["created_at"] for i in since] == [iso(ago(296)), iso(ago(295)), iso(ago(294))]


def test_bad_parameters_are_bad_requests(shop):
    qs, _ = shop
    for kwargs, message in (({"status": ["DONE"]}, "unknown status 'DONE'"),
                            ({"limit": 0}, "limit must be between 1 and 1000, got 0"),
                            ({"cursor": "garbage"}, "cursor is not one this server issued"),
                            ({"sort": "size"}, "sort must be one of"),
                            ({"since": "yesterday"}, "since is not an RFC 3339 time")):
        with pytest.raises(BadRequest, match=message):
            qs.invocations(**kwargs)


def test_detail_of_a_failed_member(shop):
    qs, ids = shop
    d = qs.invocation(ids["failed"])
    assert (d["status"], d["is_final"], d["task_id"], d["duration_s"]) == ("FAILED", True, "shop.step0", 34.0)
    assert d["workflow"] == {"id": ids["root"], "type": "shop.flow", "parent_id": None, "role": "member"}
    assert d["error"] == {"type": "KeyError", "message": "'sku'",
                          "traceback": "Traceback (most recent call last):\nKeyError: 'sku'"}
    assert d["attempts"] == [{"attempt": 0, "runner_id": "runner-A", "worker_id": "worker-A2",
                              "started_at": iso(ago(265)), "ended_at": iso(ago(260)), "status": "FAILED",
                              "trace_id": None, "span_id": None, "error_type": "KeyError",
                              "error_message": "'sku'"}]
    assert d["links"] == {"trace": None, "jaeger": None, "tempo": None}
    assert qs.invocation(ids["root"])["workflow"]["role"] == "root"
    with pytest.raises(NotFound):
        qs.invocation("nope")
    with pytest.raises(NotFound):
        qs.invocation(ids["failed"], app="another-app")


def test_history_and_attempts_of_a_retried_invocation(shop):
    qs, _ = shop
    h = qs.history("retried")
    assert [(x["status"], x["attempt"]) for x in h] == [("REGISTERED", None), ("RUNNING", 0), ("RETRY", None),
                                                        ("RUNNING", 1), ("SUCCESS", None)]
    assert [x["timestamp"] for x in h] == [iso(ago(s)) for s in (100, 99, 98, 97, 95)]
    assert all(x["clock_adjustment_s"] is None and x["sent_timestamp"] == x["timestamp"] for x in h)
    d = qs.invocation("retried")
    assert [(a["attempt"], a["status"], a["error_type"]) for a in d["attempts"]] == [(0, "RETRY", "KeyError"),
                                                                                     (1, "SUCCESS", None)]
    assert d["result"] == '{"paid": true}' and d["error"]["type"] == "KeyError"


def test_huge_argument_is_previewed_and_downloads_whole(shop):
    qs, _ = shop
    d = qs.invocation("retried")
    whole = json.dumps(BIG).encode()
    described = d["values"]["arguments"]
    assert described == {"bytes": len(whole), "preview_bytes": 4096, "truncated": True,
                         "url": "/api/v1/invocations/retried/values/arguments"}
    assert d["arguments"] == whole[:4096].decode()
    assert qs.invocation_value("retried", "arguments") == (whole, True)
    assert qs.invocation_value("retried", "error_message") == (b"no stock", False)
    with pytest.raises(NotFound, match="has no error traceback"):
        qs.invocation_value("retried", "error_traceback")
    with pytest.raises(NotFound):
        qs.invocation_value("retried", "password")


def test_runs_say_how_each_was_started(shop):
    qs, ids = shop
    runs = {r["invocation_id"]: r for r in qs.runs(limit=100)["items"]}
    assert runs[ids["root"]]["started_by"] == {"kind": "submitted", "ref": None}
    by = runs[ids["kids"][0]]["started_by"]
    assert {k: by[k] for k in ("kind", "ref", "trigger_run_id")} == {"kind": "trigger", "ref": "tr-1",
                                                                     "trigger_run_id": "tr-1"}
    assert runs[ids["kids"][1]]["started_by"] == {"kind": "child", "ref": ids["root"]}
    assert runs["retried"]["attempts"] == 2 and runs["retried"]["retried"] is True
    assert runs["retried"]["duration_s"] == 4.0  # from its first RUNNING
    slowest = qs.runs(sort="-duration_s", limit=1)
    assert slowest["items"][0]["invocation_id"] == ids["root"] and slowest["running"] is False
    assert [r["invocation_id"] for r in qs.runs(status=["FAILED"])["items"]] == [ids["failed"]]
    with pytest.raises(BadRequest, match="sort must be one of -started_at, started_at"):
        qs.runs(sort="size")


def test_invocation_page_puts_detail_history_family_logs_and_trigger_runs_together(shop):
    qs, ids = shop
    kid = ids["kids"][0]
    page = qs.invocation_page(kid)
    assert {k: page[k] for k in ("status", "task_id")} == {"status": "SUCCESS", "task_id": "shop.step0"}
    assert page["history"] == qs.history(kid)
    assert page["family"] == qs.family(kid) and page["family"]["root_id"] == ids["root"]
    assert page["logs"] == [] and [t["trigger_run_id"] for t in page["trigger_runs"]] == ["tr-1"]
    # The HTML page's read (it loads the family and the logs after it shows): the same, less those two.
    lean = qs.invocation_page(kid, parts=False)
    assert lean == {k: v for k, v in page.items() if k not in ("family", "logs")}
    with pytest.raises(NotFound):
        qs.invocation_page("nope")
    with pytest.raises(NotFound):
        qs.invocation_page("nope", parts=False)


@pytest.mark.parametrize("sort", [None, "started_at", "-duration_s", "task_id"])
def test_runs_pages_follow_the_cursor(shop, sort):
    """Pages of 2 in every sort: the same rows as one page, in the same order, none twice, none missed."""
    qs, _ = shop
    whole = [r["invocation_id"] for r in qs.runs(sort=sort, limit=100)["items"]]
    seen, cursor = [], None
    while True:
        page = qs.runs(sort=sort, limit=2, cursor=cursor)
        seen += [r["invocation_id"] for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == whole and len(set(seen)) == len(seen) and len(whole) > 4
    with pytest.raises(BadRequest, match="cursor"):
        qs.runs(sort=sort, cursor="bm9wZQ")


def test_a_runs_cursor_holding_what_no_sort_key_can_be_is_a_bad_request(shop):
    from tasktrail.query.params import encode_cursor
    qs, _ = shop
    for values in ([True, "x"], [10 ** 40, "x"], [float("inf"), "x"], [{"a": 1}, "x"]):
        with pytest.raises(BadRequest, match="cursor"):
            qs.runs(sort="-duration_s", cursor=encode_cursor(values))


@pytest.mark.parametrize("status", ["RETRY", "RUNNING", "FAILED", "REGISTERED"])
def test_ever_had_status_matches_a_scan_of_the_log(shop, status):
    """status_mode=history: every invocation whose history holds the status (as a scan of every transition
    finds them), on the list and the runs table; the default still filters by the current status."""
    qs, _ = shop
    scanned = {r[0] for r in qs.log.query("SELECT DISTINCT invocation_id FROM transitions WHERE status = ?",
                                          [status], max_rows=10_000).rows}
    listed = {i["invocation_id"] for i in qs.invocations(status=[status], status_mode="history", limit=1000)["items"]}
    assert listed == scanned and scanned
    ran = {r["invocation_id"] for r in qs.runs(status=[status], status_mode="history", limit=1000)["items"]}
    started = {r["invocation_id"] for r in qs.runs(limit=1000)["items"]}
    assert ran == scanned & started
    now = {i["invocation_id"] for i in qs.invocations(status=[status], limit=1000)["items"]}
    assert now == {r[0] for r in qs.log.query("SELECT invocation_id FROM invocation_state WHERE status = ?",
                                              [status], max_rows=10_000).rows}
    if status == "RETRY":
        assert "retried" in listed and "retried" not in now  # retried once, then SUCCESS


def test_ever_had_status_bounded_by_the_window_and_checked(shop):
    qs, _ = shop
    assert qs.invocations(status=["RETRY"], status_mode="history", since=iso(ago(90)))["items"] == []
    assert [i["invocation_id"] for i in qs.invocations(status=["RETRY"], status_mode="history",
                                                      since=iso(ago(100)))["items"]] == ["retried"]
    with pytest.raises(BadRequest, match="status_mode"):
        qs.invocations(status=["RETRY"], status_mode="sometimes")
