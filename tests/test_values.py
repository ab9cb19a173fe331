"""Huge values: megabytes of arguments, results, tracebacks and log lines, sent by the real emitter and the
OTel SDK, are shown as bounded previews with their sizes and links; the links download them byte for byte."""
import hashlib
import json
import re
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from tasktrail.proto.emitter import Emitter, Runner

from .helpers import CHROMIUM, require_chromium, start_server, wait_until

MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mib(data: bytes) -> str:
    return f"{len(data) / MB:.1f} MiB"


def huge_arguments() -> str:
    """About 5 MB of JSON with multi-byte text throughout (so cuts land inside characters); sent as the
    runner's own JSON text (the emitter's json.dumps would escape it to ASCII)."""
    rows = [{"id": i, "name": f"zoë-{i}-日本語", "note": "ß" * (i % 7), "tags": ["ä", "€", "😀"]}
            for i in range(52_000)]
    return json.dumps({"rows": rows, "total": len(rows)}, ensure_ascii=False)


def huge_traceback() -> str:
    frames = "".join(f'  File "/srv/app/module_{i}.py", line {i}, in step_{i}\n    do(“thing” {i})\n'
                     for i in range(9_000))
    return "Traceback (most recent call last):\n" + frames + "MemoryError: the import ran out of memory\n"


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A fresh server; one invocation carrying 5 MB of arguments, a 0.7 MB traceback (its first attempt's
    RETRY) and a 3 MB result; one with small values; log lines of 2 MB and of a few bytes."""
    srv = start_server(str(tmp_path_factory.mktemp("values") / "tt.duckdb"), "--ingest-token", "tok123")
    em = Emitter(f"http://{srv.otlp_grpc}", "bulk", Runner("bulk-runner", "ThreadRunner"), token="tok123")
    now = datetime.now(timezone.utc)
    at = lambda s: now - timedelta(seconds=30 - s)  # noqa: E731
    big, small = str(uuid.uuid4()), str(uuid.uuid4())
    args = huge_arguments()
    tb = huge_traceback()
    message = "the import ran out of memory while reading “rows” " * 200  # ~10 KB, multi-byte
    result = "".join(f"row {i}: ok ✓\n" for i in range(162_000))  # ~3 MB of plain text (not JSON)
    em.status(big, "REGISTERED", task_id="bulk.import", arguments=args, timestamp=at(0))
    em.status(big, "RUNNING", attempt=0, timestamp=at(1))
    em.status(big, "RETRY", attempt=0, error_type="MemoryError", error_message=message, error_traceback=tb,
              timestamp=at(2))
    em.status(big, "RUNNING", attempt=1, timestamp=at(3))
    em.status(big, "SUCCESS", attempt=1, result=result, timestamp=at(4))
    em.status(small, "REGISTERED", task_id="bulk.ping", arguments={"x": 1}, timestamp=at(5))
    em.status(small, "RUNNING", attempt=0, timestamp=at(6))
    em.status(small, "SUCCESS", attempt=0, result="pong", timestamp=at(7))
    assert em.flush(30_000)
    em.shutdown()

    provider = LoggerProvider(resource=Resource.create({"service.name": "bulk", "tasktrail.runner.id": "bulk-runner"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(
        OTLPLogExporter(endpoint=srv.otlp_http + "/v1/logs", headers={"authorization": "Bearer tok123"})))
    body = "".join(f"dump line {i}: 状態 ok\n" for i in range(77_000))  # ~2 MB
    log = provider.get_logger("bulk.import")
    log.emit(body=body, severity_text="INFO", severity_number=SeverityNumber.INFO,
             attributes={"tasktrail.invocation.id": big})
    log.emit(body="imported 60000 rows", severity_text="INFO", severity_number=SeverityNumber.INFO,
             attributes={"tasktrail.invocation.id": big})
    provider.shutdown()

    wait_until(lambda: srv.get(f"/invocations/{big}").json()["status"] == "SUCCESS"
               and srv.get(f"/invocations/{small}").json()["status"] == "SUCCESS", timeout=30, message="both invocations")
    wait_until(lambda: len(srv.get("/logs", params={"invocation": big}).json()["items"]) == 2, message="the log lines")
    whole = {"arguments": args.encode(), "result": result.encode(), "error_message": message.encode(),
             "error_traceback": tb.encode(), "log": body.encode()}
    yield srv, big, small, whole
    srv.stop()


def test_detail_is_small_and_says_what_was_cut(filled):
    srv, big, _, whole = filled
    r = srv.get(f"/invocations/{big}")
    assert r.status_code == 200
    assert len(r.content) < 64 * 1024, len(r.content)  # the values themselves are ~9.5 MB
    d = r.json()
    previews = {"arguments": d["arguments"], "result": d["result"], "error_message": d["error"]["message"],
                "error_traceback": d["error"]["traceback"]}
    assert d["error"]["type"] == "MemoryError"
    for name, preview in previews.items():
        v = d["values"][name]
        limit = 16384 if name == "error_traceback" else 4096
        shown = preview.encode()
        assert v["truncated"] is True and v["bytes"] == len(whole[name]), (name, v)
        assert v["preview_bytes"] == len(shown) and limit - 3 <= len(shown) <= limit, (name, v)
        assert whole[name].startswith(shown), name  # a prefix, cut between characters
        assert v["url"] == f"/api/v1/invocations/{big}/values/{name}"


def test_download_routes_return_the_whole_values(filled):
    srv, big, _, whole = filled
    d = srv.get(f"/invocations/{big}").json()
    for name, kind in (("arguments", "application/json"), ("result", "text/plain"),
                       ("error_message", "text/plain"), ("error_traceback", "text/plain")):
        r = httpx.get(srv.web + d["values"][name]["url"], timeout=60)
        assert r.status_code == 200, r.text[:200]
        assert sha(r.content) == sha(whole[name]), name
        assert int(r.headers["content-length"]) == len(whole[name])
        assert r.headers["content-type"].startswith(kind), r.headers["content-type"]
        disposition = r.headers["content-disposition"]
        assert disposition.startswith("attachment;") and f"{name}." in disposition
    assert json.loads(httpx.get(srv.web + d["values"]["arguments"]["url"], timeout=60).content)["total"] == 52_000


def test_small_values_are_whole_and_not_marked(filled):
    srv, _, small, _ = filled
    d = srv.get(f"/invocations/{small}").json()
    assert d["arguments"] == '{"x": 1}' and d["result"] == "pong" and d["error"] is None
    assert d["values"]["arguments"] == {"bytes": 8, "preview_bytes": 8, "truncated": False,
                                        "url": f"/api/v1/invocations/{small}/values/arguments"}
    assert d["values"]["result"]["truncated"] is False and set(d["values"]) == {"arguments", "result"}
    assert srv.get(f"/invocations/{small}/values/result").content == b"pong"
    page = httpx.get(f"{srv.web}/invocations/{small}", timeout=30).text
    assert "value-cut" not in page and "Download whole value" not in page


def timed(url: str, **kw) -> tuple[httpx.Response, float]:
    """The answer and the fastest of three GETs, in ms."""
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        r = httpx.get(url, timeout=60, **kw)
        ms = (time.perf_counter() - t0) * 1000
        best = ms if best is None else min(best, ms)
    return r, best


def test_page_is_small_and_shows_sizes_and_links(filled, record):
    srv, big, _, whole = filled
    r, page_ms = timed(f"{srv.web}/invocations/{big}")
    assert r.status_code == 200 and len(r.content) < 200 * 1024, len(r.content)
    html = r.text
    for name in ("arguments", "result", "error_message", "error_traceback"):
        assert f'href="/api/v1/invocations/{big}/values/{name}"' in html, name
    assert f"{mib(whole['arguments'])}, showing the first 4.0 KiB" in html
    assert f"{mib(whole['result'])}, showing the first 4.0 KiB" in html
    assert f"{len(whole['error_traceback']) / 1024:.1f} KiB, showing the first 16.0 KiB" in html
    assert html.count(">Download whole value</a>") == 4
    # The log lines (and the cut one's "Download whole line") come after the page shows: from /logs, asserted
    # in the browser (test_page_preview_and_download_link_in_a_browser); the page holds their placeholder.
    assert 'id="inv-logs-loading"' in html
    # The page's embedded data and its JSON twin carry previews only.
    embedded = re.search(r'<script type="application/json" id="page-data">(.*?)</script>', html, re.S).group(1)
    assert len(embedded) < 100 * 1024
    twin = httpx.get(f"{srv.web}/invocations/{big}", params={"format": "json"}, timeout=60)
    assert len(twin.content) < 100 * 1024 and twin.json()["values"]["arguments"]["truncated"] is True
    assert all(len(l["message"].encode()) <= 4096 for l in twin.json()["logs"])
    detail, detail_ms = timed(f"{srv.api}/invocations/{big}")
    sizes = ", ".join(f"{len(whole[k]) / MB:.1f} MiB of {k.replace('_', ' ')}" for k in (
        "arguments", "result", "error_traceback"))
    record("API", f"one invocation carrying {sizes} (the tasktrail emitter over gRPC), and a "
                  f"{len(whole['log']) / MB:.1f} MiB log line (the OTel SDK)", 1,
           f"detail {len(detail.content) / 1024:.0f} KB in {detail_ms:.0f} ms, page {len(r.content) / 1024:.0f} KB "
           f"in {page_ms:.0f} ms; each value a preview cut on a character boundary, with its size and a link that "
           "downloads it whole, byte for byte")


def test_task_error_message_is_previewed(filled):
    srv, big, _, whole = filled
    errors = srv.get("/tasks/bulk.import", params={"since": "all"}).json()["errors"]
    latest = next(e["latest"] for e in errors if e["error_type"] == "MemoryError")
    assert latest["invocation_id"] == big and whole["error_message"].startswith(latest["message"].encode())
    assert latest["values"]["message"] == {"bytes": len(whole["error_message"]),
                                           "preview_bytes": len(latest["message"].encode()), "truncated": True,
                                           "url": None}
    assert len(latest["message"].encode()) <= 4096


def test_multibyte_cut_point_stays_valid_utf8(tmp_path):
    """Cuts that would split a 2-, 3- and 4-byte character; preview sizes set by flag and environment."""
    import os
    env = {**os.environ, "TASKTRAIL_TRACEBACK_PREVIEW_BYTES": "203"}
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "tok123", "--preview-bytes", "101", env=env)
    try:
        em = Emitter(endpoint=srv.otlp_http, app_id="utf", protocol="http/protobuf", token="tok123")
        cases = {str(uuid.uuid4()): ("a" * 100 + "é" * 50, "b" * 99 + "€" * 40, "c" * 202 + "😀" * 30)}
        cases[str(uuid.uuid4())] = ("😀" * 40, "x" + "€" * 40, "日本" * 100)
        for inv, (arg, msg, tb) in cases.items():
            em.status(inv, "REGISTERED", task_id="utf.cut", arguments=arg)
            em.status(inv, "FAILED", error_type="E", error_message=msg, error_traceback=tb)
        assert em.flush()
        em.shutdown()
        for inv, (arg, msg, tb) in cases.items():
            d = wait_until(lambda: srv.get(f"/invocations/{inv}").json() if
                           srv.get(f"/invocations/{inv}").status_code == 200 else None, message=inv)
            for name, text, whole, limit in (("arguments", d["arguments"], arg, 101),
                                             ("error_message", d["error"]["message"], msg, 101),
                                             ("error_traceback", d["error"]["traceback"], tb, 203)):
                raw = text.encode("utf-8")  # the JSON held a valid string: no half character survived
                assert whole.encode().startswith(raw) and limit - 3 <= len(raw) <= limit, (name, text)
                assert d["values"][name]["preview_bytes"] == len(raw) and d["values"][name]["truncated"]
                assert srv.get(f"/invocations/{inv}/values/{name}").content == whole.encode()
            page = httpx.get(f"{srv.web}/invocations/{inv}", timeout=30)
            page.content.decode("utf-8")  # strict: the page is valid UTF-8
            assert d["arguments"] in page.text or d["arguments"].replace("'", "&#39;") in page.text
    finally:
        srv.stop()


def test_the_value_shown_and_downloaded_is_the_one_the_history_ends_with(server):
    """Two failed attempts with different errors, the second sent by a host whose clock is behind (its
    records carry earlier times): the detail previews the second attempt's error and its links download
    that one. A retried FAILED whose message moves onto the RETRY (rustvello) still downloads whole."""
    em = Emitter(f"http://{server.otlp_grpc}", "skew", Runner("skew-runner"), token="tok123")
    w1, w2 = Runner("w-ahead", parent_id="skew-runner"), Runner("w-behind", parent_id="skew-runner")
    now = datetime.now(timezone.utc)
    at = lambda s: now - timedelta(seconds=60 - s)  # noqa: E731
    msg_a, msg_b = "first attempt: ä " * 400, "second attempt: ✓ " * 500
    tb_a, tb_b = "Traceback A\n" + "  frame a\n" * 3000, "Traceback B\n" + "  frame b\n" * 4000
    skewed, moved = str(uuid.uuid4()), str(uuid.uuid4())
    em.status(skewed, "REGISTERED", task_id="skew.job", arguments=[1, 2], timestamp=at(0))
    em.status(skewed, "RUNNING", runner=w1, attempt=0, timestamp=at(10))
    em.status(skewed, "FAILED", runner=w1, attempt=0, error_type="A", error_message=msg_a, error_traceback=tb_a,
              timestamp=at(20))
    em.status(skewed, "RETRY", runner=w1, attempt=0, timestamp=at(20.1))
    em.status(skewed, "RUNNING", runner=w2, attempt=1, timestamp=at(5))    # w-behind: 20 s slow
    em.status(skewed, "FAILED", runner=w2, attempt=1, error_type="B", error_message=msg_b, error_traceback=tb_b,
              timestamp=at(6))
    em.status(moved, "REGISTERED", task_id="skew.job", timestamp=at(0))
    em.status(moved, "RUNNING", runner=w1, attempt=0, timestamp=at(1))
    em.status(moved, "FAILED", runner=w1, attempt=0, error_type="A", error_message=msg_a, timestamp=at(2))
    em.status(moved, "RETRY", runner=w1, attempt=0, timestamp=at(2))
    em.status(moved, "RUNNING", runner=w1, attempt=1, timestamp=at(3))
    em.status(moved, "SUCCESS", runner=w1, attempt=1, result="done", timestamp=at(4))
    assert em.flush()
    em.shutdown()
    wait_until(lambda: server.get(f"/invocations/{moved}").json()["status"] == "SUCCESS", message="both invocations")
    d = server.get(f"/invocations/{skewed}").json()
    assert [(h["status"], h["attempt"]) for h in server.get(f"/invocations/{skewed}/history").json()] == [
        ("REGISTERED", None), ("RUNNING", 0), ("RETRY", 0), ("RUNNING", 1), ("FAILED", 1)]
    assert d["status"] == "FAILED" and d["error"]["type"] == "B"
    assert msg_b.encode().startswith(d["error"]["message"].encode()) and d["values"]["error_message"]["truncated"]
    assert d["values"]["error_message"]["bytes"] == len(msg_b.encode())
    assert d["values"]["error_traceback"]["bytes"] == len(tb_b.encode())
    assert server.get(f"/invocations/{skewed}/values/error_message").content == msg_b.encode()
    assert server.get(f"/invocations/{skewed}/values/error_traceback").content == tb_b.encode()
    m = server.get(f"/invocations/{moved}").json()
    assert [h["status"] for h in server.get(f"/invocations/{moved}/history").json()] == [
        "REGISTERED", "RUNNING", "RETRY", "RUNNING", "SUCCESS"]
    assert m["error"]["type"] == "A" and m["values"]["error_message"]["bytes"] == len(msg_a.encode())
    assert server.get(f"/invocations/{moved}/values/error_message").content == msg_a.encode()
    # The pages say whose error it is: the failed invocation's own, the succeeded one's earlier attempt's.
    headings = {inv: re.search(r'<h2 id="error-heading">([^<]*)</h2>', httpx.get(server.web + f"/invocations/{inv}").text)
                for inv in (skewed, moved)}
    assert headings[skewed].group(1) == "Error" and headings[moved].group(1) == "Error of an earlier attempt"


def test_huge_log_line_is_previewed_and_downloadable(filled):
    srv, big, _, whole = filled
    lines = {l["message"][:9]: l for l in srv.get("/logs", params={"invocation": big}).json()["items"]}
    cut, short = lines["dump line"], lines["imported "]
    v = cut["values"]["message"]
    assert v["truncated"] and v["bytes"] == len(whole["log"]) and v["preview_bytes"] <= 4096
    assert whole["log"].startswith(cut["message"].encode())
    assert short["values"]["message"] == {"bytes": 19, "preview_bytes": 19, "truncated": False, "url": None}
    r = httpx.get(srv.web + v["url"], timeout=60)
    assert r.status_code == 200 and sha(r.content) == sha(whole["log"])
    assert int(r.headers["content-length"]) == len(whole["log"]) and r.headers["content-disposition"].startswith("attachment")
    # The invocation's own lines, the logs page and the live tail carry the preview and the same link.
    inv_lines = srv.get(f"/invocations/{big}/logs").json()
    assert [l["values"]["message"]["url"] for l in inv_lines if l["values"]["message"]["truncated"]] == [v["url"]]
    page = httpx.get(f"{srv.web}/logs", params={"invocation": big}, timeout=30)
    assert len(page.content) < 64 * 1024 and f'href="{v["url"]}"' in page.text
    assert f"{mib(whole['log'])}, showing the first 4.0 KiB" in page.text
    with httpx.stream("GET", srv.api + "/logs/tail", params={"invocation": big, "backfill": "2"}, timeout=30) as s:
        events = []
        for line in s.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
            if len(events) == 2:
                break
    assert {e["values"]["message"]["url"] for e in events} == {v["url"], None}
    assert max(len(e["message"].encode()) for e in events) <= 4096


def test_bad_value_requests_answer_clearly(filled):
    srv, big, small, _ = filled
    cases = [(f"/invocations/{big}/values/kwargs", 404, "arguments, result, error_message, error_traceback"),
             (f"/invocations/{small}/values/error_traceback", 404, "has no error traceback"),
             ("/invocations/no-such-invocation/values/arguments", 404, "not in the log"),
             ("/logs/garbage/body", 400, "<batch>.<epoch micros>.<md5 of the body>"),
             ("/logs/1.99999999999999999999.00000000000000000000000000000000/body", 400, "md5 of the body"),
             ("/logs/1.1700000000000000.00000000000000000000000000000000/body", 404, "no log line")]
    for path, status, words in cases:
        r = srv.get(path)
        assert r.status_code == status, (path, r.status_code, r.text)
        assert r.json()["error"]["status"] == status and words in r.json()["error"]["message"], (path, r.text)


def test_page_preview_and_download_link_in_a_browser(filled):
    require_chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    srv, big, _, whole = filled
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(accept_downloads=True)
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.monotonic()
            page.goto(f"{srv.web}/invocations/{big}")
            loaded = time.monotonic() - t0
            shown = page.locator("#arguments").inner_text()
            assert shown.startswith('{"rows": [{"id": 0, "name": "zoë-0-日本語"') and len(shown.encode()) <= 4096
            note = page.locator("#arguments + p.value-cut")
            assert note.inner_text().startswith(f"{mib(whole['arguments'])}, showing the first 4.0 KiB")
            link = note.get_by_role("link", name="Download whole value")
            href = link.get_attribute("href")
            answer = page.request.get(srv.web + href)
            assert answer.status == 200 and len(answer.body()) == len(whole["arguments"])
            with page.expect_download() as dl:
                link.click()
            path = dl.value.path()
            with open(path, "rb") as fh:
                assert sha(fh.read()) == sha(whole["arguments"])
            assert dl.value.suggested_filename == f"{big}-arguments.json"
            # The log lines, loaded after the page showed: the cut one with its size and "Download whole line".
            page.locator('#logs-card[data-loaded="yes"]').wait_for()
            cut = page.locator("#inv-logs tbody tr:has(p.value-cut)")
            assert page.locator("#inv-logs tbody tr").count() == 2 and cut.count() == 1
            assert cut.locator("p.value-cut").inner_text().startswith(
                f"{mib(whole['log'])}, showing the first 4.0 KiB")
            line = cut.get_by_role("link", name="Download whole line")
            answer = page.request.get(srv.web + line.get_attribute("href"))
            assert answer.status == 200 and sha(answer.body()) == sha(whole["log"])
            assert errors == [] and loaded < 10
        finally:
            browser.close()
