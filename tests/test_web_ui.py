"""The web interface in a real browser: Debian's Chromium driven by Playwright against ``consentcam serve``.

One story end to end, as the issue tells it: an owner registers, places a camera by clicking the map and grants
requests; an investigator draws a polygon around it and submits; a supervisor approves; the owner sees the
request and uploads a real clip through the page with a progress bar (one chunk is cut off on the way, and the
upload resumes); the investigator sees the clip, downloads it and exports the case; the owner reads the access
log and revokes, and the camera disappears from the investigator's map. Every page is checked for Content-
Security-Policy violations and script errors. Chromium missing is a failure, never a skip.

Set CONSENTCAM_SCREENSHOTS=DIR to also save what the pages looked like (scripts/screenshots.py makes the README's).
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from consentcam.web.browser import CSP_WATCH, Server, launch, make_clip, serve
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

pytestmark = [pytest.mark.peer("chromium"), pytest.mark.slow]

PASSWORD = "demo-password"
PROGRESS_WATCH = """
window.__progress = [];
new MutationObserver(() => {
  for (const el of document.querySelectorAll('.progress-text')) {
    const last = window.__progress[window.__progress.length - 1];
    if (el.textContent !== last) window.__progress.push(el.textContent);
  }
}).observe(document, { subtree: true, childList: true, characterData: true });
globalThis.CONSENTCAM_UPLOAD_CHUNK_BYTES = 4096;
"""
SHOTS = os.environ.get("CONSENTCAM_SCREENSHOTS")
UNLABELLED = """
Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.getAttribute('aria-labelledby')
    && !(el.tagName === 'BUTTON' && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 160))
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve(tmp_path_factory.mktemp("web-ui"), demo_owners=0) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)  # raises when /usr/bin/chromium is missing: a failure, not a skip
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "front-door.mp4")


def server_operations(server: Server) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server.url}/api/v1/openapi.json", timeout=10) as response:
        return json.load(response)["paths"]


class Watched:
    """A browser context whose pages report CSP violations and script errors."""

    def __init__(self, browser: Browser, server: Server) -> None:
        self.server = server
        self.context: BrowserContext = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        self.errors: list[str] = []
        self.context.expose_function("consentcamCspViolation", lambda text: self.errors.append(f"CSP violation: {text}"))
        self.context.add_init_script(CSP_WATCH)
        self.page: Page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # An answer with an error status is normal in these flows (401 before signing in); script errors are not.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(f"console: {message.text}")

    def goto(self, path: str) -> Page:
        self.page.goto(self.server.url + path)
        return self.page

    def login(self, email: str, password: str = PASSWORD, lands: str = "") -> Page:
        page = self.goto("/login")
        page.get_by_label("Email", exact=True).fill(email)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"**{lands}")
        return page

    def check_clean(self) -> None:
        violations = self.page.evaluate("window.__cspViolations || []")
        assert violations == [], f"Content-Security-Policy violations: {violations}"
        assert self.errors == [], "\n".join(self.errors)
        unlabelled = self.page.evaluate(UNLABELLED)
        assert unlabelled == [], f"form controls without an accessible name: {unlabelled}"

    def shot(self, name: str, **options: Any) -> None:
        if SHOTS:
            Path(SHOTS).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), **options)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def people(browser: Browser, server: Server) -> Iterator[Any]:
    made: list[Watched] = []

    def person() -> Watched:
        made.append(Watched(browser, server))
        return made[-1]

    yield person
    for watched in made:
        watched.close()


def test_owner_investigator_supervisor_story(server: Server, people: Any, clip: Path) -> None:
    agency_id = server.demo["agency_id"]

    # --- the owner registers and places a camera by clicking the map ---------------------------------------
    owner = people()
    page = owner.goto("/register")
    page.get_by_label("Your name").fill("Rosa Parks Avenue")
    page.get_by_label("Email", exact=True).fill("rosa@home.example.org")
    page.get_by_label("Password", exact=True).fill("a long enough password")
    page.get_by_role("button", name="Register").click()
    page.wait_for_url("**/owner")
    expect(page.locator("#owner-app")).to_have_attribute("data-ready", "true")
    outline = page.locator(f"#owner-map path.jurisdiction-{agency_id}")
    expect(outline).to_be_visible()
    box = outline.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    expect(page.get_by_label("Latitude")).not_to_have_value("")
    lat, lon = float(page.get_by_label("Latitude").input_value()), float(page.get_by_label("Longitude").input_value())
    assert 41.872 < lat < 41.888 and -87.6395 < lon < -87.616, (lat, lon)  # inside the Loop, where it was clicked
    page.mouse.click(x + 60, y)  # the second click points the camera: east
    bearing = int(page.get_by_label(re.compile("Points towards")).input_value())
    assert 80 <= bearing <= 100, bearing
    page.get_by_label("Name for this camera").fill("Front door, test")
    page.get_by_role("radio", name=re.compile("^Exact")).check()
    permissions = page.locator("#new-permissions")
    expect(permissions).to_contain_text("Chicago PD, 1st District (demo)")
    permissions.get_by_label("Show this camera on the police map").check()
    permissions.get_by_label("Let the police ask me for footage").check()
    page.get_by_role("button", name="Add camera").click()
    card = page.locator("article.camera", has_text="Front door, test")
    expect(card).to_contain_text("On the police map")
    expect(card).to_contain_text("May be asked for footage")
    camera_id = card.get_attribute("data-camera-id")
    assert camera_id
    owner.shot("owner-portal-new-camera", full_page=True)
    owner.check_clean()

    # --- the investigator sees it, draws a polygon around it, sees the live count and submits ------------------
    investigator = people()
    page = investigator.login("investigator1@demo.consentcam.org", lands="/console")
    expect(page.locator("#console-map")).to_have_attribute("data-ready", "true")
    dot = page.locator(f"#console-map path.camera-{camera_id}")
    expect(dot).to_be_visible()
    expect(page.locator("#console-map")).to_have_attribute("data-cameras", "1")
    box = dot.bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.locator(".leaflet-pm-icon-polygon").click()
    corners = [(cx - 50, cy - 45), (cx + 55, cy - 40), (cx + 50, cy + 45), (cx - 45, cy + 50)]
    for px, py in corners:
        page.mouse.click(px, py)
    page.mouse.click(*corners[0])  # closing the ring finishes the polygon
    expect(page.locator("#fence-summary")).to_have_text("Polygon with 4 corners")
    expect(page.locator("#live-count")).to_have_attribute("data-matched", "1")
    expect(page.locator("#live-count")).to_contain_text("1 camera")
    page.get_by_label("Case number").fill("WEB-2026-001")
    page.get_by_label("What happened (owners read this)").fill("A bicycle was stolen from the rack in front of the library.")
    investigator.shot("investigator-console-fence")
    page.get_by_role("button", name="Send request").click()
    expect(page.locator("#page-status")).to_contain_text("sent to a supervisor for approval")
    expect(page.locator("#request-list")).to_contain_text("WEB-2026-001")
    investigator.check_clean()

    # --- a supervisor approves ----------------------------------------------------------------------------------
    supervisor = people()
    page = supervisor.login("supervisor@demo.consentcam.org", lands="/supervisor")
    expect(page.locator("#kill-switch")).to_contain_text("access active")
    queued = page.locator("#approval-queue article", has_text="WEB-2026-001")
    expect(queued).to_contain_text("1 camera match now")
    supervisor.shot("supervisor", full_page=True)
    declare = page.get_by_role("button", name="Declare emergency")
    assert "post" in server_operations(server).get("/api/v1/emergencies", {})
    expect(declare).to_be_enabled()
    queued.get_by_role("button", name="Approve and ask the owners").click()
    expect(page.locator("#page-status")).to_contain_text("Approved case WEB-2026-001")
    expect(page.locator("#approval-queue")).to_contain_text("Nothing waits for your approval")

    # --- the supervisor declares an emergency on the map, sees it listed, and ends it -----------------------------
    declare.click()  # nothing drawn yet: the form says what is missing, nothing is sent
    expect(page.locator("#emergency-errors")).to_contain_text("Draw the emergency's area on the map")
    emergency_map = page.locator("#emergency-map")
    emergency_map.scroll_into_view_if_needed()
    area = emergency_map.bounding_box()
    assert area is not None
    mx, my = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    emergency_map.locator(".leaflet-pm-icon-polygon").click()
    ring = [(mx - 40, my - 30), (mx + 40, my - 30), (mx + 40, my + 30), (mx - 40, my + 30)]
    for px, py in ring:
        page.mouse.click(px, py)
    page.mouse.click(*ring[0])
    expect(page.locator("#emergency-area")).to_contain_text("Polygon")
    page.get_by_label("Reason (logged and published in counts)").fill("Armed robbery in progress at the corner store")
    declare.click()
    expect(page.locator("#page-status")).to_contain_text("Emergency declared until")
    listed = page.locator("#emergency-list li", has_text="Armed robbery in progress")
    expect(listed).to_be_visible()
    listed.get_by_role("button", name="End now").click()
    expect(page.locator("#emergency-list")).to_contain_text("No emergency is active")
    supervisor.check_clean()

    # --- the owner sees the request and uploads the clip, in chunks, one of them cut off on the way ------------
    page = owner.page
    owner.context.add_init_script(PROGRESS_WATCH)
    cut: list[str] = []

    def cut_one_chunk(route: Route) -> None:
        request = route.request
        if request.method == "PUT" and not cut and re.match(r"bytes [1-9][0-9]*-", request.headers.get("content-range", "")):
            cut.append(request.headers["content-range"])
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/api/v1/uploads/**", cut_one_chunk)
    page.reload()
    item = page.locator("article.request-item", has_text="WEB-2026-001")
    expect(item).to_contain_text("A bicycle was stolen")
    expect(item).to_contain_text("Chicago PD, 1st District (demo)")
    owner.shot("owner-portal-request", full_page=True)
    private_link = item.get_by_role("link", name="open the upload page").get_attribute("href")
    assert private_link and private_link.startswith("/u/up_")
    item.locator('input[type="file"]').set_input_files(str(clip))
    receipt = item.locator(".receipt .sha256")
    expect(receipt).to_have_text(hashlib.sha256(clip.read_bytes()).hexdigest(), timeout=20_000)
    expect(item.locator("progress")).to_have_js_property("value", 100)
    expect(item).to_contain_text("Your browser computed the same SHA-256")
    assert cut, "the test meant to interrupt one chunk and did not"
    shown = page.evaluate("window.__progress")
    percents = sorted({int(m.group(1)) for text in shown if (m := re.match(r"(\d+)% ", text))})
    assert len(percents) >= 3 and percents[-1] == 100, shown
    assert any(text.startswith("Connection trouble") for text in shown), shown
    owner.shot("owner-portal-receipt", full_page=True)
    owner.check_clean()

    # --- the investigator sees it, downloads it (audited) and exports the package ------------------------------
    page = investigator.page
    page.get_by_role("button", name="Refresh").click()
    page.get_by_role("button", name="Open case WEB-2026-001").click()
    detail = page.locator("#request-detail")
    expect(detail).to_contain_text("1 uploaded")
    evidence = detail.locator("article.evidence")
    expect(evidence).to_have_count(1)
    expect(evidence.locator(".sha256")).to_have_text(hashlib.sha256(clip.read_bytes()).hexdigest())
    with page.expect_download() as download_info:
        evidence.get_by_role("link", name="Download").click()
    assert Path(download_info.value.path()).read_bytes() == clip.read_bytes()
    with page.expect_download() as export_info:
        page.get_by_role("button", name="Export package (zip)").click()
    exported = Path(export_info.value.path())
    with zipfile.ZipFile(exported) as package:
        names = package.namelist()
    assert any(n.endswith(".mp4") or "clip" in n for n in names), names
    assert any("manifest" in n for n in names), names
    expect(detail).to_contain_text("The package is built and signed")
    detail.get_by_label("Filter by analysis label").fill("pickup_truck")
    detail.get_by_role("button", name="Filter").click()
    expect(page.locator("#request-detail")).to_contain_text('No clip of this request has the label "pickup_truck"')
    investigator.check_clean()

    # --- the owner reads the access log, then revokes everything: the camera leaves the investigator's map ------
    page = owner.page
    page.unroute("**/api/v1/uploads/**")
    page.reload()
    card = page.locator("article.camera", has_text="Front door, test")
    card.get_by_role("button", name="Access log").click()
    log = card.locator(".access-log table")
    expect(log).to_contain_text("viewed the precise location")
    expect(log).to_contain_text(re.compile(r"Investigator \d+, Chicago PD, 1st District \(demo\)"))
    expect(log).to_contain_text("played or downloaded your clip")
    owner.shot("owner-portal", full_page=True)
    card.get_by_role("button", name="Revoke everything").click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Clips you already delivered stay with their case")
    dialog.get_by_role("button", name="Revoke everything").click()
    expect(page.locator("#page-status")).to_contain_text("police can no longer see it")
    card = page.locator("article.camera", has_text="Front door, test")
    expect(card).to_contain_text("Nothing shared")
    expect(card.get_by_role("button", name="Revoke everything")).to_be_disabled()
    owner.check_clean()
    page = owner.goto(private_link)  # the request's private link died with the consent
    expect(page.locator("#upload-info .alert")).to_contain_text("This link no longer works")
    expect(page.locator("#upload-area .dropzone")).to_have_count(0)

    page = investigator.page
    page.reload()
    expect(page.locator("#console-map")).to_have_attribute("data-cameras", "0")
    expect(page.locator(f"#console-map path.camera-{camera_id}")).to_have_count(0)
    investigator.check_clean()

    # --- and the public report counts it all, without naming anything ------------------------------------------
    visitor = people()
    page = visitor.goto("/transparency")
    row = page.locator("#counts-table tbody tr", has_text="Chicago PD, 1st District (demo)")
    expect(row.locator("td.num")).to_have_text(["1", "1", "1", "0", "1"])  # requests, cameras asked, clips, live, emergencies
    expect(page.locator("#chart svg.bars rect")).to_have_count(5)
    expect(page.locator("#revocations")).to_contain_text("1 time in total")
    expect(page.locator("body")).not_to_contain_text("WEB-2026-001")
    expect(page.locator("body")).not_to_contain_text("Front door, test")
    visitor.shot("transparency-test", full_page=True)
    visitor.check_clean()


def test_public_pages_without_signing_in(server: Server, people: Any) -> None:
    visitor = people()
    page = visitor.goto("/transparency")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#policies")).to_contain_text("never use facial recognition")
    expect(page.get_by_label("Agency", exact=True).locator("option")).to_have_text(
        ["All agencies", "Chicago PD, 1st District (demo)", "Near South Side PD (demo)"])
    page.get_by_label("Agency", exact=True).select_option(label="Near South Side PD (demo)")  # keyboard-usable select
    expect(page.locator("#chart")).to_contain_text("No requests by Near South Side PD (demo) yet")
    visitor.check_clean()

    # A link that is not known or no longer works: words, not a JSON blob.
    page = visitor.goto("/u/up_this-link-does-not-exist")
    expect(page.locator("#upload-info .alert")).to_contain_text("This link is not known")
    expect(page.locator("body")).not_to_contain_text('"status"')
    visitor.check_clean()

    # A page that does not exist, and the owner portal for someone not signed in.
    page = visitor.goto("/no/such/page")
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    page = visitor.goto("/owner")
    expect(page.locator("#page-alert")).to_contain_text("Sign in to use the owner portal")
    expect(page.locator("#owner-app")).to_be_hidden()

    # A wrong password is said in the form, keyboard only.
    page = visitor.goto("/login")
    page.get_by_label("Email", exact=True).fill("investigator1@demo.consentcam.org")
    page.keyboard.press("Tab")
    page.keyboard.type("not the password")
    page.keyboard.press("Enter")
    expect(page.locator("#login-errors [role=alert]")).to_contain_text("email or password is wrong")
    visitor.check_clean()
