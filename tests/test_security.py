"""No one gets in uninvited: tokens from flags, files and the environment; read-only SQL in fact;
security headers, JSON content types and CSRF checks on every answer and mutating route."""
import os
import subprocess
import sys

import httpx

from .helpers import fixture_requests, start_server

SECTION = "Security"


def test_tokens_from_files_and_environment(tmp_path, record):
    (tmp_path / "ingest.tok").write_text("in-secret\n")
    (tmp_path / "api.tok").write_text("api-secret\n")
    env = {**os.environ, "TASKTRAIL_INGEST_TOKEN_FILE": str(tmp_path / "ingest.tok")}
    srv = start_server(str(tmp_path / "tt.duckdb"), "--api-token-file", str(tmp_path / "api.tok"),
                       "--metrics-private", env=env)
    try:
        sig, body = fixture_requests()[0]
        ct = {"Content-Type": "application/x-protobuf"}
        tried = {
            "ingest without a token": httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=ct).status_code,
            "ingest with the API token": httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers={
                **ct, "Authorization": "Bearer api-secret"}).status_code,
            "API without a token": httpx.get(srv.api + "/apps").status_code,
            "API with the ingest token": httpx.get(srv.api + "/apps",
                                                   headers={"Authorization": "Bearer in-secret"}).status_code,
            "/metrics without a token (--metrics-private)": httpx.get(srv.web + "/metrics").status_code,
        }
        assert set(tried.values()) == {401}, tried
        assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body,
                          headers={**ct, "Authorization": "Bearer in-secret"}).status_code == 200
        assert httpx.get(srv.api + "/apps", headers={"Authorization": "Bearer api-secret"}).status_code == 200
        assert httpx.get(srv.web + "/metrics", headers={"Authorization": "Bearer api-secret"}).status_code == 200
        assert httpx.get(srv.web + "/healthz").status_code == 200
        # A browser without the cookie is sent to the login page, not shown data.
        r = httpx.get(srv.web + "/invocations", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        srv.stop()
    record(SECTION, "tokens read from a file (--api-token-file) and the environment (TASKTRAIL_INGEST_TOKEN_FILE); "
                    "requests without or with the other token", len(tried),
           "401 each (" + "; ".join(tried) + "); /healthz open; a browser is sent to /login")


def test_public_bind_without_tokens_warns(tmp_path, record):
    out = subprocess.run([sys.executable, "-m", "tasktrail", "serve", "--db", str(tmp_path / "x.duckdb"),
                          "--host", "0.0.0.0", "--http-port", "0", "--otlp-http-port", "0", "--otlp-grpc-port", "0",
                          "--help"], capture_output=True, text=True)
    assert "127.0.0.1" in out.stdout  # the documented default
    srv = start_server(str(tmp_path / "tt.duckdb"), "--host", "0.0.0.0")
    try:
        assert "0.0.0.0" in srv.web or "0.0.0.0" in "".join(srv.output)
    finally:
        srv.stop()
    warned = [line for line in srv.output if "without both --ingest-token and --api-token" in line]
    assert warned, srv.output
    local = start_server(str(tmp_path / "tt2.duckdb"))
    try:
        assert local.web.startswith("http://127.0.0.1:")
    finally:
        local.stop()
    assert not [line for line in local.output if "without both" in line]
    record(SECTION, "default bind, and binding 0.0.0.0 without tokens", 2,
           "binds 127.0.0.1 unless told; on 0.0.0.0 without both tokens it warns at start")


REFUSED_SQL = [
    ("insert into transitions select * from transitions", "only read-only SELECT"),
    ("update transitions set status = 'SUCCESS'", "only read-only SELECT"),
    ("delete from transitions", "only read-only SELECT"),
    ("create table x as select 1", "only read-only SELECT"),
    ("drop table transitions", "only read-only SELECT"),
    ("attach '/tmp/x.db' as x", "only read-only SELECT"),
    ("copy transitions to '/tmp/out.csv'", "only read-only SELECT"),
    ("install httpfs", "only read-only SELECT"),
    ("load httpfs", "only read-only SELECT"),
    ("set threads = 1", "only read-only SELECT"),
    ("pragma database_list", "only read-only SELECT"),
    # File-reading table functions are refused by the guard's list of read-only ones; a file named as a table
    # (DuckDB's replacement scan) gets past the guard; the store's second wall does not even look for it.
    ("select * from read_csv('/etc/passwd')", "not allowed in ad-hoc SQL"),
    ("select * from read_text('/etc/passwd')", "not allowed in ad-hoc SQL"),
    ("select * from glob('/*')", "not allowed in ad-hoc SQL"),
    ("select * from '/etc/passwd'", "does not exist"),
    ("select * from checkpoint()", "stalls every commit"),
    ("select 1; drop table transitions", "exactly one statement"),
    ("with x as (select 1) insert into transitions select * from transitions", "only read-only SELECT"),
]


def test_sql_is_read_only_in_fact(server, tmp_path, record):
    for sig, body in fixture_requests():
        httpx.post(f"{server.otlp_http}/v1/{sig}", content=body, headers={
            "Content-Type": "application/x-protobuf", "Authorization": "Bearer tok123"}).raise_for_status()
    before = httpx.post(server.api + "/sql", json={"sql": "select count(*) from transitions"}).json()["rows"]
    for sql, needle in REFUSED_SQL:
        r = httpx.post(server.api + "/sql", json={"sql": sql})
        assert r.status_code == 400 and needle in r.json()["error"]["message"], (sql, r.text)
        cli = subprocess.run([sys.executable, "-m", "tasktrail", "sql", "--url", server.web, sql],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode != 0 and "400" in cli.stderr, (sql, cli.stderr)
    assert httpx.post(server.api + "/sql", json={"sql": "select count(*) from transitions"}).json()["rows"] == before
    assert not os.path.exists("/tmp/out.csv") or os.path.getmtime("/tmp/out.csv") < os.path.getmtime(server.db)
    r = httpx.post(server.api + "/sql", json={"sql": "select * from range(50000)"}).json()
    assert r["truncated"] and len(r["rows"]) == 10_000
    record(SECTION, "SQL that writes, ATTACHes, COPYs, INSTALLs/LOADs, SETs, PRAGMAs, reads files (read_csv "
                    "/etc/passwd, read_text, glob) or stacks statements; over the API and `tasktrail sql --url`",
           2 * len(REFUSED_SQL), "400 naming why, every time, over both; the store unchanged; a 50,000-row "
                                 "answer cut at the 10,000-row cap and marked truncated")


def test_headers_content_types_and_csrf(server, record):
    pages = ["/", "/invocations", "/timeline", "/api/v1/invocations", "/api/v1/openapi.json", "/login", "/nope",
             "/api/v1/nope"]
    for path in pages:
        r = httpx.get(server.web + path, headers={"Accept": "text/html"})
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
        assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
        if path.startswith("/api/"):
            assert r.headers["content-type"].startswith("application/json")
    mutating = [("/api/v1/sql", {"json": {"sql": "select 1"}}), ("/api/v1/log-explorer", {"json": {"text": "x"}}),
                ("/login", {"data": {"token": "x"}}), ("/logout", {})]
    for path, kw in mutating:
        r = httpx.post(server.web + path, headers={"Origin": "http://evil.example"}, **kw)
        assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"], (path, r.text)
        same = httpx.post(server.web + path, headers={"Origin": server.web}, **kw)
        assert same.status_code != 403, path
        # A browser that sends no Origin still says where the request comes from: another site, or another
        # port of this host (same-site), may not act; its own pages may.
        for site in ("cross-site", "same-site"):
            r = httpx.post(server.web + path, headers={"Sec-Fetch-Site": site}, **kw)
            assert r.status_code == 403 and site in r.json()["error"]["message"], (path, site, r.text)
        assert httpx.post(server.web + path, headers={"Sec-Fetch-Site": "same-origin"}, **kw).status_code != 403
    record(SECTION, "security headers and content types on pages, API answers and errors; cross-site POSTs to "
                    "every mutating route (/api/v1/sql, /api/v1/log-explorer, /login, /logout)", len(pages) + len(mutating),
           "CSP with script-src 'self' (no inline script), X-Frame-Options DENY, nosniff on every answer; API "
           "answers application/json; cross-site POSTs 403 (by Origin, or by Sec-Fetch-Site cross-site or same-site "
           "without one), same-origin ones served")
