"""`tasktrail sql` against the file and against a running server; a second `serve` on a held file."""
import json
import subprocess
import sys

import httpx

from .helpers import PB, fixture_requests, start_server


def run(*args):
    return subprocess.run([sys.executable, "-m", "tasktrail", "sql", *args], capture_output=True, text=True,
                          timeout=60)


def test_sql_file_and_url(tmp_path):
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db, "--ingest-token", "tok123", "--api-token", "api1")
    try:
        for sig, body in fixture_requests():
            assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
        r = run("select count(*) AS n from status_transitions", "--url", srv.web, "--token", "api1",
                "--format", "json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout) == [{"n": 24}]
        r = run("select 1", "--url", srv.web)
        assert r.returncode == 1 and "401" in r.stderr
        r = run("delete from transitions", "--url", srv.web, "--token", "api1")
        assert r.returncode == 1 and "only read-only SELECT" in r.stderr
    finally:
        srv.stop()
    r = run("select count(*) from status_transitions", "--db", db)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].strip() == "24"
    r = run("select status, count(*) AS n from status_transitions group by 1 order by 1", "--db", db, "--format", "csv")
    assert r.stdout.splitlines() == ["status,n", "FAILED,3", "REGISTERED,6", "RETRY,2", "RUNNING,8", "SUCCESS,5"]
    r = run("select * from read_text('/etc/hostname')", "--db", db)
    assert r.returncode == 1 and "Error" in r.stderr
    r = run("select 1", "--db", str(tmp_path / "missing.duckdb"))
    assert r.returncode == 1 and "no store at" in r.stderr


def test_second_serve_on_a_held_file_says_why(tmp_path):
    db = str(tmp_path / "tt.duckdb")
    srv = start_server(db)
    try:
        r = subprocess.run([sys.executable, "-m", "tasktrail", "serve", "--db", db, "--http-port", "0",
                            "--otlp-http-port", "0", "--otlp-grpc-port", "0"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert r.stderr.startswith("Error: cannot open store") and "lock" in r.stderr
        assert srv.get("/apps").status_code == 200  # the first one serves on
    finally:
        srv.stop()


def test_sql_without_db_names_the_demo_file_beside_an_empty_default(tmp_path):
    def here(*args):
        return subprocess.run([sys.executable, "-m", "tasktrail", "sql", *args], capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
    # Only the demo's file: the default is missing, and the message says where the data is.
    demo = tmp_path / "tasktrail-demo.duckdb"
    srv = start_server(str(demo), "--ingest-token", "tok123")
    try:
        for sig, body in fixture_requests():
            assert httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers=PB).status_code == 200
    finally:
        srv.stop()
    r = here("select 1")
    assert r.returncode == 1 and "no store at ./tasktrail.duckdb" in r.stderr
    assert "--db ./tasktrail-demo.duckdb" in r.stderr
    # An empty default file beside it: the answer comes from the empty file, and says so.
    srv = start_server(str(tmp_path / "tasktrail.duckdb"))
    srv.stop()
    r = here("select count(*) AS n from status_transitions", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout) == [{"n": 0}]
    assert "read ./tasktrail.duckdb, which holds no records yet" in r.stderr and "--db ./tasktrail-demo.duckdb" in r.stderr
    # With --db, or with a default that holds records, nothing more is said.
    r = here("select count(*) AS n from status_transitions", "--db", "./tasktrail-demo.duckdb", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)[0]["n"] > 0 and r.stderr == ""
