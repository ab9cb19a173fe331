"""query/logs.py: log lines filtered and searched (newest first, cursor pages), a line tied to its
invocation through the span it was logged in, one invocation's lines inside its time range, what a live
tail reads next, and a cut line's whole body."""
import os

import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest, NotFound

from ..helpers import json_attributes
from .common import NOW, ago, iso

TRACE, SPAN = os.urandom(16).hex(), os.urandom(8).hex()
BIG = "x" * 5000 + " the Needle at the end"


def _line(when, body, level, number, in_span=False, **attrs):
    """One plain log line as OTLP/JSON (no dialect takes it: it is stored as a line)."""
    rec = {"timeUnixNano": str(int(when.timestamp() * 1e9)), "severityText": level, "severityNumber": number,
           "body": {"stringValue": body}, "attributes": json_attributes(attrs)}
    if in_span:
        rec.update(traceId=TRACE, spanId=SPAN)
    return rec


def _logs(*records):
    res = {"service.namespace": "log-app", "service.name": "worker", "tasktrail.runner.id": "w-1",
           "tasktrail.runner.parent.id": "r-1"}
    return {"resourceLogs": [{"resource": {"attributes": json_attributes(res)},
                              "scopeLogs": [{"scope": {"name": "app.logger"}, "logRecords": list(records)}]}]}


@pytest.fixture(scope="module")
def qs(local):
    em = local.emitter("log-app", Runner("r-1", "PersistentProcessRunner", hostname="h", pid=1))
    em.status("log-inv", "REGISTERED", task_id="app.pay", timestamp=ago(300))
    em.status("log-inv", "RUNNING", attempt=0, timestamp=ago(290))
    em.status("log-inv", "SUCCESS", timestamp=ago(200))
    em.shutdown()
    local.send("traces", {"resourceSpans": [{"resource": {"attributes": json_attributes({"service.namespace": "log-app"})},
                                             "scopeSpans": [{"scope": {"name": "app"}, "spans": [{
        "traceId": TRACE, "spanId": SPAN, "name": "charge", "kind": 1,
        "startTimeUnixNano": str(int(ago(260).timestamp() * 1e9)), "endTimeUnixNano": str(int(ago(230).timestamp() * 1e9)),
        "attributes": json_attributes({"tasktrail.invocation.id": "log-inv"})}]}]}]})
    local.send("logs", _logs(
        _line(ago(400), "warming up early", "INFO", 9, invocation_id="log-inv"),
        _line(ago(295), "starting order 7", "INFO", 9, invocation_id="log-inv", task_id="app.pay"),
        _line(ago(250), "card declined for order 7", "ERROR", 17, invocation_id="log-inv"),
        _line(ago(240), "retrying in_span", "WARN", 13, in_span=True)))
    local.send("logs", _logs(_line(ago(100), "unrelated housekeeping", "DEBUG", 5),
                             _line(ago(90), BIG, "INFO", 9)))
    return local.service(clock=lambda: NOW)


def test_lines_newest_first_as_the_api_shows_them(qs):
    items = qs.logs()["items"]
    assert [i["message"][:16] for i in items] == ["x" * 16, "unrelated housek", "retrying in_span",
                                                  "card declined fo", "starting order 7", "warming up early"]
    declined = items[3]
    assert {k: v for k, v in declined.items() if k != "batch"} == {
        "timestamp": iso(ago(250)), "level": "ERROR", "severity_number": 17, "message": "card declined for order 7",
        "app_id": "log-app", "runner_id": "r-1", "worker_id": "w-1", "invocation_id": "log-inv", "task_id": None,
        "trace_id": None, "span_id": None, "event_name": None, "logger": "app.logger",
        "values": {"message": {"bytes": 25, "preview_bytes": 25, "truncated": False, "url": None}}}
    # A line without the attribute belongs to the invocation of the span it was logged in.
    assert (items[2]["invocation_id"], items[2]["span_id"]) == ("log-inv", SPAN)


def test_filters(qs):
    def msgs(**f):
        return [i["message"] for i in qs.logs(**f)["items"]]
    assert msgs(level="warn") == ["retrying in_span", "card declined for order 7"]
    assert msgs(q="ORDER 7") == ["card declined for order 7", "starting order 7"]
    assert msgs(invocation="log-inv") == ["retrying in_span", "card declined for order 7", "starting order 7",
                                          "warming up early"]
    assert msgs(task="app.pay") == ["starting order 7"]
    assert msgs(runner="w-1", since=iso(ago(120)), until=iso(ago(95))) == ["unrelated housekeeping"]
    assert msgs(app="other") == []
    with pytest.raises(BadRequest, match="level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL, got 'LOUD'"):
        qs.logs(level="LOUD")
    with pytest.raises(BadRequest, match="cursor is not one this server issued"):
        qs.logs(cursor="e30")


def test_cursor_pages(qs):
    whole = [i["message"] for i in qs.logs()["items"]]
    got, cursor = [], None
    while True:
        page = qs.logs(limit=4, cursor=cursor)
        got += [i["message"] for i in page["items"]]
        if not (cursor := page["next_cursor"]):
            break
    assert got == whole and len(got) == 6


def test_one_invocations_lines_inside_its_time_range(qs):
    # From a minute before its first transition: the line at -400 s is outside.
    assert [i["message"] for i in qs.invocation_logs("log-inv")] == [
        "starting order 7", "card declined for order 7", "retrying in_span"]
    assert len(qs.invocation_logs("log-inv", limit=2)) == 2
    with pytest.raises(NotFound):
        qs.invocation_logs("nope")


def test_what_a_live_tail_reads_and_a_cut_lines_whole_body(qs):
    last = qs.last_batch()
    lines, seen = qs.logs_after(last - 1)
    assert seen == last and [i["message"][:22] for i in lines] == ["unrelated housekeeping", "x" * 22]
    first, upto = qs.logs_after(0, upto_batch=last - 1)
    assert upto == last - 1 and len(first) == 4 and first[0]["message"] == "warming up early"
    assert qs.logs_after(last) == ([], last)
    assert [i["message"] for i in qs.logs_after(0, level="ERROR")[0]] == ["card declined for order 7"]
    cut = next(i for i in lines if i["values"]["message"]["truncated"])
    assert cut["values"]["message"]["bytes"] == len(BIG) and cut["message"] == BIG[:4096]
    url = cut["values"]["message"]["url"]
    key = url.removeprefix("/api/v1/logs/").removesuffix("/body")
    assert url == f"/api/v1/logs/{key}/body" and key.startswith(f"{last}.")
    # The preview does not hold "needle"; the tail asks which cut lines do.
    assert qs.cut_lines_containing(0, last, ["needle", "absent"]) == {(key, "needle")}
    assert qs.log_body(key) == BIG.encode()
    with pytest.raises(BadRequest):
        qs.log_body("not-a-key")
    with pytest.raises(NotFound):
        qs.log_body(key[:-1] + ("0" if key[-1] != "0" else "1"))
