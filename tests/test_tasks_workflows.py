"""Tasks and workflows over a known scenario (tests/workflow_data.py): every figure the API gives is
checked against what the scenario says it must be."""
import pytest

from . import workflow_data as wd
from .helpers import shop_server


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    srv, sent = shop_server(tmp_path_factory.mktemp("shop"))
    yield srv, sent
    srv.stop()


def test_task_list_counts_success_rate_and_quantiles(shop):
    srv, _ = shop
    items = {t["task_id"]: t for t in srv.get("/tasks").json()["items"]}
    assert set(items) == {"shop.pay", "shop.checkout", "shop.reserve", "shop.ship", "shop.refund"}
    pay = items["shop.pay"]
    assert pay["invocations"] == 40
    assert pay["counts_by_status"] == {"SUCCESS": 35, "FAILED": 5}
    assert pay["success_rate"] == pytest.approx(35 / 40)
    durations = [wd.pay_duration(i) for i in range(40)]
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert pay["duration_s"][key] == pytest.approx(wd.quantile_cont(durations, q), abs=1e-5)
    assert items["shop.ship"]["invocations"] == 20 and items["shop.checkout"]["invocations"] == 10


def test_task_detail_errors_series_and_recent(shop):
    srv, _ = shop
    t = srv.get("/tasks/shop.pay").json()
    errors = {e["error_type"]: e for e in t["errors"]}
    assert set(errors) == {"ValueError", "KeyError"}
    assert errors["ValueError"]["count"] == 5 and errors["ValueError"]["failed"] == 5
    assert errors["ValueError"]["latest"]["invocation_id"] == f"pay-{wd.PAY_FAILED[-1]:02d}"
    assert errors["ValueError"]["latest"]["message"] == f"card declined {wd.PAY_FAILED[-1]}"
    assert errors["KeyError"]["retried"] == len(wd.PAY_RETRIED) and errors["KeyError"]["failed"] == 0
    s = t["series"]
    assert sum(s["finished"]) == 40 and sum(s["failed"]) == 5
    assert len(s["t"]) == len(s["p99"]) == len(s["finished"]) <= 61
    # Each point's p50 is the median of the runs that finished in its step.
    k = next(i for i, n in enumerate(s["finished"]) if n)
    assert s["p50"][k] is not None and min(wd.pay_duration(i) for i in range(40)) <= s["p50"][k]
    assert [r["invocation_id"] for r in t["recent"][:3]] == ["pay-39", "pay-38", "pay-37"]
    assert srv.get("/tasks/no.such.task").status_code == 404
    bad = srv.get("/tasks/shop.pay", params={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["error"]["message"]


def test_workflow_types_runs_and_sub_workflows(shop):
    srv, sent = shop
    types = {t["workflow_type"]: t for t in srv.get("/workflows").json()["items"]}
    assert types["shop.checkout"]["runs"] == 10 and types["shop.checkout"]["counts_by_status"] == {"SUCCESS": 10}
    assert types["shop.refund"]["runs"] == 1
    runs = srv.get("/workflows/runs", params={"type": "shop.checkout"}).json()["items"]
    assert [r["workflow_id"] for r in runs] == [f"wf-{k}" for k in reversed(range(10))]
    for r in runs:
        assert r["duration_s"] == pytest.approx(sent["runs"][r["workflow_id"]]["duration_s"], abs=1e-5)
        assert r["members"] == 3 and r["status"] == "SUCCESS"
    refund = srv.get("/workflows/runs", params={"type": "shop.refund"}).json()["items"][0]
    assert refund["parent_workflow_id"] == "wf-0"
    run0 = srv.get("/workflows/runs/wf-0").json()
    assert [s["workflow_id"] for s in run0["sub_workflows"]] == ["wf-0-refund"]
    assert sorted(m["task_id"] for m in run0["members_list"]) == ["shop.reserve", "shop.ship", "shop.ship"]
    assert srv.get("/workflows/runs/nope").status_code == 404


def test_run_histogram_follows_pynmon_rules(shop):
    srv, sent = shop
    for wid, size in (("wf-3", 0.25), ("wf-7", 1.0)):  # windows of 4.1 s and 32.4 s
        for cats in (("PENDING", "RUNNING"), ("REGISTERED",), ("RUNNING",)):
            h = srv.get(f"/workflows/runs/{wid}",
                        params={"histogram_status": ",".join(c.lower() for c in cats)}).json()["histogram"]
            assert h["bucket_s"] == size and h["categories"] == [c.lower() for c in cats]
            want = wd.expected_histogram(sent["runs"][wid], cats, size)
            got = {s["task_id"]: s["counts"] for s in h["series"]}
            assert got == want, (wid, cats)
    bad = srv.get("/workflows/runs/wf-3", params={"histogram_status": "sleeping"})
    assert bad.status_code == 400 and "histogram_status" in bad.json()["error"]["message"]


def test_compare_ten_runs_says_where_the_slow_one_lost_its_time(shop):
    srv, sent = shop
    ids = [f"wf-{k}" for k in range(10)]
    c = srv.get("/workflows/compare", params={"runs": ",".join(ids)}).json()
    assert [r["workflow_id"] for r in c["runs"]] == ids and c["same_type"]
    for r in c["runs"]:
        assert r["duration_s"] == pytest.approx(sent["runs"][r["workflow_id"]]["duration_s"], abs=1e-5)
    ship = next(t for t in c["tasks"] if t["task_id"] == "shop.ship")
    assert all(ship["runs"][w]["count"] == 2 and ship["runs"][w]["statuses"] == {"SUCCESS": 2} for w in ids)
    assert ship["runs"]["wf-7"]["time_in"]["PENDING"] == pytest.approx(2 * (28.3 + 0.3), abs=1e-4)
    slow = c["slowest"]
    assert slow["workflow_id"] == "wf-7" and slow["excess_s"] == pytest.approx(28.3, abs=1e-4)
    assert slow["by_task"][0]["task_id"] == "shop.ship"
    assert slow["by_task"][0]["excess_s"] == pytest.approx(2 * 28.3, abs=1e-4)
    assert max(slow["by_status"], key=lambda k: slow["by_status"][k]["excess_s"]) == "PENDING"
    many = srv.get("/workflows/compare", params={"runs": ",".join(ids + ["wf-0-refund"])})
    assert many.status_code == 400 and "at most 10" in many.json()["error"]["message"]
    assert srv.get("/workflows/compare").status_code == 400
    missing = srv.get("/workflows/compare", params={"runs": "wf-1,ghost"})
    assert missing.status_code == 404 and "ghost" in missing.json()["error"]["message"]


def test_workflow_type_page_data_and_json_twins(shop):
    srv, _ = shop
    t = srv.get("/workflows/shop.checkout").json()
    assert [h["workflow_id"] for h in t["histograms"]] == ["wf-9", "wf-8", "wf-7"]  # the latest 3
    chosen = srv.get("/workflows/shop.checkout", params=[("histogram_workflow", "wf-1"),
                                                         ("histogram_workflow", "wf-2")]).json()
    assert [h["workflow_id"] for h in chosen["histograms"]] == ["wf-1", "wf-2"]
    for page, api in (("/tasks?since=all", "/tasks?since=all"), ("/tasks/shop.pay?since=-7d&until=-1s", None),
                      ("/workflows?since=all", "/workflows?since=all"),
                      ("/workflows/shop.checkout?since=all", "/workflows/shop.checkout?since=all"),
                      ("/workflows/runs/wf-7", "/workflows/runs/wf-7"),
                      ("/workflows/compare?runs=wf-1,wf-7", "/workflows/compare?runs=wf-1,wf-7")):
        import httpx
        html = httpx.get(srv.web + page, timeout=30)
        assert html.status_code == 200 and "text/html" in html.headers["content-type"], page
        twin = httpx.get(srv.web + page + ("&" if "?" in page else "?") + "format=json", timeout=30).json()
        if api is None:  # a relative window moves between two requests: compare what does not move
            api_doc = srv.get(page).json()
            assert {k: v for k, v in twin.items() if k not in ("since", "until", "series", "throughput_per_min")} == \
                {k: v for k, v in api_doc.items() if k not in ("since", "until", "series", "throughput_per_min")}, page
            continue
        assert twin == srv.get(api).json(), page
    # Summaries default to the last 24 hours and say so; `all` lifts the bound.
    from datetime import datetime, timedelta, timezone
    since = srv.get("/tasks").json()["since"]
    age = datetime.now(timezone.utc) - datetime.fromisoformat(since.replace("Z", "+00:00"))
    assert timedelta(hours=23, minutes=59) < age < timedelta(hours=24, minutes=1)
    assert srv.get("/tasks", params={"since": "all"}).json()["since"] is None
