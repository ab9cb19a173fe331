"""DNS rebinding: a listener without a token answers only to the names it is reached by, on the web and
the OTLP/HTTP port, whatever the spelling (port suffix, IPv6 literal forms, case)."""
import itertools
import json
import socket
import subprocess
import sys

import httpx

from .helpers import start_server
from .reliability import numbered_request

SECTION = "Security"
JSON_LOGS = {"Content-Type": "application/json"}
PB_LOGS = {"Content-Type": "application/x-protobuf"}
_NUMBERS = itertools.count(1)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _web(srv, host: str) -> httpx.Response:
    return httpx.get(srv.api + "/apps", headers={"Host": host}, timeout=10)


def _otlp(srv, host: str) -> httpx.Response:
    """An export of one log line no other request carries (identical requests are acknowledged once)."""
    return httpx.post(srv.otlp_http + "/v1/logs", content=numbered_request(next(_NUMBERS), 1),
                      headers={**PB_LOGS, "Host": host}, timeout=10)


def _refused(r: httpx.Response, port: str) -> bool:
    """400 in the port's error shape (the web's {"error": ...}; OTLP's google.rpc.Status as JSON)."""
    if r.status_code != 400:
        return False
    body = r.json()
    message = body["error"]["message"] if port == "web" else body["message"]
    return "DNS rebinding" in message and "--allowed-host" in message


def test_default_bind_answers_only_to_loopback_names(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"))
    try:
        ports = {"web": _port(srv.web), "otlp": _port(srv.otlp_http)}
        tried = 0
        for name, call in (("web", _web), ("otlp", _otlp)):
            p = ports[name]
            for host in ("127.0.0.1", f"127.0.0.1:{p}", "localhost", f"LocalHost:{p}", "[::1]", f"[::1]:{p}",
                         f"[0:0:0:0:0:0:0:1]:{p}", f"[::ffff:127.0.0.1]:{p}"):
                r = call(srv, host)
                assert r.status_code == 200, (name, host, r.status_code, r.text)
                tried += 1
            for host in ("evil.example", f"evil.example:{p}", f"127.0.0.1.evil.example:{p}", "localhost.evil.example",
                         f"[::2]:{p}", "10.0.0.1", f"{socket.gethostname()}:{p}", "", "[::1", f"localhost:{p}x"):
                r = call(srv, host)
                assert _refused(r, name), (name, host, r.status_code, r.text)
                tried += 1
        # The rebinding attack itself: a page at http://evil.example:PORT, rebound to 127.0.0.1, posts SQL
        # from its own origin (the CSRF check compares Origin with that same Host, so it passed before).
        p = ports["web"]
        r = httpx.post(srv.api + "/sql", json={"sql": "select 42"},
                       headers={"Host": f"evil.example:{p}", "Origin": f"http://evil.example:{p}"})
        assert _refused(r, "web"), r.text
        r = httpx.post(srv.api + "/sql", json={"sql": "select 42"}, headers={"Origin": srv.web})
        assert r.json()["rows"] == [[42]]
        # Refused OTLP stored nothing; allowed OTLP was stored.
        r = httpx.post(srv.otlp_http + "/v1/logs", content=json.dumps({"resourceLogs": []}),
                       headers={**JSON_LOGS, "Host": "evil.example"})
        assert r.status_code == 400 and r.headers["content-type"] == "application/json"
        stored = httpx.post(srv.api + "/sql", json={"sql": "select count(*) from log_records"}).json()["rows"][0][0]
        assert stored == 8, stored  # the 8 allowed spellings, one record each
    finally:
        srv.stop()
    record(SECTION, "DNS rebinding, default bind without tokens: Host spellings sent to the web and OTLP/HTTP "
                    "ports (127.0.0.1, localhost, [::1], with and without port, long and IPv4-mapped IPv6 forms, "
                    "upper case; evil.example, 127.0.0.1.evil.example, [::2], 10.0.0.1, the hostname, empty, "
                    "malformed) and a rebound page POSTing SQL from its own origin", tried + 1,
           "loopback spellings served; every other Host 400 in the port's error shape (naming --allowed-host), "
           "nothing stored or run; the rebound page's SQL refused")


def test_allowed_hosts_public_url_and_wildcard_binds(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--allowed-host", "tasktrail.example",
                       "--allowed-host", "*.corp.example", "--public-url", "https://ui.example:8443/")
    try:
        for host in ("tasktrail.example", "tasktrail.example:80", "a.corp.example", "b.a.corp.example:1",
                     "ui.example", "localhost"):
            assert _web(srv, host).status_code == 200, host
            assert _otlp(srv, host).status_code == 200, host
        for host in ("corp.example", "xcorp.example", "tasktrail.example.evil", "evil.example"):
            assert _refused(_web(srv, host), "web"), host
            assert _refused(_otlp(srv, host), "otlp"), host
    finally:
        srv.stop()
    # Bound to every interface: addresses and the machine's hostname too, still no foreign names.
    wide = start_server(str(tmp_path / "wide.duckdb"), "--host", "0.0.0.0")
    try:
        for host in ("10.1.2.3:8000", "192.168.0.7", "[fd00::7]:1", socket.gethostname(), "localhost"):
            assert _web(wide, host).status_code == 200, host
            assert _otlp(wide, host).status_code == 200, host
        assert _refused(_web(wide, "evil.example"), "web") and _refused(_otlp(wide, "evil.example"), "otlp")
    finally:
        wide.stop()
    # Bound to ::1 only: its bracketed forms.
    v6 = start_server(str(tmp_path / "v6.duckdb"), "--host", "::1")
    try:
        assert v6.web.startswith("http://[::1]:")
        p = _port(v6.web)
        for host in (f"[::1]:{p}", "[0::1]", "localhost"):
            assert _web(v6, host).status_code == 200, host
        assert _refused(_web(v6, "evil.example"), "web")
    finally:
        v6.stop()
    record(SECTION, "--allowed-host (a name, *.corp.example), --public-url's host, --host 0.0.0.0 (IP literals, "
                    "the hostname) and --host ::1, on the web and OTLP/HTTP ports", 3,
           "the names given (and subdomains of the wildcard, not the bare domain or look-alikes) served; "
           "foreign names 400")


def test_token_listeners_serve_any_host_with_the_token(tmp_path, record):
    """With a token a rebound page cannot authenticate, so the Host is not checked: a load balancer's
    name keeps working, and the answers stay as they were (401 without the token)."""
    srv = start_server(str(tmp_path / "tt.duckdb"), "--ingest-token", "in-tok", "--api-token", "api-tok")
    try:
        lb = "tasktrail-lb.example:443"
        assert httpx.get(srv.api + "/apps", headers={"Host": lb}).status_code == 401
        assert httpx.get(srv.api + "/apps", headers={"Host": lb, "Authorization": "Bearer api-tok"}).status_code == 200
        assert _otlp(srv, lb).status_code == 401
        r = httpx.post(srv.otlp_http + "/v1/logs", content=numbered_request(next(_NUMBERS), 1),
                       headers={**PB_LOGS, "Host": lb, "Authorization": "Bearer in-tok"})
        assert r.status_code == 200
    finally:
        srv.stop()
    # Only the web port has a token: OTLP/HTTP still checks the Host.
    half = start_server(str(tmp_path / "half.duckdb"), "--api-token", "api-tok")
    try:
        assert httpx.get(half.api + "/apps", headers={"Host": "lb.example", "Authorization": "Bearer api-tok"}
                         ).status_code == 200
        assert _refused(_otlp(half, "lb.example"), "otlp")
    finally:
        half.stop()
    record(SECTION, "Host check with tokens: a load balancer's name on listeners that need a token, and on "
                    "OTLP/HTTP without --ingest-token", 2,
           "with a token any Host is served and the token decides (401 / 200, as before); a listener without "
           "one refuses the foreign name")


def test_malformed_allowed_hosts_are_refused_at_start(tmp_path):
    for bad, needle in (("a*b", "without scheme or path"), ("http://x.example/", "without scheme or path"),
                        ("*.", "wildcard"), ("[::1", "not a host name")):
        out = subprocess.run([sys.executable, "-m", "tasktrail", "serve", "--db", str(tmp_path / "x.duckdb"),
                              "--allowed-host", bad], capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and needle in out.stderr, (bad, out.stderr)
    out = subprocess.run([sys.executable, "-m", "tasktrail", "serve", "--help"], capture_output=True, text=True)
    for flag in ("--allowed-host", "--public-url", "--max-connections", "--header-timeout", "--body-timeout",
                 "--keep-alive-timeout"):
        assert flag in out.stdout, flag
