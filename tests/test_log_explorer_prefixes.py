"""Pasted logs as people paste them: pynenc's real log lines behind the prefixes of `docker compose logs`
(with and without -t, any padding), `docker logs -t`, `kubectl logs --prefix [--timestamps]`, journalctl and
syslog read as if unprefixed; lines in no known format are entries of their own and are still searched."""
from __future__ import annotations

import uuid

import httpx
import pytest

from tasktrail.proto.emitter import Emitter, Runner
from tasktrail.query import log_explorer

from . import pynenc_fixture_store
from .helpers import wait_until

FIXTURES = ["text.log", "json.log", "ppr_text.log", "ppr_json.log", "trig_text.log", "trig_json.log"]
NANO = "2026-11-30T10:00:00.123456789Z"
# style -> (how the tool prefixes a line, the source the explorer should keep)
STYLES = {
    "compose": (lambda l: "worker-1  | " + l, "worker-1"),
    "compose-wide-padding": (lambda l: "shop-worker-1        | " + l, "shop-worker-1"),
    "compose-no-padding": (lambda l: "w-2| " + l, "w-2"),
    "compose -t": (lambda l: f"worker-1  | {NANO} " + l, "worker-1"),
    "docker logs -t": (lambda l: f"{NANO} " + l, None),
    "kubectl --prefix": (lambda l: "[pod/worker-7d9f8c-x2l/worker] " + l, "pod/worker-7d9f8c-x2l/worker"),
    "kubectl --prefix --timestamps": (lambda l: "[pod/w-1/c] 2026-11-30T10:00:00.5+01:00 " + l, "pod/w-1/c"),
    "journalctl": (lambda l: "Nov 30 10:00:00 node-3 pynenc-worker[4121]: " + l, "pynenc-worker"),
    "journalctl short-iso": (lambda l: "2026-11-30T10:00:00+0000 node-3 pynenc-worker[4121]: " + l, "pynenc-worker"),
    "syslog <PRI>": (lambda l: "<14>Nov  3 10:00:00 node-3 worker: " + l, "worker"),
    "syslog RFC 5424": (lambda l: "<165>1 2026-11-30T10:00:00.003Z node-3 worker 4121 ID47 - " + l, "worker"),
    "compose + docker stamp + kubectl": (lambda l: f"agg-1 | {NANO} [pod/p/c] " + l, "agg-1 / pod/p/c"),
}
SAME = ("message", "continuation", "runners", "refs", "invocation_id", "task_id", "level", "logger", "format",
        "atomic_service_run_id")


def fixture_lines(name: str) -> list[str]:
    return (pynenc_fixture_store.LOGS / name).read_text().splitlines()


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("name", FIXTURES)
def test_prefixed_fixture_reads_as_unprefixed(name, style):
    prefix, source = STYLES[style]
    lines = fixture_lines(name)
    plain = log_explorer.parse("\n".join(lines))
    got = log_explorer.parse("\n".join(prefix(l) for l in lines))
    assert len(got) == len(plain)
    for g, p in zip(got, plain):
        assert {k: g[k] for k in SAME} == {k: p[k] for k in SAME}, (style, p["raw"])
        assert g["source"] == source and g["line_no"] == p["line_no"]
        assert g["raw"].startswith(prefix("")[:5])  # the line as pasted
    if name == "text.log":  # the traceback under a prefix stays with its EXCEPTION line, exception line too
        exc = next(g for g in got if g["message"].endswith("EXCEPTION"))
        assert exc["continuation"][0] == "Traceback (most recent call last):"
        assert exc["continuation"][-1] == 'ValueError: boom' and len(exc["continuation"]) == 10


def test_colours_and_interleaved_containers():
    """Compose colours its prefixes and interleaves containers: a traceback stays with its own
    container's line even with another container's lines in between."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    text = "\n".join([
        f"\x1b[36mworker-1  | \x1b[0m2026-11-30 10:00:00.000+00:00 ERROR    pynenc.x [TR(aaaa1111)] invocation:{a} EXCEPTION",
        f"\x1b[33mworker-2  | \x1b[0m2026-11-30 10:00:00.001+00:00 INFO     pynenc.x [TR(bbbb2222)] invocation:{b} status:running",
        "\x1b[36mworker-1  | \x1b[0mTraceback (most recent call last):",
        f"\x1b[33mworker-2  | \x1b[0m2026-11-30 10:00:00.002+00:00 INFO     pynenc.x [TR(bbbb2222)] invocation:{b} status:success",
        '\x1b[36mworker-1  | \x1b[0m  File "/app/tasks.py", line 3, in f',
        "\x1b[36mworker-1  | \x1b[0mKeyError: 'x'",
        "\x1b[36mworker-1  | \x1b[0m",
        "\x1b[36mworker-1  | \x1b[0mDuring handling of the above exception, another exception occurred:",
        "\x1b[36mworker-1  | \x1b[0mTraceback (most recent call last):",
        '\x1b[36mworker-1  | \x1b[0m  File "/app/tasks.py", line 5, in f',
        "\x1b[36mworker-1  | \x1b[0mRuntimeError",
        "\x1b[36mworker-1  | \x1b[0mprinted by the task after the error",
    ])
    entries = log_explorer.parse(text)
    assert [(e["source"], e["format"]) for e in entries] == [
        ("worker-1", "text"), ("worker-2", "text"), ("worker-2", "text"), ("worker-1", "text")]
    assert {"kind": "invocation", "value": a} in entries[0]["refs"] and entries[0]["continuation"] == [
        "Traceback (most recent call last):", '  File "/app/tasks.py", line 3, in f', "KeyError: 'x'",
        "During handling of the above exception, another exception occurred:",
        "Traceback (most recent call last):", '  File "/app/tasks.py", line 5, in f', "RuntimeError"]
    assert entries[2]["message"].endswith("status:success") and entries[2]["continuation"] == []
    assert entries[3]["message"] == "printed by the task after the error" and entries[3]["line_no"] == 12


def test_unparsed_lines_are_their_own_entries_and_searched():
    inv = str(uuid.uuid4())
    text = "\n".join([
        "2026-11-30 10:00:00.000+00:00 INFO     pynenc.x [TR(aaaa1111)] Starting ThreadRunner",
        f"worker-1  | {NANO} celery@host ready. task_id={inv} (order/2026/7),",
        "Nov 30 10:00:01 node-3 cron[99]: nightly run invocation:abc-1 done",
        "plain print with nothing in it",
        "2026-11-30T10:00:02Z INFO     pynenc.y [TR(bbbb2222)] a T-stamped pynenc line is no prefix",
    ])
    entries = log_explorer.parse(text)
    assert len(entries) == 5 and [e["line_no"] for e in entries] == [1, 2, 3, 4, 5]
    second, third, fourth, fifth = entries[1:]
    assert second["format"] == "text" and second["source"] == "worker-1" and second["timestamp"] == NANO
    assert second["message"] == f"celery@host ready. task_id={inv} (order/2026/7),"
    assert inv in second["tokens"] and "order/2026/7" in second["tokens"] and "celery@host" in second["tokens"]
    assert third["source"] == "cron" and third["timestamp"] == "Nov 30 10:00:01"
    assert third["refs"] == [{"kind": "invocation", "value": "abc-1"}]
    assert fourth["tokens"] == [] and fourth["refs"] == []
    assert fifth["source"] is None and fifth["level"] == "INFO" and fifth["runners"] == [{"class": "TR", "id": "bbbb2222"}]


# --- through a running server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    from .helpers import start_server
    srv = start_server(str(tmp_path_factory.mktemp("lx") / "tt.duckdb"), "--ingest-token", "tok123")
    loaded = pynenc_fixture_store.load(srv, ["text.log", "ppr_json.log"])
    wait_until(lambda: all(srv.get(f"/invocations/{i}").status_code == 200 for i in loaded["finals"]),
               timeout=30, message="the pynenc facts")
    yield srv, loaded
    srv.stop()


def explore(srv, text: str) -> dict:
    r = httpx.post(srv.api + "/log-explorer", content=text.encode(), headers={"Content-Type": "text/plain"},
                   timeout=60)
    assert r.status_code == 200, r.text[:300]
    return r.json()


def resolved(res: dict) -> tuple:
    invs = {l["invocation"]["id"] for l in res["lines"] if l["invocation"] and l["invocation"]["resolved"]}
    runners = {r["id"] for l in res["lines"] for r in l["runners"] if r["resolved"]}
    return invs, runners


@pytest.mark.parametrize("name", ["text.log", "ppr_json.log"])
def test_server_resolves_prefixed_pastes_like_plain_ones(stored, name):
    srv, loaded = stored
    lines = fixture_lines(name)
    plain = explore(srv, "\n".join(lines))
    invs, runners = resolved(plain)
    assert len(invs) >= 5 and len(runners) >= 2 and invs <= set(loaded["finals"])
    for style in ("compose -t", "kubectl --prefix", "journalctl", "compose + docker stamp + kubectl"):
        prefix, source = STYLES[style]
        res = explore(srv, "\n".join(prefix(l) for l in lines))
        assert res["counts"] == plain["counts"], style
        assert resolved(res) == (invs, runners), style
        assert {l["source"] for l in res["lines"]} == {source}
        assert res["timeline"] == plain["timeline"]


def test_server_finds_stored_ids_in_unparsed_lines(stored):
    """Lines in no known format name stored invocations, runners and tasks by bare id: each resolves
    (one entry per line); a UUID that is nothing stored is shown unresolved, never guessed."""
    srv, loaded = stored
    em = Emitter(f"http://{srv.otlp_grpc}", "lx-free", token="tok123")
    free_inv, free_runner = "export/2026-11/user-7", "celery@worker-3"
    em.status(free_inv, "REGISTERED", task_id="shop.export")
    em.status(free_inv, "RUNNING", runner=Runner(free_runner, "CeleryWorker"))
    assert em.flush()
    em.shutdown()
    wait_until(lambda: srv.get("/invocations", params={"q": "user-7"}).json()["items"], message="the free ids")
    pynenc_inv = next(iter(loaded["finals"]))
    unknown = str(uuid.uuid4())
    text = "\n".join([
        f"worker-1  | [2026-11-30 10:00:00,000: INFO/MainProcess] Task shop.export[{free_inv}] received",
        f"worker-1  | {free_runner} picked it up; see also {pynenc_inv}.",
        f"[pod/p/c] retrying {unknown} later",
        "worker-1  | nothing to see",
    ])
    res = explore(srv, text)
    assert res["counts"]["lines"] == 4
    refs = [{(r["kind"], r["value"]): r for r in l["refs"]} for l in res["lines"]]
    assert refs[0][("task", "shop.export")]["resolved"]
    assert refs[0][("invocation", free_inv)]["resolved"]
    assert refs[1][("runner", free_runner)]["resolved"] and refs[1][("invocation", pynenc_inv)]["resolved"]
    link = refs[1][("invocation", pynenc_inv)]["link"]
    assert httpx.get(srv.web + link, params={"format": "json"}).json()["invocation_id"] == pynenc_inv
    free_link = refs[0][("invocation", free_inv)]["link"]
    assert httpx.get(srv.web + free_link, params={"format": "json"}).json()["invocation_id"] == free_inv
    assert refs[2][("id", unknown)]["resolved"] is False and refs[2][("id", unknown)]["link"] is None
    assert refs[3] == {}
    assert res["counts"]["invocations"] == {"resolved": 2, "total": 2}
    assert res["counts"]["runners"] == {"resolved": 1, "total": 1}
