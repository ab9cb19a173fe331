"""Acknowledged means stored: restarts keep everything, retries are not stored twice."""
import os
import signal

import httpx

from .helpers import PB, fixture_requests, start_server, wait_until


def _children(pid: int) -> set[int]:
    """Pids of the live processes whose parent is `pid` (from /proc/<pid>/stat)."""
    out = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _counts(srv):
    q = "select (select count(*) from transitions), (select count(*) from spans), (select count(*) from ingest_ledger)"
    return httpx.post(srv.api + "/sql", json={"sql": q}).json()["rows"][0]


def test_restart_keeps_everything_acknowledged(tmp_path):
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123")
    reqs = fixture_requests()
    try:
        for sig, body in reqs:
            assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
        before = _counts(srv)
        history = srv.get("/invocations", params={"limit": 100}).json()
    finally:
        assert srv.stop(signal.SIGTERM) == 0
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        assert _counts(srv) == before == [24, 8, len(reqs)]
        assert srv.get("/invocations", params={"limit": 100}).json() == history
        # A client that retries after the restart is acknowledged and nothing is stored twice.
        for sig, body in reqs:
            assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
        assert _counts(srv) == before
    finally:
        srv.stop()


def test_kill_9_after_ack_loses_nothing(tmp_path):
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123", "--ingest-workers", "1")  # none by default on 2 cores
    reqs = fixture_requests()
    for sig, body in reqs:
        assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
    workers = _children(srv.proc.pid)
    assert workers, "the requests were mapped by ingest worker processes"
    srv.stop(signal.SIGKILL)
    # The server's worker processes do not outlive it (each watches its parent: ingest/workers.py).
    wait_until(lambda: not [pid for pid in workers if _alive(pid)], timeout=10, message="the workers gone")
    srv = start_server(db, "--ingest-token", "tok123")
    try:
        assert _counts(srv) == [24, 8, len(reqs)]
    finally:
        srv.stop()
