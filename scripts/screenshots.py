#!/usr/bin/env python3
"""Make the README's screenshots (docs/screenshots/*.png) of the web interface with real demo data.

The demo city (60 owners) is loaded with the clock set four months back, and each month since has requests made,
approved, answered with clips, declined or left to expire, and a few owners revoking, all through the core's own
services, so the transparency report has a history. Then ``consentcam serve`` runs it and Debian's Chromium
(Playwright) is used like a person would: the investigator draws a fence, the supervisor approves, an owner
uploads a clip, another uses the private upload page.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--owners 60]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consentcam.clock import FakeClock
from consentcam.web.browser import CSP_WATCH, launch, make_clip, serve, settings_for
from playwright.sync_api import Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "demo-password"
VIEWPORT = {"width": 1280, "height": 1000}
MAX_BYTES = 300_000


# --- history, made in-process with the clock set back ----------------------------------------------------


async def seed(data_dir: Path, owners: int, clip: bytes) -> dict[str, Any]:
    from consentcam.db.migrate import upgrade
    from consentcam.db.models import Camera, RequestItem, User
    from consentcam.demo import load_demo
    from consentcam.platform import open_platform
    from consentcam.schemas import RequestCreate
    from consentcam.services import consent, requests
    from consentcam.services.accounts import Principal
    from consentcam.vault.ingest import ChunkSpec, UploadMeta, Uploads
    from sqlalchemy import select

    settings = settings_for(data_dir)
    await asyncio.to_thread(upgrade, settings.resolved_database_url)
    now = datetime.now(UTC)
    month0 = (now.replace(day=1, hour=9, minute=0, second=0, microsecond=0) - timedelta(days=95)).replace(day=3)
    clock = FakeClock(month0)
    p = await open_platform(settings, clock=clock)
    rng = random.Random(7)
    try:
        demo = await load_demo(p, owners=owners)
        async with p.db.sessions() as session:
            staff = {u.email: u for u in (await session.execute(select(User).where(User.agency_id == demo["agency_id"]))).scalars()}
            cameras = list((await session.execute(select(Camera).where(Camera.grant_requests.is_(True)))).scalars())

        def principal(email: str) -> Principal:
            u = staff[email]
            return Principal(user_id=u.id, role=u.role, agency_id=u.agency_id, badge=u.badge, name=u.name)

        investigator, supervisor = principal("investigator1@demo.consentcam.org"), principal("supervisor@demo.consentcam.org")
        case = 100
        month = month0
        while month < now - timedelta(days=2):
            for _ in range(rng.randint(2, 5)):
                at = month + timedelta(days=rng.uniform(0, 26), hours=rng.uniform(0, 10))
                if at > now - timedelta(days=1):
                    break
                clock.set(at)
                target = rng.choice(cameras)
                case += 1
                spec = RequestCreate(
                    case_number=f"CPD-{at:%y%m}-{case}", description=rng.choice([
                        "Bicycle theft from a rack", "Hit and run at the intersection", "Package stolen from a lobby",
                        "Car window smashed overnight", "Assault reported near the entrance"]),
                    area={"center": {"lat": target.lat, "lon": target.lon}, "radius_m": rng.choice([80, 120, 160])},
                    window={"start": at - timedelta(hours=5), "end": at - timedelta(hours=3)},
                )
                made = await requests.create_request(p, investigator, spec)
                clock.advance(rng.uniform(600, 7200))
                await requests.approve(p, supervisor, made.id)
                async with p.db.sessions() as session:
                    items = list((await session.execute(select(RequestItem).where(RequestItem.request_id == made.id))).scalars())
                for item in items:
                    clock.advance(rng.uniform(300, 20000))
                    roll = rng.random()
                    token = requests.item_token(p, item.id, item.token_salt)
                    if roll < 0.45:
                        async def body() -> Any:
                            yield clip
                        await Uploads(p).receive(token, ChunkSpec(), len(clip), body(),
                                                 UploadMeta(content_type="video/mp4", filename="clip.mp4"))
                    elif roll < 0.65:
                        await requests.decline(p, None, token=token, reason="nothing recorded at that time")
            for _ in range(rng.randint(1, 3)):  # a few owners revoke everything
                victim = rng.choice(cameras)
                clock.set(month + timedelta(days=rng.uniform(0, 26)))
                if clock.now() < now - timedelta(days=1):
                    async with p.db.sessions() as session:
                        owner = await session.get(User, victim.owner_id)
                    from consentcam.audit import Actor

                    await consent.revoke_all(p, Actor(kind="user", user_id=owner.id, role="owner"), victim.id)
                    cameras.remove(victim)
            month = (month + timedelta(days=32)).replace(day=3)
        return demo
    finally:
        await p.db.dispose()


async def pending_links(data_dir: Path, case_number: str) -> list[dict[str, str]]:
    """The owners asked by today's request, and their private links (the notification job would email these)."""
    from consentcam.db.models import Camera, FootageRequest, RequestItem, User
    from consentcam.platform import open_platform
    from consentcam.services import requests
    from sqlalchemy import select

    p = await open_platform(settings_for(data_dir))
    try:
        async with p.db.sessions() as session:
            rows = (await session.execute(
                select(RequestItem, User.email, Camera.precision).join(FootageRequest, FootageRequest.id == RequestItem.request_id)
                .join(User, User.id == RequestItem.owner_id).join(Camera, Camera.id == RequestItem.camera_id)
                .where(FootageRequest.case_number == case_number)
            )).all()
        links = [{"email": email, "camera_id": item.camera_id, "precision": precision,
                  "token": requests.item_token(p, item.id, item.token_salt)} for item, email, precision in rows]
        return sorted(links, key=lambda link: link["precision"] != "exact")  # an exact camera first: its log says more
    finally:
        await p.db.dispose()


# --- the pages ---------------------------------------------------------------------------------------------


def login(page: Page, url: str, email: str, lands: str) -> None:
    page.goto(f"{url}/login")
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{lands}")


def save(page: Page, out: Path, name: str, *, full_page: bool = False) -> None:
    path = out / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page, animations="disabled", caret="hide")
    size = path.stat().st_size
    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {size // 1024} KB", file=sys.stderr)
    if size > MAX_BYTES:
        print(f"  warning: over {MAX_BYTES // 1000} KB", file=sys.stderr)
    violations = page.evaluate("window.__cspViolations || []")
    if violations:
        raise SystemExit(f"CSP violations on {name}: {violations}")


def photograph(url: str, data_dir: Path, out: Path, clip_path: Path) -> None:
    with sync_playwright() as playwright:
        browser = launch(playwright)

        def person() -> Page:
            context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
            context.add_init_script(CSP_WATCH)
            return context.new_page()

        # The investigator draws a fence around a cluster of cameras and sees the live count.
        investigator = person()
        login(investigator, url, "investigator1@demo.consentcam.org", "/console")
        expect(investigator.locator("#console-map")).to_have_attribute("data-ready", "true")
        dots = investigator.locator("#console-map path.camera-dot")
        boxes = [b for b in (dots.nth(i).bounding_box() for i in range(dots.count())) if b]
        # the dot with the most neighbours within 90 px (a busy corner), clear of the drawing toolbar at the top left
        area = investigator.locator("#console-map").bounding_box()
        assert area
        clear = [b for b in boxes if b["x"] > area["x"] + 360 and area["y"] + 220 < b["y"] < area["y"] + area["height"] - 120]
        centre = max(clear or boxes, key=lambda b: sum(abs(o["x"] - b["x"]) < 90 and abs(o["y"] - b["y"]) < 90 for o in boxes))
        cx, cy = centre["x"] + 8, centre["y"] + 8
        investigator.locator(".leaflet-pm-icon-polygon").click()
        corners = [(cx - 85, cy - 70), (cx + 30, cy - 95), (cx + 95, cy - 10), (cx + 60, cy + 85), (cx - 70, cy + 75)]
        for x, y in corners:
            investigator.mouse.click(x, y)
        investigator.mouse.click(*corners[0])
        expect(investigator.locator("#live-count .big")).to_be_visible()
        investigator.get_by_label("Case number").fill("CPD-TODAY-1")
        investigator.get_by_label("What happened (owners read this)").fill(
            "A delivery van was broken into on this block between 14:00 and 16:00. Any camera facing the street may have seen it.")
        investigator.mouse.move(5, 5)
        save(investigator, out, "investigator-console")
        investigator.get_by_role("button", name="Send request").click()
        expect(investigator.locator("#page-status")).to_contain_text("sent to a supervisor")

        supervisor = person()
        login(supervisor, url, "supervisor@demo.consentcam.org", "/supervisor")
        expect(supervisor.locator("#supervisor-app")).to_have_attribute("data-ready", "true")
        save(supervisor, out, "supervisor")
        supervisor.locator("#approval-queue article", has_text="CPD-TODAY-1").get_by_role("button", name="Approve and ask the owners").click()
        expect(supervisor.locator("#page-status")).to_contain_text("Approved")

        with ThreadPoolExecutor(1) as pool:  # Playwright's own event loop runs in this thread
            links = pool.submit(asyncio.run, pending_links(data_dir, "CPD-TODAY-1")).result()
        if not links:
            raise SystemExit("the fence matched no camera; try again")
        first, second = links[0], links[-1]

        owner = person()
        login(owner, url, first["email"], "/owner")
        expect(owner.locator("#owner-app")).to_have_attribute("data-ready", "true")
        item = owner.locator("article.request-item", has_text="CPD-TODAY-1")
        item.locator('input[type="file"]').set_input_files(str(clip_path))
        expect(item.locator(".receipt .sha256")).to_be_visible(timeout=20_000)
        card = owner.locator(f'article.camera[data-camera-id="{first["camera_id"]}"]')
        card.get_by_role("button", name="Access log").click()
        expect(card.locator(".access-log table")).to_be_visible()
        owner.evaluate("window.scrollTo(0, 0)")
        owner.mouse.move(5, 5)
        save(owner, out, "owner-portal", full_page=True)

        visitor = person()
        visitor.goto(f"{url}/u/{second['token']}")
        expect(visitor.locator("#upload-area .dropzone")).to_be_visible()
        visitor.locator('#upload-area input[type="file"]').set_input_files(str(clip_path))
        expect(visitor.locator("#upload-area .receipt")).to_contain_text("same SHA-256", timeout=20_000)
        save(visitor, out, "upload-page", full_page=True)

        visitor.goto(f"{url}/transparency")
        expect(visitor.locator("body")).to_have_attribute("data-ready", "true")
        save(visitor, out, "transparency", full_page=True)
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--owners", type=int, default=60)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consentcam-shots-") as tmp:
        data_dir = Path(tmp) / "data"
        clip_path = make_clip(Path(tmp) / "front-door.mp4", seconds=4)
        print("loading the demo city with four months of history…", file=sys.stderr)
        asyncio.run(seed(data_dir, args.owners, clip_path.read_bytes()))
        with serve(data_dir, demo_owners=None, run_jobs_in_process="false") as server:
            photograph(server.url, data_dir, args.out, clip_path)


if __name__ == "__main__":
    main()
