"""GET /api/v1/timeline's options (issue 18) on a live server fed over OTLP: resolution, show_system,
show_atomic_service, histogram_status, fit as query parameters; the occupancy per task and status and
the true peak against the sent records; the page's own JSON (`/timeline?format=json`) says the same;
bad values are a 400 in the one error shape naming the parameter; the fields that were there still are."""
from datetime import timedelta

import httpx
import pytest

from .helpers import start_server
from .timeline_options_fill import brute_peak, emit_opts, intervals, parse, wait_stored


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    srv = start_server(str(tmp_path_factory.mktemp("tlopts") / "tt.duckdb"), "--ingest-token", "tok123")
    sent = emit_opts(srv)
    window = wait_stored(srv, sent)
    yield srv, sent, window
    srv.stop()


def _ids(tl) -> set:
    return {e["invocation_id"] for ln in tl["lanes"] for sub in ln["sublanes"] for e in sub}


def test_defaults_keep_every_field_and_add_the_options(filled):
    srv, sent, window = filled
    tl = srv.get("/timeline", params=window).json()
    assert {"since", "until", "lanes", "edges", "markers", "atomic_windows", "total", "shown", "truncated"} <= set(tl)
    assert tl["options"] == {"resolution": "auto", "resolution_s": None, "show_system": True,
                             "show_atomic_service": True, "fit": True, "histogram_status": ["pending", "running"],
                             "system_hidden": 0}
    assert set(sent["system"]) | set(sent["others"]) <= _ids(tl)
    assert tl["occupancy"]["categories"] == ["pending", "running"]
    assert (tl["occupancy"]["since"], tl["occupancy"]["until"]) == (tl["view"]["since"], tl["view"]["until"])


@pytest.mark.parametrize("status", ["pending,running", "running", "registered,pending,running"])
def test_peak_and_occupancy_against_the_sent_records(filled, status):
    srv, sent, window = filled
    tl = srv.get("/timeline", params={**window, "histogram_status": status}).json()
    occ, cats = tl["occupancy"], status.split(",")
    ivs = intervals(sent["records"], cats, parse(tl["until"]))
    assert occ["categories"] == cats
    assert occ["peak"]["in_flight"] == brute_peak(ivs)
    assert occ["peak"]["by_status"] == {c: brute_peak([iv for iv in ivs if iv[2] == c]) for c in cats}
    size = timedelta(seconds=occ["bucket_s"])
    starts = [parse(s) for s in occ["buckets"]]
    touching = max(sum(1 for *_, a, b in ivs if a < s + size and b > s) for s in starts)
    assert touching > 3 * occ["peak"]["in_flight"], (touching, occ["peak"])  # what a bucket count would say
    for row in occ["by_status"]:
        want = [len({i for i, t, c, a, b in ivs if t == row["task_id"] and c == row["status"] and a < s + size and b > s})
                for s in starts]
        assert row["counts"] == want, row["task_id"]
    for row in occ["series"]:
        want = [len({i for i, t, c, a, b in ivs if t == row["task_id"] and a < s + size and b > s}) for s in starts]
        assert row["counts"] == want, row["task_id"]
    assert occ["max"] == max(sum(r["counts"][k] for r in occ["series"]) for k in range(len(starts)))


def test_options_as_query_parameters(filled):
    srv, sent, window = filled
    hidden = srv.get("/timeline", params={**window, "show_system": "0"}).json()
    assert _ids(hidden).isdisjoint(sent["system"]) and set(sent["others"]) <= _ids(hidden)
    assert hidden["options"]["system_hidden"] == len(sent["system"])
    assert hidden["total"] == sent["invocations"] - len(sent["system"])
    assert srv.get("/timeline", params={**window, "show_atomic_service": "0"}).json()["atomic_windows"] == []
    assert [w["run_id"] for w in srv.get("/timeline", params=window).json()["atomic_windows"]] == [sent["atomic_run"]]
    res = srv.get("/timeline", params={**window, "resolution": "5s"}).json()
    assert (res["options"]["resolution_s"], res["occupancy"]["bucket_s"]) == (5, 5)
    none = srv.get("/timeline", params={**window, "histogram_status": ""}).json()["occupancy"]
    assert (none["categories"], none["series"]) == ([], [])
    whole = srv.get("/timeline", params={**window, "fit": "0"}).json()
    assert (whole["view"]["since"], whole["view"]["until"]) == (whole["since"], whole["until"])


def test_the_page_json_says_what_the_api_says(filled):
    srv, _, window = filled
    q = {**window, "resolution": "1s", "show_system": "0", "histogram_status": "registered,running"}
    api = srv.get("/timeline", params=q).json()
    page = httpx.get(srv.web + "/timeline", params={**q, "format": "json"}, timeout=30).json()["timeline"]
    for k in ("options", "view", "occupancy", "total", "atomic_windows"):
        assert page[k] == api[k], k


@pytest.mark.parametrize("param, value", [("resolution", "7s"), ("histogram_status", "done"),
                                          ("show_system", "maybe"), ("show_atomic_service", "2"), ("fit", "x")])
def test_bad_options_are_a_400_naming_the_parameter(filled, param, value):
    srv, _, window = filled
    r = srv.get("/timeline", params={**window, param: value})
    assert r.status_code == 400 and r.json()["error"]["status"] == 400
    assert param in r.json()["error"]["message"]
