"""The search scenario (issue 18) the read-model, API and browser tests share: invocations whose
arguments take every stored shape (JSON objects, nested objects, arrays, JSON scalars, plain text,
Python reprs, pynenc's str(Arguments)), results and errors with hostile characters, one just inside and
one outside the default search window; and the independent scan that says what each term must find,
in plain Python over the transitions the log stored (json.loads, substring tests, a hand-written pair
scan), never through query/search.py."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

from tasktrail.proto.emitter import Runner

APP = "searchapp"
RUNNER = Runner("r-1", "PPRWorker", hostname="h", pid=1)
# The stored columns the scan reads.
SCAN_SQL = ("SELECT invocation_id, task_id, status, ts, arguments, result, error_type, error_message "
            "FROM transitions WHERE app_id = 'searchapp'")


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
    ("inv-rv", "python::rvapp.add", 430, [2, 3], ("ok", 5)),  # a rustvello task name: `::` is no prefix
    ("inv-old", "shop.pay", 2 * 86400, {"order": 1234}, ("ok", "old")),
    ("inv-3h", "shop.pay", 3 * 3600, "order=1234", ("fail", "Timeout", "late")),
]


def emit(em, now: datetime) -> None:
    """Send CASES through the emitter `em` at their times before `now` (an aware UTC datetime)."""
    def ago(secs):
        return now - timedelta(seconds=secs)
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


def scan(rows, field: str, value: str, key=None, since: datetime | None = None) -> set:
    """The invocations of the scenario a single term finds, by scanning the stored transitions `rows`
    (SCAN_SQL) recorded at or after `since` (naive UTC; None: all)."""
    lo = since
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


def quote(term: str) -> str:
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'
