"""The live-feed pages in Debian's Chromium (Playwright) against the real rig: the owner's relay page (device,
cameras, the pause switch, the live views) and the investigator's live page, which names the refusing rule and
plays the relayed HLS with the vendored hls.js; no Content-Security-Policy violation or script error anywhere.
Chromium missing is a failure, never a skip."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from consentcam.audit import Actor
from consentcam.services import accounts
from consentcam.testing.world import PASSWORD
from edge_testkit import rig

SHOTS = os.environ.get("CONSENTCAM_SCREENSHOTS")  # a folder: also save what the pages looked like
pytestmark = [pytest.mark.peer("chromium"), pytest.mark.peer("rtsp")]


@pytest.fixture
def database_url(request, tmp_path):
    return request.getfixturevalue("_consentcam_sqlite").new(tmp_path / "db")


def browse(url: str, owner_email: str, investigator: tuple[str, str], cameras: dict[str, str], api_state) -> dict:
    from consentcam.web.browser import CSP_WATCH, launch
    from playwright.sync_api import expect, sync_playwright

    seen: dict = {}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for who, (email, password) in {"owner": (owner_email, PASSWORD), "investigator": investigator}.items():
                context = browser.new_context(viewport={"width": 1200, "height": 900})
                errors: list[str] = []
                context.expose_function("consentcamCspViolation", lambda text, errors=errors: errors.append(f"CSP: {text}"))
                context.add_init_script(CSP_WATCH)
                page = context.new_page()
                page.on("pageerror", lambda error, errors=errors: errors.append(f"page error: {error}"))
                page.on("console", lambda m, errors=errors: errors.append(f"console: {m.text}")
                        if m.type == "error" and "Failed to load resource" not in m.text else None)
                page.goto(url + "/login")
                page.get_by_label("Email", exact=True).fill(email)
                page.get_by_label("Password", exact=True).fill(password)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(lambda u: "/login" not in u, timeout=15000)
                if who == "owner":
                    page.goto(url + "/owner/devices")
                    expect(page.locator("#devices-app[data-ready=true]")).to_be_attached(timeout=15000)
                    card = page.locator("article[data-device]")
                    expect(card).to_contain_text("Shop relay")
                    expect(card).to_contain_text("connected")
                    expect(card).to_contain_text("live view only in emergencies")
                    page.get_by_label("Pause all live access through this relay").check()
                    expect(page.locator("#page-status")).to_contain_text("paused", timeout=10000)
                    seen["paused"] = api_state()
                    page.get_by_label("Pause all live access through this relay").uncheck()
                    expect(page.locator("#page-status")).to_contain_text("on again", timeout=10000)
                    page.get_by_role("button", name="Make a pairing code").click()
                    expect(page.locator("#pairing-code code")).to_have_text(
                        __import__("re").compile(r"^[A-Z2-9]{5}(-[A-Z2-9]{5}){3}$"))
                    if SHOTS:
                        page.screenshot(path=str(Path(SHOTS) / "owner-devices.png"), full_page=True)
                else:
                    page.goto(url + f"/live?camera={cameras['never']}")
                    expect(page.locator("#live-app[data-ready=true]")).to_be_attached(timeout=15000)
                    page.get_by_label("Reason (logged, and shown to the owner)").fill("armed robbery in progress")
                    page.get_by_role("button", name="Open live view").click()
                    expect(page.locator("#live-errors")).to_contain_text("never allows live view", timeout=10000)
                    page.goto(url + f"/live?camera={cameras['always']}")
                    expect(page.locator("#live-app[data-ready=true]")).to_be_attached(timeout=15000)
                    page.get_by_label("Reason (logged, and shown to the owner)").fill("armed robbery in progress")
                    page.get_by_role("button", name="Open live view").click()
                    expect(page.locator("#live-player")).to_be_visible(timeout=10000)
                    for _ in range(300):  # (wait_for_function evaluates a string: the page's CSP forbids that)
                        if page.evaluate("document.querySelector('#live-video').currentTime") > 0.5:
                            break
                        page.wait_for_timeout(100)
                    seen["played"] = page.evaluate("document.querySelector('#live-video').currentTime")
                    if SHOTS:
                        page.wait_for_timeout(1500)
                        page.screenshot(path=str(Path(SHOTS) / "live-view.png"), full_page=True)
                    seen["debug"] = page.evaluate("""[typeof Hls, window.Hls && Hls.isSupported(),
                        MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E"'),
                        document.querySelector('#live-video').readyState, document.querySelector('#page-status').textContent]""")
                    seen["size"] = page.evaluate("[document.querySelector('#live-video').videoWidth, "
                                                 "document.querySelector('#live-video').videoHeight]")
                    page.get_by_role("button", name="End now").click()
                    expect(page.locator("#page-status")).to_contain_text("closed", timeout=10000)
                violations = page.evaluate("window.__cspViolations || []")
                seen[f"{who}_errors"] = errors + [f"CSP: {v}" for v in violations]
                context.close()
        finally:
            browser.close()
    return seen


async def test_owner_relay_page_and_investigator_live_page(database_url, tmp_path, consentcam_rtsp_server):
    async with rig(database_url, tmp_path, consentcam_rtsp_server.live_url) as r:
        user_id, password = await accounts.create_agency_user(r.p, Actor.system("test"), r.agency,
                                                              "live.viewer@agency.example.org", "investigator")
        loop = asyncio.get_running_loop()

        def api_state() -> bool:
            async def paused() -> bool:
                status, body = await r.call("GET", "/api/v1/edge/devices", r.owner)
                return body["devices"][0]["live_paused"]

            return asyncio.run_coroutine_threadsafe(paused(), loop).result(10)

        seen = await asyncio.to_thread(browse, r.url, r.owner.email, ("live.viewer@agency.example.org", password),
                                       r.cameras, api_state)
        assert seen["paused"] is True
        assert seen["played"] > 0.5 and seen["size"] == [320, 240], seen
        assert seen["owner_errors"] == [] and seen["investigator_errors"] == []
        status, body = await r.call("GET", "/api/v1/edge/devices", r.owner)
        (session,) = body["devices"][0]["live_sessions"]
        assert session["reason"] == "armed robbery in progress" and not session["active"]
        assert session["user_id"] == user_id
