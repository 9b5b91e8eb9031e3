"""Emergencies, live sessions and edge devices: the rules, kept in one place.

The rule for a live view (``decide``): the camera is active and reached by the agency's grant, its edge device is
paired and the owner has not paused live access, and the grant's live mode allows it: ``always``; ``emergency_only``
only inside an active emergency of the caller's agency whose area covers the camera; ``never`` never. The same rule
is asked again by the hub's sweep several times a second for every open session (``why_not_now``), so revocation,
an emergency's end, a pause or the hard end close a session within the sweep interval.
"""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from .. import audit
from ..audit import Actor
from ..db.models import (
    Agency,
    Camera,
    EdgeDevice,
    EdgeDeviceCamera,
    EdgePairingCode,
    Emergency,
    Job,
    LiveSession,
    User,
)
from ..errors import Conflict, ConsentRefused, Forbidden, Gone, InvalidInput, NotFound, Unauthorized
from ..hooktypes import OwnerNotification
from ..jobs import PermanentFailure, enqueue, job_handler
from ..platform import Platform
from ..security import digest, new_secret
from ..services.accounts import Principal
from ..services.consent import Consent, jurisdiction_shape, shares_of
from ..services.requests import parse_area
from .schemas import EmergencyCreate

DEVICE_KEY_PREFIX = "cce_"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed on a small box
INVESTIGATORS = frozenset({"investigator", "supervisor"})

# Which edge devices hold a socket now: a set (one process), or a question asked of the hub (any process, through
# the broker when the deployment has one).
Presence = Container[str] | Callable[[str], Awaitable[bool]]


async def _present(connected: Presence, device_id: str) -> bool:
    if callable(connected):
        return await connected(device_id)
    return device_id in connected


# --- pairing ------------------------------------------------------------------------------------------


def _new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(20))  # 100 bits
    return "-".join(raw[i:i + 5] for i in range(0, 20, 5))


def _code_digest(code: str) -> str:
    return digest("pairing:" + code.strip().upper().replace(" ", ""))


async def create_pairing_code(p: Platform, principal: Principal) -> tuple[str, datetime]:
    now = p.now()
    code = _new_code()
    expires_at = now + timedelta(minutes=p.settings.edge_pairing_code_minutes)
    async with p.db.transaction() as session:
        row = EdgePairingCode(owner_id=principal.user_id, code_hash=_code_digest(code), created_at=now, expires_at=expires_at)
        session.add(row)
        await session.flush()
        await audit.record(p.db, session, now, principal.actor, "edge.pairing_code", subject_type="edge_pairing_code",
                           subject_id=row.id, detail={"expires_at": expires_at.isoformat()})
    return code, expires_at


async def pair(p: Platform, code: str, label: str | None) -> tuple[EdgeDevice, str]:
    """Exchange a one-time code for a device key. The code is spent in the same transaction: a second use fails."""
    now = p.now()
    key = new_secret(DEVICE_KEY_PREFIX)
    async with p.db.transaction() as session:
        row = (await session.execute(select(EdgePairingCode).where(EdgePairingCode.code_hash == _code_digest(code))
                                     .with_for_update())).scalar_one_or_none()
        if row is None:
            raise Unauthorized("this pairing code is unknown; make a new one in the owner portal")
        if row.used_at is not None:
            raise Gone("this pairing code was already used; each code pairs one device once. Make a new one")
        if row.expires_at <= now:
            raise Gone("this pairing code has expired; make a new one in the owner portal")
        spent = await session.execute(update(EdgePairingCode).where(EdgePairingCode.id == row.id,
                                                                     EdgePairingCode.used_at.is_(None))
                                      .values(used_at=now))
        if spent.rowcount != 1:  # a concurrent exchange won
            raise Gone("this pairing code was already used; each code pairs one device once. Make a new one")
        device = EdgeDevice(owner_id=row.owner_id, label=label or "Edge relay", key_hash=digest(key), status="paired",
                            live_paused=False, created_at=now)
        session.add(device)
        await session.flush()
        row.device_id = device.id
        await audit.record(p.db, session, now, Actor(kind="user", user_id=row.owner_id, role="owner"), "edge.paired",
                           subject_type="edge_device", subject_id=device.id, detail={"label": device.label})
    return device, key


async def authenticate_device(p: Platform, key: str) -> EdgeDevice:
    if not key.startswith(DEVICE_KEY_PREFIX):
        raise Unauthorized("send the device key: 'Authorization: Bearer cce_...'")
    async with p.db.sessions() as session:
        device = (await session.execute(select(EdgeDevice).where(EdgeDevice.key_hash == digest(key)))).scalar_one_or_none()
    if device is None or device.status != "paired":
        raise Unauthorized("this device key is unknown or the device was unpaired")
    return device


def public_key_b64(p: Platform) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return base64.b64encode(p.keyring.verify_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


async def device_seen(p: Platform, device_id: str, refs: list[str] | None = None) -> None:
    now = p.now()
    async with p.db.transaction() as session:
        await session.execute(update(EdgeDevice).where(EdgeDevice.id == device_id).values(last_seen_at=now))
        if refs is not None:
            existing = set((await session.execute(select(EdgeDeviceCamera.camera_ref)
                                                  .where(EdgeDeviceCamera.device_id == device_id))).scalars())
            for ref in refs:
                if ref not in existing:
                    session.add(EdgeDeviceCamera(device_id=device_id, camera_ref=ref, offered_at=now))
            await session.execute(update(EdgeDeviceCamera).where(EdgeDeviceCamera.device_id == device_id,
                                                                 EdgeDeviceCamera.camera_ref.in_(refs))
                                  .values(offered_at=now))


async def _own_device(session: AsyncSession, principal: Principal, device_id: str) -> EdgeDevice:
    device = await session.get(EdgeDevice, device_id)
    if device is None or device.owner_id != principal.user_id or device.status != "paired":
        raise NotFound("no such edge device")
    return device


async def update_device(p: Platform, principal: Principal, device_id: str, live_paused: bool | None,
                        label: str | None) -> None:
    now = p.now()
    async with p.db.transaction() as session:
        device = await _own_device(session, principal, device_id)
        changed: dict[str, Any] = {}
        if live_paused is not None and live_paused != device.live_paused:
            device.live_paused = live_paused
            changed["live_paused"] = live_paused
        if label is not None and label != device.label:
            device.label = label
            changed["label"] = label
        if changed:
            cameras = await linked_camera_ids(session, device)
            await audit.record(p.db, session, now, principal.actor, "edge.updated", subject_type="edge_device",
                               subject_id=device.id, camera_ids=cameras, detail=changed)


async def unpair(p: Platform, principal: Principal, device_id: str) -> None:
    now = p.now()
    async with p.db.transaction() as session:
        device = await _own_device(session, principal, device_id)
        device.status, device.key_hash, device.unpaired_at = "unpaired", None, now
        cameras = await linked_camera_ids(session, device)
        await audit.record(p.db, session, now, principal.actor, "edge.unpaired", subject_type="edge_device",
                           subject_id=device.id, camera_ids=cameras)


async def linked_camera_ids(session: AsyncSession, device: EdgeDevice) -> list[str]:
    return [c.id for c in await linked_cameras(session, device)]


async def linked_cameras(session: AsyncSession, device: EdgeDevice) -> list[Camera]:
    """The device owner's cameras whose connection names this device (another owner cannot claim it)."""
    rows = (await session.execute(select(Camera).where(Camera.owner_id == device.owner_id, Camera.connection_kind == "edge",
                                                       Camera.status != "removed"))).scalars().all()
    return [c for c in rows if (c.connection or {}).get("device_id") == device.id]


# --- emergencies --------------------------------------------------------------------------------------


_FENCES: dict[str, Any] = {}


def emergency_fence(emergency: Emergency) -> Any:
    fence = _FENCES.get(emergency.id)
    if fence is None:
        if len(_FENCES) > 1000:  # emergencies are few and short: forget the old ones
            _FENCES.clear()
        fence = _FENCES[emergency.id] = parse_area(emergency.area)
    return fence


def emergency_active(emergency: Emergency, now: datetime) -> bool:
    return emergency.ended_at is None and emergency.started_at <= now < emergency.ends_at


def emergency_covers(emergency: Emergency, camera: Camera) -> bool:
    if not (emergency.min_lat <= camera.lat <= emergency.max_lat and emergency.min_lon <= camera.lon <= emergency.max_lon):
        return False
    return bool(emergency_fence(emergency).contains([camera.lon], [camera.lat])[0])


async def declare_emergency(p: Platform, principal: Principal, spec: EmergencyCreate) -> Emergency:
    now = p.now()
    minutes = spec.minutes if spec.minutes is not None else p.settings.emergency_default_minutes
    limit = p.settings.emergency_max_minutes
    if minutes > limit:
        raise InvalidInput.at(("body", "minutes"), f"an emergency lasts at most {limit:g} minutes (this platform's limit); "
                                                   "declare a new one when it ends if it must go on")
    fence = parse_area(spec.area)
    async with p.db.transaction() as session:
        agency = await session.get(Agency, principal.agency_id)
        if agency is None:
            raise Forbidden("only a supervisor of an agency declares an emergency")
        if not jurisdiction_shape(agency).covers(fence.as_polygon()):
            raise InvalidInput.at(("body", "area"), "the area reaches outside your agency's jurisdiction")
        min_lon, min_lat, max_lon, max_lat = fence.as_polygon().bounds
        emergency = Emergency(agency_id=agency.id, area=fence.as_geojson(), min_lon=min_lon, min_lat=min_lat,
                              max_lon=max_lon, max_lat=max_lat, reason=spec.reason, declared_by=principal.user_id,
                              started_at=now, ends_at=now + timedelta(minutes=minutes))
        session.add(emergency)
        await session.flush()
        await audit.record(p.db, session, now, principal.actor, "emergency.declared", subject_type="emergency",
                           subject_id=emergency.id,
                           detail={"reason": spec.reason, "minutes": minutes, "ends_at": emergency.ends_at.isoformat()})
    return emergency


async def end_emergency(p: Platform, principal: Principal, emergency_id: str) -> Emergency:
    now = p.now()
    async with p.db.transaction() as session:
        emergency = await session.get(Emergency, emergency_id)
        if emergency is None or emergency.agency_id != principal.agency_id:
            raise NotFound("no such emergency")
        if emergency.ended_at is None and emergency.ends_at > now:
            emergency.ended_at, emergency.ended_by = now, principal.user_id
            await audit.record(p.db, session, now, principal.actor, "emergency.ended", subject_type="emergency",
                               subject_id=emergency.id, detail={"reason": "ended by a supervisor"})
    return emergency


async def list_emergencies(p: Platform, principal: Principal, *, all_: bool = False) -> list[Emergency]:
    now = p.now()
    async with p.db.sessions() as session:
        stmt = select(Emergency).where(Emergency.agency_id == principal.agency_id).order_by(Emergency.started_at.desc())
        if not all_:
            stmt = stmt.where(Emergency.ended_at.is_(None), Emergency.ends_at > now)
        return list((await session.execute(stmt.limit(200))).scalars())


def emergency_out(e: Emergency, now: datetime) -> dict[str, Any]:
    return {"id": e.id, "agency_id": e.agency_id, "area": e.area, "reason": e.reason, "declared_by": e.declared_by,
            "started_at": e.started_at, "ends_at": e.ends_at, "ended_at": e.ended_at, "active": emergency_active(e, now)}


async def active_emergencies(session: AsyncSession, now: datetime, agency_ids: set[str] | None = None) -> list[Emergency]:
    stmt = select(Emergency).where(Emergency.ended_at.is_(None), Emergency.ends_at > now, Emergency.started_at <= now)
    if agency_ids is not None:
        stmt = stmt.where(Emergency.agency_id.in_(sorted(agency_ids)))
    return list((await session.execute(stmt)).scalars())


# --- the rule -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    rule: str
    detail: str
    status: int = 403


async def camera_by_id(session: AsyncSession, camera_id: str) -> Camera | None:
    return (await session.execute(select(Camera).where(Camera.id == camera_id))).scalar_one_or_none()


def device_of(camera: Camera) -> tuple[str | None, str | None]:
    if camera.connection_kind != "edge":
        return None, None
    connection = camera.connection or {}
    return connection.get("device_id"), connection.get("camera_ref")


def decide(camera: Camera, consent: Consent, agency: Agency, device: EdgeDevice | None, emergencies: list[Emergency],
           now: datetime, *, emergency_id: str | None = None) -> Refusal | Emergency | None:
    """None or the covering emergency when a live view of ``camera`` by ``agency`` is allowed now; else the Refusal.

    ``emergency_id``: for an open session, the emergency it opened under must be the one still covering it.
    """
    if agency.suspended:
        return Refusal("agency_suspended", f"access for {agency.name} is suspended by the city")
    if camera.status != "active":
        return Refusal("camera_inactive", "the owner paused or removed this camera")
    if not consent.active:
        return Refusal("no_grant", "the owner's grant for this camera was revoked or has expired")
    mode = consent.live
    if mode == "never":
        return Refusal("live_never", "the owner never allows live view of this camera (live: never)")
    if device is None or device.status != "paired" or device.owner_id != camera.owner_id:
        return Refusal("no_edge_device", "this camera has no paired edge relay, so it cannot be viewed live", 409)
    if device.live_paused:
        return Refusal("owner_paused", "the owner paused all live access through this camera's edge relay")
    if mode == "always":
        return None
    covering = [e for e in emergencies if e.agency_id == agency.id and emergency_active(e, now) and emergency_covers(e, camera)]
    if emergency_id is not None:
        covering = [e for e in covering if e.id == emergency_id]
    if not covering:
        return Refusal("live_emergency_only",
                       "the owner allows live view of this camera only during an emergency (live: emergency_only), "
                       "and no active emergency of your agency covers it")
    return min(covering, key=lambda e: e.ends_at)


def _refuse(refusal: Refusal) -> Exception:
    if refusal.status == 409:
        return Conflict(refusal.detail, rule=refusal.rule)
    return ConsentRefused(refusal.detail, rule=refusal.rule)


async def _camera_for_agency(session: AsyncSession, camera_id: str, agency: Agency, now: datetime) -> tuple[Camera, Consent]:
    camera = (await session.execute(select(Camera).where(Camera.id == camera_id, Camera.status != "removed"))).scalar_one_or_none()
    if camera is None:
        raise NotFound("no such camera")
    consent = Consent.of(camera, (await shares_of(session, [camera.id]))[camera.id], now)
    if not consent.reaches(agency, camera):
        raise NotFound("no such camera")
    return camera, consent


async def open_session(p: Platform, principal: Principal, camera_id: str, reason: str, *,
                       connected: Presence) -> LiveSession:
    now = p.now()
    async with p.db.transaction() as session:
        agency = await session.get(Agency, principal.agency_id)
        if agency is None:
            raise Forbidden("live view is for an agency's investigators")
        camera, consent = await _camera_for_agency(session, camera_id, agency, now)
        device_id, camera_ref = device_of(camera)
        device = await session.get(EdgeDevice, device_id) if device_id else None
        emergencies = await active_emergencies(session, now, {agency.id})
        outcome = decide(camera, consent, agency, device, emergencies, now)
        if isinstance(outcome, Refusal):
            await audit.record(p.db, session, now, principal.actor, "live.refused", subject_type="camera",
                               subject_id=camera.id, camera_ids=[camera.id],
                               detail={"rule": outcome.rule, "reason": reason, "live": consent.live})
            refused = outcome
        else:
            refused = None
    if refused is not None:
        raise _refuse(refused)
    assert device is not None
    if not camera_ref or not await _present(connected, device.id):
        raise Conflict("the camera's edge relay is not connected right now; try again when it is online",
                       rule="edge_offline")
    async with p.db.transaction() as session:
        live = LiveSession(camera_id=camera.id, device_id=device.id, agency_id=agency.id, user_id=principal.user_id,
                           reason=reason, live_mode=consent.live,
                           emergency_id=outcome.id if isinstance(outcome, Emergency) else None,
                           started_at=now, ends_at=now + timedelta(minutes=p.settings.live_session_minutes),
                           renewals=0)
        session.add(live)
        await session.flush()
        await audit.record(p.db, session, now, principal.actor, "live.opened", subject_type="live_session",
                           subject_id=live.id, camera_ids=[camera.id],
                           detail={"reason": reason, "live": consent.live, "ends_at": live.ends_at.isoformat(),
                                   "emergency_id": live.emergency_id})
        if live.live_mode == "emergency_only":
            await enqueue(session, now, "notify.live", {"session_id": live.id, "kind": "live_opened"},
                          key=f"live_opened:{live.id}")
    return live


async def _session_of_caller(session: AsyncSession, principal: Principal, session_id: str) -> LiveSession:
    live = await session.get(LiveSession, session_id)
    if live is None or live.agency_id != principal.agency_id:
        raise NotFound("no such live session")
    if live.user_id != principal.user_id and principal.role != "supervisor":
        raise NotFound("no such live session")
    return live


async def get_session(p: Platform, principal: Principal, session_id: str) -> LiveSession:
    async with p.db.sessions() as session:
        return await _session_of_caller(session, principal, session_id)


async def end_session(p: Platform, principal: Principal, session_id: str) -> LiveSession:
    now = p.now()
    async with p.db.transaction() as session:
        live = await _session_of_caller(session, principal, session_id)
        if live.ended_at is None:
            await _close(p, session, live, now, "ended by the investigator", principal.actor)
    return live


async def renew_session(p: Platform, principal: Principal, session_id: str, reason: str) -> LiveSession:
    """A new hard end from now, asked with a reason; the rule is checked again first."""
    now = p.now()
    async with p.db.transaction() as session:
        live = await _session_of_caller(session, principal, session_id)
        if live.user_id != principal.user_id:
            raise Forbidden("only the investigator who opened a live session renews it")
        if live.ended_at is not None or live.ends_at <= now:
            raise Gone("this live session has ended; open a new one")
        refusal = await why_not_now(session, live, now)
        if refusal is not None:
            raise _refuse(refusal)
        live.ends_at = now + timedelta(minutes=p.settings.live_session_minutes)
        live.renewals += 1
        await audit.record(p.db, session, now, principal.actor, "live.renewed", subject_type="live_session",
                           subject_id=live.id, camera_ids=[live.camera_id],
                           detail={"reason": reason, "ends_at": live.ends_at.isoformat(), "renewals": live.renewals})
    return live


async def why_not_now(session: AsyncSession, live: LiveSession, now: datetime) -> Refusal | None:
    """Why an open session must end now, or None while it stays allowed."""
    if live.ended_at is not None:
        return Refusal("ended", live.end_reason or "ended")
    if live.ends_at <= now:
        return Refusal("hard_end", "the session reached its hard end")
    camera = await camera_by_id(session, live.camera_id)
    agency = await session.get(Agency, live.agency_id)
    device = await session.get(EdgeDevice, live.device_id)
    if camera is None or agency is None:
        return Refusal("no_grant", "the camera is gone")
    if device_of(camera)[0] != live.device_id:
        return Refusal("no_edge_device", "the camera's connection no longer names this edge relay")
    consent = Consent.of(camera, (await shares_of(session, [camera.id]))[camera.id], now)
    if not consent.reaches(agency, camera):
        return Refusal("no_grant", "the owner's grant no longer reaches this agency")
    emergencies = await active_emergencies(session, now, {agency.id}) if consent.live == "emergency_only" else []
    outcome = decide(camera, consent, agency, device, emergencies, now,
                     emergency_id=live.emergency_id if live.emergency_id else None)
    if consent.live == "emergency_only" and live.emergency_id is None and not isinstance(outcome, Refusal):
        # Opened under "always", now "emergency_only": the view continues only as its own emergency session.
        return Refusal("live_emergency_only", "the owner now allows live view only during an emergency")
    return outcome if isinstance(outcome, Refusal) else None


END_REASONS = {
    "hard_end": "the session reached its hard end",
    "live_never": "the owner revoked live view",
    "no_grant": "the owner revoked consent",
    "live_emergency_only": "the emergency ended",
    "owner_paused": "the owner paused live access",
    "camera_inactive": "the owner paused the camera",
    "agency_suspended": "the agency was suspended",
    "no_edge_device": "the edge relay was unpaired",
}


async def _close(p: Platform, session: AsyncSession, live: LiveSession, now: datetime, reason: str, actor: Actor) -> bool:
    """Close an open session once: every web process sweeps, and two may find the same session to end at the same
    moment; only the one whose update finds it still open records the closing (False for the other)."""
    closed = await session.execute(update(LiveSession).where(LiveSession.id == live.id, LiveSession.ended_at.is_(None))
                                   .values(ended_at=now, end_reason=reason).execution_options(synchronize_session=False))
    if closed.rowcount != 1:
        await session.refresh(live)
        return False
    live.ended_at, live.end_reason = now, reason
    await audit.record(p.db, session, now, actor, "live.closed", subject_type="live_session", subject_id=live.id,
                       camera_ids=[live.camera_id], detail={"reason": reason})
    if live.live_mode == "emergency_only":
        await enqueue(session, now, "notify.live", {"session_id": live.id, "kind": "live_closed"},
                      key=f"live_closed:{live.id}")
    return True


async def sweep(p: Platform, *, device_ids: set[str] | None = None, offline: dict[str, datetime] | None = None) -> list[LiveSession]:
    """End every open session that is no longer allowed; returns the sessions ended now (and those ended elsewhere
    are found by the caller comparing with what it relays). ``offline``: devices lost since when."""
    now = p.now()
    ended: list[LiveSession] = []
    async with p.db.sessions() as session:
        stmt = select(LiveSession).where(LiveSession.ended_at.is_(None))
        if device_ids is not None:
            stmt = stmt.where(LiveSession.device_id.in_(sorted(device_ids)))
        open_sessions = list((await session.execute(stmt)).scalars())
        to_end: list[tuple[str, str]] = []
        for live in open_sessions:
            refusal = await why_not_now(session, live, now)
            lost = (offline or {}).get(live.device_id)
            if refusal is None and lost is not None and (now - lost).total_seconds() > p.settings.live_statement_seconds:
                refusal = Refusal("edge_offline", "the edge relay lost its connection")
            if refusal is not None:
                to_end.append((live.id, END_REASONS.get(refusal.rule, refusal.detail)))
    for session_id, reason in to_end:
        async with p.db.transaction() as session:
            live = await session.get(LiveSession, session_id)
            if live is not None and live.ended_at is None:
                if await _close(p, session, live, now, reason, Actor.system("live")):
                    ended.append(live)
    return ended


async def relay_state(p: Platform, device_id: str, session_id: str, *, started: bool) -> None:
    """The agent confirmed it started or stopped relaying (only ever for a session of its own device)."""
    now = p.now()
    async with p.db.transaction() as session:
        column = LiveSession.relay_started_at if started else LiveSession.relay_stopped_at
        await session.execute(update(LiveSession).where(LiveSession.id == session_id, LiveSession.device_id == device_id,
                                                        column.is_(None)).values({column.key: now}))


async def agent_refused(p: Platform, device_id: str, session_id: str, reason: str) -> None:
    now = p.now()
    async with p.db.transaction() as session:
        live = await session.get(LiveSession, session_id)
        if live is not None and live.device_id == device_id and live.ended_at is None:
            await _close(p, session, live, now, f"the edge relay refused: {reason}", Actor.system("edge"))


# --- the owner's view ---------------------------------------------------------------------------------


def session_out(live: LiveSession, now: datetime, *, public_url: str | None = None, who: str | None = None,
                agency: str | None = None) -> dict[str, Any]:
    active = live.ended_at is None and live.ends_at > now
    return {"id": live.id, "camera_id": live.camera_id, "agency_id": live.agency_id, "agency": agency,
            "user_id": live.user_id, "who": who, "reason": live.reason, "live_mode": live.live_mode,
            "emergency_id": live.emergency_id, "started_at": live.started_at, "ends_at": live.ends_at,
            "renewals": live.renewals, "ended_at": live.ended_at, "end_reason": live.end_reason,
            "relay_started_at": live.relay_started_at, "relay_stopped_at": live.relay_stopped_at, "active": active,
            "playlist_url": playlist_url(public_url, live.id) if public_url is not None and active else None}


def playlist_url(base: str | None, session_id: str) -> str:
    return f"{base or ''}/api/v1/live-sessions/{session_id}/playlist.m3u8"


async def list_devices(p: Platform, principal: Principal, connected: Presence) -> list[dict[str, Any]]:
    now = p.now()
    out = []
    async with p.db.sessions() as session:
        devices = (await session.execute(select(EdgeDevice).where(EdgeDevice.owner_id == principal.user_id,
                                                                  EdgeDevice.status == "paired")
                                         .order_by(EdgeDevice.created_at))).scalars().all()
        for device in devices:
            cameras = await linked_cameras(session, device)
            by_ref = {(c.connection or {}).get("camera_ref"): c for c in cameras}
            refs = list((await session.execute(select(EdgeDeviceCamera.camera_ref)
                                               .where(EdgeDeviceCamera.device_id == device.id))).scalars())
            listed = []
            for ref in sorted(set(refs) | {r for r in by_ref if r}):
                camera = by_ref.get(ref)
                listed.append({"camera_ref": ref, "camera_id": camera.id if camera else None,
                               "camera_label": camera.label if camera else None,
                               "live": camera.grant_live if camera else None})
            rows = (await session.execute(
                select(LiveSession, Agency.name, User.role, User.badge)
                .join(Agency, Agency.id == LiveSession.agency_id).join(User, User.id == LiveSession.user_id)
                .where(LiveSession.device_id == device.id).order_by(LiveSession.started_at.desc()).limit(100)
            )).all()
            sessions = [session_out(live, now, who=f"{role.title()} {badge}, {agency}", agency=agency)
                        for live, agency, role, badge in rows]
            out.append({"id": device.id, "label": device.label, "status": device.status, "live_paused": device.live_paused,
                        "connected": False, "created_at": device.created_at,
                        "last_seen_at": device.last_seen_at, "cameras": listed, "live_sessions": sessions})
    for device in out:  # asked once the database session is closed: through the broker, it may take a moment
        device["connected"] = await _present(connected, device["id"])
    return out


# --- the signed live policy an agent enforces ---------------------------------------------------------


def canonical(value: dict[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


async def statements_for(p: Platform, device_id: str, refs: list[str]) -> dict[str, dict[str, Any]]:
    """The live policy of every camera reference the device offered, as the agent will verify it: the owner's live
    mode as it stands (``never`` for a reference no camera of the device's owner names, for a paused device and for a
    grant not in force) and the active emergencies that cover the camera, all with an expiry."""
    now = p.now()
    ttl = p.settings.live_statement_seconds
    out: dict[str, dict[str, Any]] = {}
    async with p.db.sessions() as session:
        device = await session.get(EdgeDevice, device_id)
        cameras = await linked_cameras(session, device) if device is not None else []
        by_ref = {(c.connection or {}).get("camera_ref"): c for c in cameras}
        shares = await shares_of(session, [c.id for c in cameras])
        emergencies = await active_emergencies(session, now) if any(c.grant_live == "emergency_only" for c in cameras) else []
        agencies = {a.id: a for a in (await session.execute(select(Agency).where(
            Agency.id.in_(sorted({e.agency_id for e in emergencies}))))).scalars()} if emergencies else {}
    for ref in refs:
        camera = by_ref.get(ref)
        mode, covering = "never", []
        if camera is not None and device is not None and device.status == "paired" and not device.live_paused:
            consent = Consent.of(camera, shares[camera.id], now)
            mode = consent.live if camera.status == "active" else "never"
            if mode == "emergency_only":
                covering = [{"id": e.id, "ends_at": e.ends_at.timestamp()} for e in emergencies
                            if e.agency_id in agencies and consent.reaches(agencies[e.agency_id], camera)
                            and emergency_covers(e, camera)]
        out[ref] = {"v": 1, "device_id": device_id, "camera_ref": ref, "camera_id": camera.id if camera else None,
                    "live": mode, "emergencies": sorted(covering, key=lambda e: e["id"]),
                    "issued_at": now.timestamp(), "expires_at": now.timestamp() + ttl}
    return out


def sign(p: Platform, statement: dict[str, Any]) -> dict[str, str]:
    text = canonical(statement)
    signature = p.keyring.signing_key().sign(text.encode())
    return {"statement": text, "signature": base64.b64encode(signature).decode()}


# --- owners are told when an emergency-only feed opens and closes -------------------------------------


@job_handler("notify.live")
async def notify_live(p: Platform, job: Job) -> dict[str, Any]:
    from ..notify import channels_of, deliver

    async with p.db.sessions() as session:
        live = await session.get(LiveSession, job.payload["session_id"])
        if live is None:
            raise PermanentFailure("the live session no longer exists")
        camera = await camera_by_id(session, live.camera_id)
        agency = await session.get(Agency, live.agency_id)
        emergency = await session.get(Emergency, live.emergency_id) if live.emergency_id else None
        owner = await session.get(User, camera.owner_id) if camera else None
    if camera is None or owner is None or agency is None:
        raise PermanentFailure("the camera or its owner no longer exists")
    opened = job.payload["kind"] == "live_opened"
    fmt = "%Y-%m-%d %H:%M:%S UTC"
    lines = [f"Hello {owner.name},", ""]
    if opened:
        lines += [f"{agency.name} opened a live view of your camera \"{camera.label}\" during a declared emergency.",
                  f"Emergency: {emergency.reason if emergency else 'unknown'}",
                  f"Reason given: {live.reason}",
                  f"Started: {live.started_at.strftime(fmt)}; it ends by {live.ends_at.strftime(fmt)} at the latest.",
                  "", "You allowed live view only in emergencies. You can pause all live access or revoke it at any time "
                      "in the owner portal; the view stops within seconds."]
    else:
        lines += [f"The live view of your camera \"{camera.label}\" by {agency.name} has closed.",
                  f"Started: {live.started_at.strftime(fmt)}; ended: {(live.ended_at or live.ends_at).strftime(fmt)} "
                  f"({live.end_reason or 'ended'})."]
    notification = OwnerNotification(
        owner_id=owner.id, email=owner.email, name=owner.name, phone=owner.phone, channels=channels_of(owner),
        subject=(f"Live view opened: {camera.label}" if opened else f"Live view closed: {camera.label}"),
        text="\n".join(lines), kind=job.payload["kind"],
        data={"session_id": live.id, "camera_id": camera.id, "agency": agency.name, "reason": live.reason,
              "emergency_id": live.emergency_id, "started_at": live.started_at.isoformat(),
              "ended_at": live.ended_at.isoformat() if live.ended_at else None},
        idempotency_key=job.idempotency_key or job.id,
    )
    return await deliver(p, notification)
