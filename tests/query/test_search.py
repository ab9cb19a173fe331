"""query/search.py: q= on the invocations list and the runs table, over a known scenario.

The expected matches come from an independent scan of the log: the transitions the scenario stored are
read back with plain SQL and matched in Python (substring tests, json.loads and a hand-written scan of
plain text), never from the module's own SQL."""
import json
from datetime import timedelta

import pytest

from tasktrail.proto.emitter import Runner
from tasktrail.query.errors import BadRequest

from .common import NOW, ago


def pynenc_str(kwargs: dict, limit: int = 32) -> str:
    """What pynenc 0.4 stores for these arguments: str(Arguments), TRUNCATED mode (pynenc/arguments.py),
    the text the exporter sends (proto/pynenc.py: `str(inv.call.arguments)`)."""
    def fmt(v):
        s = str(v)
        return s if len(s) <= limit else s[:limit] + "..."
    return "{" + ", ".join(f"{k}:{fmt(v)}" for k, v in kwargs.items()) + "}"


LONG = "x" * 3000 + "-marker"
# (invocation id, task, seconds ago, arguments as sent, outcome): outcome ("ok", result) | ("fail", type, message)
# | ("retry", type, message, result). Arguments: objects/lists go out as JSON (the emitter's json.dumps,
# \u-escaped), strings as plain text.
CASES = [
    ("inv-json-num", "shop.pay", 600, {"order": 1234, "customer": "ACME"}, ("ok", {"paid": True})),
    ("inv-json-str", "shop.pay", 590, {"order": "1234", "note": "100%_off"}, ("ok", "paid")),
    ("inv-json-nested", "shop.ship", 580, {"args": [7], "kwargs": {"Order": 1234}}, ("fail", "Timeout", "carrier slow")),
    ("inv-json-array", "shop.ship", 570, [1234, "order"], ("ok", None)),
    ("inv-array-objs", "shop.ship", 560, [{"order": 1234}], ("ok", 1234)),
    ("inv-near-miss", "shop.pay", 550, {"order": 12345, "orders": 1234, "reorder": 1234}, ("ok", None)),
    ("inv-json-note", "shop.pay", 540, {"note": "order=1234"}, ("ok", None)),
    ("inv-text-eq", "shop.hook", 530, "order=1234&x=1", ("ok", "done")),
    ("inv-text-miss", "shop.hook", 520, "reorder=1234&order=12345", ("ok", "done")),
    ("inv-repr", "shop.hook", 510, "{'order': 1234, 'path': 'C:\\temp\\x'}", ("retry", "KeyError", "no stock", "ok")),
    ("inv-pynenc", "pn.tasks.process", 500, pynenc_str({"order": 1234, "customer": "ACME Corp", "items": [1, 2]}),
     ("ok", "{'processed': 1234}")),
    ("inv-pynenc-long", "pn.tasks.process", 490, pynenc_str({"order": 99, "note": "a" * 50}),
     ("fail", "ValueError", 'bad "quoted" input')),
    ("inv-json-scalar", "shop.hook", 480, '"order=1234"', ("ok", None)),
    ("inv-unicode", "shop.intl", 470, {"name": "Müller", "city": "東京", "tag": "🚀"}, ("ok", "Grüße")),
    ("inv-unicode-text", "shop.intl", 460, "name=MÜLLER, city=東京", ("fail", "UnicodeError", "ünïcode ☃")),
    ("inv-long", "shop.bulk", 450, LONG, ("ok", None)),
    ("inv-under", "shop_x.pay", 440, {"a_b": "c\\d"}, ("ok", "50%")),
    ("inv-old", "shop.pay", 2 * 86400, {"order": 1234}, ("ok", "old")),
    ("inv-3h", "shop.pay", 3 * 3600, "order=1234", ("fail", "Timeout", "late")),
]


@pytest.fixture(scope="module")
def scenario(local):
    em = local.emitter("searchapp", Runner("r-1", "PPRWorker", hostname="h", pid=1))
    for inv, task, secs, arguments, outcome in CASES:
        em.status(inv, "REGISTERED", task_id=task, arguments=arguments, timestamp=ago(secs))
        em.status(inv, "RUNNING", attempt=0, timestamp=ago(secs - 1))
        if outcome[0] == "ok":
            em.status(inv, "SUCCESS", result=outcome[1], timestamp=ago(secs - 2))
        elif outcome[0] == "fail":
            em.status(inv, "FAILED", error_type=outcome[1], error_message=outcome[2], timestamp=ago(secs - 2))
        else:
            em.status(inv, "RETRY", error_type=outcome[1], error_message=outcome[2], timestamp=ago(secs - 2))
            em.status(inv, "RUNNING", attempt=1, timestamp=ago(secs - 3))
            em.status(inv, "SUCCESS", result=outcome[3], timestamp=ago(secs - 4))
    em.shutdown()
    rows = local.store.query("SELECT invocation_id, task_id, status, ts, arguments, result, error_type, error_message "
                             "FROM transitions WHERE app_id = 'searchapp'", max_rows=100000).dicts()
    return local.service(clock=lambda: NOW), rows


# --- the independent scan ------------------------------------------------------------------------
def decoded(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def contains(stored, term: str) -> bool:
    if stored is None:
        return False
    t = term.lower()
    if t in stored.lower():
        return True
    doc = decoded(stored) if "\\" in stored else None
    return doc is not None and t in json.dumps(doc, ensure_ascii=False, separators=(",", ":")).lower()


def as_text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def json_pair(doc, key: str, value: str) -> bool:
    if isinstance(doc, dict):
        return any((k.lower() == key and as_text(v).lower() == value) or json_pair(v, key, value)
                   for k, v in doc.items())
    if isinstance(doc, list):
        return any(json_pair(v, key, value) for v in doc)
    return False


def text_pair(text: str, key: str, value: str) -> bool:
    low = text.lower()
    i = low.find(key)
    while i >= 0:
        j = i + len(key)
        before_ok = i == 0 or not (low[i - 1].isalnum() or low[i - 1] == "_")
        if before_ok:
            j += low[j:j + 1] in ("'", '"')
            while low[j:j + 1].isspace():
                j += 1
            if low[j:j + 1] in (":", "="):
                j += 1
                while low[j:j + 1].isspace():
                    j += 1
                j += low[j:j + 1] in ("'", '"')
                if low.startswith(value, j):
                    k = j + len(value)
                    k += low[k:k + 1] in ("'", '"')
                    if k == len(low) or low[k].isspace() or low[k] in ",;&)}]":
                        return True
        i = low.find(key, i + 1)
    return False


def pair(stored, key: str, value: str) -> bool:
    if stored is None:
        return False
    doc = decoded(stored)
    if isinstance(doc, (dict, list)):
        return json_pair(doc, key.lower(), value.lower())
    return text_pair(stored, key.lower(), value.lower())


def scan(rows, field: str, value: str, key=None, since=ago(86400)) -> set:
    """The invocations of the scenario a single term finds, by scanning the stored transitions."""
    lo = since.replace(tzinfo=None) if since is not None else None
    hit = set()
    for r in rows:
        if lo is not None and r["ts"] < lo:
            continue
        if key is not None:
            ok = pair(r["arguments"], key, value)
        else:
            cols = {"args": ["arguments"], "kwargs": ["arguments"], "result": ["result"],
                    "error": ["error_type", "error_message"], "": ["arguments", "result", "error_type", "error_message"]}
            ok = any(contains(r[c], value) for c in cols[field])
        if ok:
            hit.add(r["invocation_id"])
    if field == "":  # free text: ids and task names too, in the list's own window (none here)
        hit |= {r["invocation_id"] for r in rows if value.lower() in r["invocation_id"].lower()
                or value.lower() in (r["task_id"] or "").lower()}
    return hit


def found(qs, q, **kw) -> set:
    inv = {i["invocation_id"] for i in qs.invocations(app="searchapp", q=q, limit=500, **kw)["items"]}
    runs = {i["invocation_id"] for i in qs.runs(app="searchapp", q=q, limit=500, **kw)["items"]}
    assert inv == runs, q
    return inv


def quote(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the tests -------------------------------------------------------------------------------------
KWARGS = [("order", "1234"), ("ORDER", "1234"), ("customer", "ACME Corp"), ("customer", "acme"), ("a_b", "c\\d"),
          ("name", "müller"), ("city", "東京"), ("tag", "🚀"), ("items", "[1, 2]"), ("paid", "true"), ("order", "99"),
          ("x", "1"), ("path", "C:\\temp\\x")]


@pytest.mark.parametrize("key,value", KWARGS)
def test_kwargs_pairs_match_the_scan(scenario, key, value):
    qs, rows = scenario
    expected = scan(rows, "kwargs", value, key=key)
    assert found(qs, f"kwargs:{quote(key + '=' + value)}") == expected
    if key == "order" and value == "1234":  # the example, as typed
        assert found(qs, "kwargs:order=1234") == expected
        assert expected == {"inv-json-num", "inv-json-str", "inv-json-nested", "inv-array-objs", "inv-text-eq",
                            "inv-repr", "inv-pynenc", "inv-json-scalar", "inv-3h"}


TERMS = [("args", "acme"), ("args", "100%_off"), ("args", "%"), ("args", "_"), ("args", "\\"), ("args", "C:\\temp"),
         ("args", "müller"), ("args", "東京"), ("args", "🚀"), ("args", "order=1234"), ("kwargs", "customer"),
         ("result", "paid"), ("result", "50%"), ("result", "grüße"), ("error", "timeout"), ("error", '"quoted"'),
         ("error", "☃"), ("", "1234"), ("", "shop_x"), ("", "INV-PYNENC"), ("", "ünïcode"), ("", "'"),
         ("args", "x" * 2000), ("args", "a" * 32 + "..."), ("", "no such thing anywhere")]


@pytest.mark.parametrize("field,value", TERMS)
def test_terms_match_the_scan(scenario, field, value):
    qs, rows = scenario
    prefix = f"{field}:" if field else ""
    assert found(qs, prefix + quote(value)) == scan(rows, field, value)


def test_unquoted_hostile_terms_are_literal(scenario):
    qs, rows = scenario
    for value in ("100%_off", "%", "_", "50%", "c\\d"):
        assert found(qs, "args:" + value) == scan(rows, "args", value), value


def test_terms_and_or_parentheses(scenario):
    qs, rows = scenario
    a, b = scan(rows, "kwargs", "1234", key="order"), scan(rows, "", "shop.pay")
    assert found(qs, "kwargs:order=1234 shop.pay") == a & b
    assert found(qs, "kwargs:order=1234 AND shop.pay") == a & b
    c = scan(rows, "error", "timeout")
    assert found(qs, "error:timeout OR result:paid") == c | scan(rows, "result", "paid")
    assert found(qs, "(error:timeout OR result:paid) kwargs:order=1234") == (c | scan(rows, "result", "paid")) & a


def test_state_reuses_the_status_filter(scenario):
    qs, rows = scenario
    failed = {r["invocation_id"] for r in rows if r["status"] == "FAILED" and r["ts"] >= ago(86400).replace(tzinfo=None)}
    now_failed = {i["invocation_id"] for i in qs.invocations(app="searchapp", status=["FAILED"], limit=500)["items"]}
    assert found(qs, "state:failed") == now_failed
    assert found(qs, "state:FAILED kwargs:order=1234") == now_failed & scan(rows, "kwargs", "1234", key="order")
    ever_retry = {r["invocation_id"] for r in rows if r["status"] == "RETRY"}
    assert found(qs, "state:RETRY", status_mode="history") == ever_retry == {"inv-repr"}
    assert found(qs, "state:RETRY") == set()  # none is in RETRY now
    assert "inv-3h" in failed


def test_the_window_bounds_the_values(scenario):
    qs, rows = scenario
    # No since: values are read in the last 24 h (the list itself is unbounded: ids still match).
    assert "inv-old" not in found(qs, "kwargs:order=1234")
    page = qs.invocations(app="searchapp", q="kwargs:order=1234")
    assert page["search_window"]["since"].startswith((NOW - timedelta(hours=24)).isoformat()[:19])
    assert found(qs, "inv-old") == {"inv-old"}
    everything = found(qs, "kwargs:order=1234", since="all")
    assert everything == scan(rows, "kwargs", "1234", key="order", since=None)
    assert "inv-old" in everything
    # since=-1h: the list's window is the values' window too.
    assert found(qs, "kwargs:order=1234", since="-1h") == scan(rows, "kwargs", "1234", key="order", since=ago(3600))
    assert "search_window" not in qs.invocations(app="searchapp", q="state:FAILED")


@pytest.mark.parametrize("q,says", [
    ('args:"unclosed', "unclosed quote"), ("foo:bar", "unknown prefix 'foo:'"), ("state:NOPE", "unknown status"),
    ("kwargs:=1", "needs a key and a value"), ("kwargs:order=", "needs a key and a value"), ("(a", "unclosed parenthesis"),
    ("a OR", "OR must be followed"), ("NOT a", "NOT is not supported"), ("args:", "needs a value"), ("a)", "unexpected"),
    ("()", "empty parentheses"), ("x" * 2049, "longer than 2048"), (" ".join(["t"] * 33), "more than 32 terms"),
    ("((((((a))))))", "levels of parentheses"), ('""', "empty quoted phrase")])
def test_malformed_queries_are_bad_requests(scenario, q, says):
    qs, _ = scenario
    for read in (qs.invocations, qs.runs):
        with pytest.raises(BadRequest, match=None) as err:
            read(q=q)
        assert says in str(err.value) and "kwargs:order=1234" in str(err.value)


def test_quoted_colon_and_non_word_prefixes_are_free_text(scenario):
    qs, rows = scenario
    assert found(qs, '"C:\\\\temp"') == scan(rows, "", "C:\\temp")
    assert found(qs, "{order:1234,") == scan(rows, "", "{order:1234,")  # ':' after a non-word prefix: free text
