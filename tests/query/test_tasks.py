"""query/tasks.py over tests/workflow_data.py's scenario (40 runs of shop.pay: 5 fail, 4 retried once;
10 checkout workflows), stored through the local emitter: every figure is worked out from the scenario."""
from datetime import datetime, timedelta

import pytest

from tasktrail.query.errors import BadRequest, NotFound

from .. import workflow_data as wd
from .common import NOW, ago, iso


@pytest.fixture(scope="module")
def qs(local):
    wd.send(None, base=ago(7200), connect=local.emitter)
    return local.service(clock=lambda: NOW)


def test_task_list_figures(qs):
    tl = qs.tasks()
    assert (tl["since"], tl["until"]) == (iso(ago(86_400)), None)  # the default window: the last 24 h
    items = {t["task_id"]: t for t in tl["items"]}
    assert list(items) == ["shop.pay", "shop.ship", "shop.checkout", "shop.reserve", "shop.refund"]  # busiest first
    pay = items["shop.pay"]
    assert (pay["invocations"], pay["finished"], pay["counts_by_status"]) == (40, 40, {"SUCCESS": 35, "FAILED": 5})
    assert pay["success_rate"] == pytest.approx(35 / 40)
    durations = [wd.pay_duration(i) for i in range(40)]
    for q, key in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
        assert pay["duration_s"][key] == pytest.approx(wd.quantile_cont(durations, q), abs=1e-5)
    assert pay["duration_s"]["max"] == pytest.approx(max(durations), abs=1e-5)
    assert pay["first_seen"] == iso(ago(7200)) and pay["app_id"] == "shop"
    # Throughput over the window asked for: 40 finished in 24 h.
    assert pay["throughput_per_min"] == pytest.approx(40 / (24 * 60))


def test_task_list_windows(qs):
    first_hour = {t["task_id"]: t["invocations"] for t in qs.tasks(since=iso(ago(7200)), until=iso(ago(5400)))["items"]
                  if t["invocations"]}
    assert first_hour == {"shop.pay": 30}  # one every minute from the start
    # The scenario ends 37 min before the clock: every known task is still listed, idle.
    idle = qs.tasks(since="-30m")["items"]
    assert idle and all(t["invocations"] == 0 and t["counts_by_status"] == {} and t["last_run"] for t in idle)
    assert {t["task_id"] for t in qs.tasks(since="all")["items"]} == {"shop.pay", "shop.ship", "shop.checkout",
                                                                       "shop.reserve", "shop.refund"}


def test_last_run_is_the_latest_of_the_whole_cache_whatever_the_window(qs):
    """The window's rows give their tasks' latest run and the rows outside it the others' (one read, no row
    read twice): together every task's latest creation in the cache, inside the window, after it or before."""
    latest = {t: iso(c) for t, c in qs._q("SELECT task_id, max(created_at) FROM invocation_state GROUP BY ALL").rows}
    for since, until in ((iso(ago(7200)), iso(ago(5400))), (iso(ago(6000)), None), ("-30m", None), ("all", None),
                         (None, iso(ago(5400)))):
        items = qs.tasks(since=since, until=until)["items"]
        assert {t["task_id"]: t["last_run"] for t in items} == latest, (since, until)


def test_task_detail_errors_series_and_recent(qs):
    t = qs.task("shop.pay")
    errors = {e["error_type"]: e for e in t["errors"]}
    assert {k: (e["count"], e["failed"], e["retried"], e["invocations"]) for k, e in errors.items()} == {
        "ValueError": (5, 5, 0, 5), "KeyError": (4, 0, 4, 4)}
    last = wd.PAY_FAILED[-1]
    latest = errors["ValueError"]["latest"]
    at = datetime.fromisoformat(latest.pop("at").replace("Z", "+00:00"))
    assert abs(at - ago(7200 - last * 60 - 1 - wd.pay_duration(last))) <= timedelta(microseconds=1)
    assert latest == {
        "invocation_id": f"pay-{last:02d}", "status": "FAILED", "message": f"card declined {last}",
        "values": {"message": {"bytes": len(f"card declined {last}"), "preview_bytes": len(f"card declined {last}"),
                               "truncated": False, "url": None}}}
    s = t["series"]
    assert sum(s["finished"]) == 40 and sum(s["failed"]) == 5 and len(s["t"]) == len(s["p50"]) <= 61
    assert [r["invocation_id"] for r in t["recent"][:3]] == ["pay-39", "pay-38", "pay-37"]
    assert t["apps"] == ["shop"] and t["invocations"] == 40


def test_task_detail_edges(qs):
    quiet = qs.task("shop.pay", since="-1h")
    assert (quiet["invocations"], quiet["series"], quiet["errors"], quiet["recent"]) == (0, None, [], [])
    with pytest.raises(NotFound, match="task no.such is not in the log"):
        qs.task("no.such")
    with pytest.raises(BadRequest, match="since is not an RFC 3339 time"):
        qs.task("shop.pay", since="yesterday")
