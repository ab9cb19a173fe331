"""query/traces.py: a trace as OTLP/JSON from the stored spans: each span once, resources and scopes as
sent, a child on another host whose clock disagrees moved inside its parent (saying so), a span that
ends before it starts shown with zero duration; and the links to a trace."""
import pytest

from tasktrail.query.errors import BadRequest, NotFound

from ..helpers import json_attributes
from .common import NOW, ago

TRACE = "0af7651916cd43dd8448eb211c80319c"
ROOT, LOCAL, REMOTE, BACKWARDS = "b7ad6b7169203331", "00f067aa0ba902b7", "1111111111111111", "2222222222222222"


def _ns(dt) -> int:
    return int(dt.timestamp() * 1e9)


def _span(span_id, parent, start, end, name, **extra):
    return {"traceId": TRACE, "spanId": span_id, "parentSpanId": parent or "", "name": name, "kind": 2,
            "startTimeUnixNano": str(_ns(start)), "endTimeUnixNano": str(_ns(end)), **extra}


def _resource(host, *spans):
    return {"resource": {"attributes": json_attributes({"service.name": "shop", "host.name": host})},
            "scopeSpans": [{"scope": {"name": "shop.http"}, "spans": list(spans)}]}


@pytest.fixture(scope="module")
def qs(local):
    root = _span(ROOT, None, ago(100), ago(90), "GET /order", attributes=json_attributes({"http.status": 200}),
                 events=[{"timeUnixNano": str(_ns(ago(95))), "name": "paid",
                          "attributes": json_attributes({"order": 7})}],
                 status={"code": 2, "message": "boom"})
    local.send("traces", {"resourceSpans": [
        _resource("host-a", root, _span(LOCAL, ROOT, ago(99), ago(98), "db"),
                  _span(BACKWARDS, ROOT, ago(94), ago(96), "stepped-back")),
        # host-b's clock is 20 s behind: its child "starts" before its parent.
        _resource("host-b", _span(REMOTE, ROOT, ago(120), ago(116), "charge",
                                  links=[{"traceId": TRACE, "spanId": LOCAL, "attributes": []}]))]})
    local.send("traces", {"resourceSpans": [_resource("host-a", _span(LOCAL, ROOT, ago(50), ago(49), "db-again"))]})
    return local.service(clock=lambda: NOW, jaeger_url="http://jaeger:16686", tempo_url="http://tempo/{trace_id}")


def _spans(doc):
    return {s["spanId"]: (r["resource"], sc["scope"]["name"], s) for r in doc["resourceSpans"]
            for sc in r["scopeSpans"] for s in sc["spans"]}


def test_trace_as_otlp_json(qs):
    doc = qs.trace(TRACE.upper())
    spans = _spans(doc)
    assert set(spans) == {ROOT, LOCAL, REMOTE, BACKWARDS}  # the second delivery of LOCAL is not shown
    resource, scope, root = spans[ROOT]
    assert scope == "shop.http" and {"key": "host.name", "value": {"stringValue": "host-a"}} in resource["attributes"]
    assert root == {"traceId": TRACE, "spanId": ROOT, "name": "GET /order", "kind": 2,
                    "startTimeUnixNano": str(_ns(ago(100))), "endTimeUnixNano": str(_ns(ago(90))),
                    "attributes": [{"key": "http.status", "value": {"intValue": "200"}}],
                    "status": {"code": 2, "message": "boom"},
                    "events": [{"timeUnixNano": str(_ns(ago(95))), "name": "paid",
                                "attributes": [{"key": "order", "value": {"intValue": "7"}}]}]}
    assert spans[LOCAL][2]["name"] == "db" and spans[LOCAL][2]["parentSpanId"] == ROOT
    assert spans[REMOTE][2]["links"] == [{"traceId": TRACE, "spanId": LOCAL, "attributes": []}]


def test_clock_skew_is_adjusted_and_said(qs):
    spans = _spans(qs.trace(TRACE))
    remote = spans[REMOTE][2]
    # Moved to the middle of its parent's slack: parent 10 s, child 4 s -> starts 3 s after the parent.
    assert (remote["startTimeUnixNano"], remote["endTimeUnixNano"]) == (str(_ns(ago(97))), str(_ns(ago(93))))
    assert remote["tasktrail"]["clockAdjustmentNs"] == str(23 * 10**9)
    assert remote["tasktrail"]["sentStartTimeUnixNano"] == str(_ns(ago(120)))
    assert "clocks of host-b and host-a disagree" in remote["tasktrail"]["warnings"][0]
    backwards = spans[BACKWARDS][2]
    assert "ends 2.000 s before it starts" in backwards["tasktrail"]["warnings"][0]
    assert backwards["startTimeUnixNano"] == backwards["endTimeUnixNano"] == str(_ns(ago(94)))
    # Spans come in order of their (adjusted) start.
    order = [s["spanId"] for r in qs.trace(TRACE)["resourceSpans"] for sc in r["scopeSpans"] for s in sc["spans"]]
    assert order == [ROOT, LOCAL, BACKWARDS, REMOTE]


def test_bad_and_unknown_ids_and_links(qs):
    with pytest.raises(BadRequest, match="trace id must be 32 hex characters, got 'xyz'"):
        qs.trace("xyz")
    with pytest.raises(NotFound):
        qs.trace("f" * 32)
    assert qs.trace_links(TRACE) == {"trace": f"/traces/{TRACE}", "jaeger": f"http://jaeger:16686/trace/{TRACE}",
                                     "tempo": f"http://tempo/{TRACE}"}
    assert qs.trace_links(None) == {"trace": None, "jaeger": None, "tempo": None}
