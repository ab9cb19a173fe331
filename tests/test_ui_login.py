"""Logging in from a browser (Debian's Chromium, headless) to a server started with --api-token: the login
form, a few pages and their API reads on the session cookie, and logging out."""
import httpx
import pytest

from .helpers import CHROMIUM, fixture_requests, require_chromium, start_server, wait_until

require_chromium()

sync_api = pytest.importorskip("playwright.sync_api")

TOKEN = "browser-token-7f3a"
SECTION = "Security"


def test_log_in_browse_and_log_out(tmp_path, record):
    srv = start_server(str(tmp_path / "tt.duckdb"), "--api-token", TOKEN, "--ingest-token", "tok123")
    try:
        for sig, body in fixture_requests():
            httpx.post(f"{srv.otlp_http}/v1/{sig}", content=body, headers={
                "Content-Type": "application/x-protobuf", "Authorization": "Bearer tok123"}).raise_for_status()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        wait_until(lambda: httpx.get(srv.api + "/invocations", headers=auth).json()["items"], message="data")
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            try:
                ctx = browser.new_context()
                page = ctx.new_page()
                problems = []
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
                # A page asked for without the cookie leads to the login form, keeping where it was going.
                page.goto(srv.web + "/invocations")
                assert page.url.startswith(srv.web + "/login?next=")
                page.fill("input[name=token]", "not-the-token")
                page.click("button[type=submit]")
                assert "not the one this server was started with" in page.locator(".error-message").inner_text()
                assert problems[0].startswith("401 ") and "/login" in problems[0]  # the refused form, as meant
                problems.clear()
                page.fill("input[name=token]", TOKEN)
                page.click("button[type=submit]")
                page.wait_for_load_state("networkidle")
                assert page.url == srv.web + "/invocations", page.url
                assert page.locator("h1").inner_text()
                (cookie,) = [c for c in ctx.cookies() if c["name"] == "tasktrail_session"]
                assert cookie["value"] != TOKEN and TOKEN not in cookie["value"] and cookie["httpOnly"]
                assert cookie["sameSite"] == "Strict"
                # Browse: the list fills from the API (fetch with the cookie), a detail page opens from it.
                first = page.locator("table tbody tr a[href^='/invocations/']").first
                first.wait_for()
                href = first.get_attribute("href")
                first.click()
                page.wait_for_load_state("networkidle")
                assert page.url == srv.web + href
                resp = page.goto(srv.web + "/runners")
                assert resp.status == 200
                page.wait_for_load_state("networkidle")
                assert page.locator("h1").inner_text()
                assert problems == [], problems
                # Log out from the header control: back at the login form, the cookie gone, pages closed.
                page.click("form.logout button")
                page.wait_for_load_state("networkidle")
                assert page.url.startswith(srv.web + "/login")
                assert [c for c in ctx.cookies() if c["name"] == "tasktrail_session"] == []
                page.goto(srv.web + "/runners")
                assert page.url.startswith(srv.web + "/login?next=")
                assert page.locator("form.logout").count() == 0
            finally:
                browser.close()
    finally:
        srv.stop()
    record(SECTION, "Chromium against a server with --api-token: a page without the cookie, a wrong token, the "
                    "right one, an invocation list and detail, /runners, the Log out button", 1,
           "sent to /login and back to the page asked for; the wrong token refused on the form; pages and their "
           "API reads served on an HttpOnly, SameSite=Strict cookie that is not the token, no console errors; "
           "after Log out the cookie is gone and pages lead to /login again")
