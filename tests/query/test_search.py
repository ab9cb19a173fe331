"""query/search.py: q= on the invocations list and the runs table, over a known scenario.

The expected matches come from an independent scan of the log: the transitions the scenario stored are
read back with plain SQL and matched in Python (substring tests, json.loads and a hand-written scan of
plain text), never from the module's own SQL."""
from datetime import timedelta

import pytest

from tasktrail.query.errors import BadRequest

from ..search_data import APP, RUNNER, SCAN_SQL, emit, quote, scan
from .common import NOW, ago


@pytest.fixture(scope="module")
def scenario(local):
    em = local.emitter(APP, RUNNER)
    emit(em, ago(0))
    em.shutdown()
    return local.service(clock=lambda: NOW), local.store.query(SCAN_SQL, max_rows=100000).dicts()


def expect(rows, field, value, key=None, since=NOW - timedelta(hours=24)) -> set:
    """What the scan finds, by default in the default search window (the last 24 h)."""
    return scan(rows, field, value, key=key, since=since)


def found(qs, q, **kw) -> set:
    inv = {i["invocation_id"] for i in qs.invocations(app=APP, q=q, limit=500, **kw)["items"]}
    runs = {i["invocation_id"] for i in qs.runs(app=APP, q=q, limit=500, **kw)["items"]}
    assert inv == runs, q
    return inv


# --- the tests -------------------------------------------------------------------------------------
KWARGS = [("order", "1234"), ("ORDER", "1234"), ("customer", "ACME Corp"), ("customer", "acme"), ("a_b", "c\\d"),
          ("name", "müller"), ("city", "東京"), ("tag", "🚀"), ("items", "[1, 2]"), ("paid", "true"), ("order", "99"),
          ("x", "1"), ("path", "C:\\temp\\x"), ("order", "x" * 1500), ('we"ird', "%_\\"), ("注文", "東京"),
          ("note", "100%_off"), ("Order", "1234")]


@pytest.mark.parametrize("key,value", KWARGS)
def test_kwargs_pairs_match_the_scan(scenario, key, value):
    qs, rows = scenario
    expected = expect(rows, "kwargs", value, key=key)
    assert found(qs, f"kwargs:{quote(key + '=' + value)}") == expected
    if key == "order" and value == "1234":  # the example, as typed
        assert found(qs, "kwargs:order=1234") == expected
        assert expected == {"inv-json-num", "inv-json-str", "inv-json-nested", "inv-array-objs", "inv-text-eq",
                            "inv-repr", "inv-pynenc", "inv-json-scalar", "inv-3h"}


TERMS = [("args", "acme"), ("args", "100%_off"), ("args", "%"), ("args", "_"), ("args", "\\"), ("args", "C:\\temp"),
         ("args", "müller"), ("args", "東京"), ("args", "🚀"), ("args", "order=1234"), ("kwargs", "customer"),
         ("result", "paid"), ("result", "50%"), ("result", "grüße"), ("error", "timeout"), ("error", '"quoted"'),
         ("error", "☃"), ("", "1234"), ("", "shop_x"), ("", "INV-PYNENC"), ("", "ünïcode"), ("", "'"),
         ("args", "x" * 2000), ("", "\x00"), ("", "é" * 1000), ("args", "a" * 32 + "..."), ("", "no such thing anywhere")]


@pytest.mark.parametrize("field,value", TERMS)
def test_terms_match_the_scan(scenario, field, value):
    qs, rows = scenario
    prefix = f"{field}:" if field else ""
    assert found(qs, prefix + quote(value)) == expect(rows, field, value)


def test_unquoted_hostile_terms_are_literal(scenario):
    qs, rows = scenario
    for value in ("100%_off", "%", "_", "50%", "c\\d"):
        assert found(qs, "args:" + value) == expect(rows, "args", value), value


def test_terms_and_or_parentheses(scenario):
    qs, rows = scenario
    a, b = expect(rows, "kwargs", "1234", key="order"), expect(rows, "", "shop.pay")
    assert found(qs, "kwargs:order=1234 shop.pay") == a & b
    assert found(qs, "kwargs:order=1234 AND shop.pay") == a & b
    c = expect(rows, "error", "timeout")
    assert found(qs, "error:timeout OR result:paid") == c | expect(rows, "result", "paid")
    assert found(qs, "(error:timeout OR result:paid) kwargs:order=1234") == (c | expect(rows, "result", "paid")) & a


def test_state_reuses_the_status_filter(scenario):
    qs, rows = scenario
    now_failed = {i["invocation_id"] for i in qs.invocations(app=APP, status=["FAILED"], limit=500)["items"]}
    assert found(qs, "state:failed") == now_failed
    assert found(qs, "state:FAILED kwargs:order=1234") == now_failed & expect(rows, "kwargs", "1234", key="order")
    ever_retry = {r["invocation_id"] for r in rows if r["status"] == "RETRY"}
    assert found(qs, "state:RETRY", status_mode="history") == ever_retry == {"inv-repr"}
    assert found(qs, "state:RETRY") == set()  # none is in RETRY now
    assert now_failed == {r["invocation_id"] for r in rows if r["status"] == "FAILED"}


def test_the_window_bounds_the_values(scenario):
    qs, rows = scenario
    # No since: values are read in the last 24 h (the list itself is unbounded: ids still match).
    assert "inv-old" not in found(qs, "kwargs:order=1234")
    page = qs.invocations(app=APP, q="kwargs:order=1234")
    assert page["search_window"]["since"].startswith((NOW - timedelta(hours=24)).isoformat()[:19])
    assert found(qs, "inv-old") == {"inv-old"}
    everything = found(qs, "kwargs:order=1234", since="all")
    assert everything == expect(rows, "kwargs", "1234", key="order", since=None)
    assert "inv-old" in everything
    # since=-1h: the list's window is the values' window too.
    assert found(qs, "kwargs:order=1234", since="-1h") == expect(rows, "kwargs", "1234", key="order", since=NOW - timedelta(hours=1))
    assert "search_window" not in qs.invocations(app=APP, q="state:FAILED")


@pytest.mark.parametrize("q,says", [
    ('args:"unclosed', "unclosed quote at character 6"), ('kwargs:o="x', "unclosed quote at character 10"),
    ("foo:bar", "unknown prefix 'foo:'"), ("state:NOPE", "unknown status"),
    ("kwargs:=1", "needs a key and a value"), ("kwargs:order=", "needs a key and a value"), ("(a", "unclosed parenthesis"),
    ("a OR", "OR must be followed"), ("NOT a", "NOT is not supported"), ("args:", "needs a value"), ("a)", "unexpected"),
    ("()", "empty parentheses"), ("x" * 2049, "longer than 2048"), (" ".join(["t"] * 33), "more than 32 terms"),
    ("((((((a))))))", "levels of parentheses"), ('""', "empty quoted phrase"), ("\ud800", "lone surrogate"),
    ("a AND AND b", "AND must be followed"), ("OR", "unexpected 'OR'")])
def test_malformed_queries_are_bad_requests(scenario, q, says):
    qs, _ = scenario
    for read in (qs.invocations, qs.runs):
        with pytest.raises(BadRequest, match=None) as err:
            read(q=q)
        assert says in str(err.value) and "kwargs:order=1234" in str(err.value)


def test_quoted_colon_and_non_word_prefixes_are_free_text(scenario):
    qs, rows = scenario
    assert found(qs, '"C:\\\\temp"') == expect(rows, "", "C:\\temp")
    assert found(qs, "{order:1234,") == expect(rows, "", "{order:1234,")  # ':' after a non-word prefix: free text
    assert found(qs, "python::rvapp.add") == expect(rows, "", "python::rvapp.add") == {"inv-rv"}
    assert found(qs, "name:python::rvapp") == {"inv-rv"}
