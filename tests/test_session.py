"""The browser login: the form works in a plain install, the cookie holds a value derived from the token
(never the token), is Secure when the browser comes over https, ends when the token changes, and logout
(a CSRF-checked POST) ends it."""
import tomllib
from pathlib import Path

import httpx

from .helpers import start_server

SECTION = "Security"
TOKEN = "s3cret-token-for-the-ui"


def _login(srv, token: str = TOKEN, **headers) -> httpx.Response:
    return httpx.post(srv.web + "/login?next=/runners", data={"token": token},
                      headers={"Origin": srv.web, **headers}, timeout=10)


def _cookie(resp: httpx.Response) -> tuple[str, dict]:
    """The session cookie's value and its attributes (lower-case names) from Set-Cookie."""
    for line in resp.headers.get_list("set-cookie"):
        name_value, *attrs = [p.strip() for p in line.split(";")]
        name, _, value = name_value.partition("=")
        if name == "tasktrail_session":
            return value.strip('"'), {a.split("=", 1)[0].lower(): (a.split("=", 1) + [""])[1] for a in attrs}
    raise AssertionError(f"no session cookie in {resp.headers.get_list('set-cookie')}")


def test_login_form_needs_its_dependency_declared():
    """Starlette parses forms only with python-multipart: it is a dependency of a plain install."""
    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.replace("_", "-").startswith("python-multipart") for d in deps), deps


def test_cookie_is_derived_from_the_token_secure_over_https_and_ends_at_logout(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--api-token", TOKEN)
    try:
        assert _login(srv, "wrong").status_code == 401
        r = _login(srv)
        assert r.status_code == 303 and r.headers["location"] == "/runners", (r.status_code, r.text)
        value, attrs = _cookie(r)
        assert TOKEN not in value and len(value) == 64 and int(value, 16) >= 0, value
        assert "httponly" in attrs and attrs.get("samesite", "").lower() == "strict" and "secure" not in attrs, attrs
        jar = {"tasktrail_session": value}
        assert httpx.get(srv.api + "/apps", cookies=jar).status_code == 200
        assert httpx.get(srv.web + "/runners", cookies=jar, headers={"Accept": "text/html"}).status_code == 200
        # The cookie is not a token, and the token is not a cookie.
        assert httpx.get(srv.api + "/apps", headers={"Authorization": f"Bearer {value}"}).status_code == 401
        assert httpx.get(srv.api + "/apps", cookies={"tasktrail_session": TOKEN}).status_code == 401
        assert httpx.get(srv.api + "/apps", cookies={"tasktrail_token": TOKEN}).status_code == 401
        # Over https (a trusted proxy on this machine says so): Secure.
        _, attrs = _cookie(_login(srv, **{"X-Forwarded-Proto": "https"}))
        assert "secure" in attrs, attrs
        # Logout: a cross-site POST is refused; a same-origin one expires the cookie and goes to /login.
        r = httpx.post(srv.web + "/logout", cookies=jar, headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"]
        assert httpx.get(srv.web + "/logout", cookies=jar).status_code == 405
        r = httpx.post(srv.web + "/logout", cookies=jar, headers={"Origin": srv.web})
        assert r.status_code == 303 and r.headers["location"] == "/login"
        gone, attrs = _cookie(r)
        assert gone == "" and attrs.get("max-age") == "0", (gone, attrs)
        # The logout control is on every page of a server with a token.
        page = httpx.get(srv.web + "/runners", cookies=jar, headers={"Accept": "text/html"}).text
        assert 'action="/logout"' in page and 'method="post"' in page
    finally:
        srv.stop()
    # A new token ends every session: the old cookie no longer opens anything.
    rotated = start_server(srv.db, "--api-token", "a-new-token")
    try:
        assert httpx.get(rotated.api + "/apps", cookies=jar).status_code == 401
        r = httpx.get(rotated.web + "/runners", cookies=jar, headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    finally:
        rotated.stop()
    # Behind an https proxy that does not say so: --public-url https://... makes it Secure all the same.
    public = start_server(srv.db, "--api-token", TOKEN, "--public-url", "https://tasktrail.example")
    try:
        value2, attrs = _cookie(_login(public))
        assert "secure" in attrs and value2 == value, attrs  # same token, same session value
    finally:
        public.stop()
    record(SECTION, "browser login over HTTP: the form (python-multipart), the cookie's value and flags, the cookie "
                    "or the token in each other's place, X-Forwarded-Proto: https, --public-url https://, logout "
                    "cross-site and same-site, a restart with a new token", 9,
           "303 with an HttpOnly SameSite=Strict cookie holding a 64-hex HMAC of the token (never the token); "
           "neither works in the other's place (401); Secure behind https; logout only as a same-origin POST, "
           "which expires the cookie; a new token ends every session")
