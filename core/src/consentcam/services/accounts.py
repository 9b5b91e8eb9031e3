"""Owners, agencies, agency users, login and the kill switch."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..audit import Actor
from ..db.models import Agency, AuthToken, LoginThrottle, User
from ..errors import (
    AgencySuspended,
    Conflict,
    FieldError,
    Forbidden,
    InvalidInput,
    LoginFailed,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from ..geo import bounds_of, parse_area_geojson, to_geojson
from ..platform import Platform
from ..schemas import AgencyCreate, OwnerRegistration
from ..security import digest, hash_password, new_secret, one_time_password, verify_password


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one HTTP request."""

    user_id: str
    role: str
    agency_id: str | None
    badge: int
    name: str
    token_kind: str = "bearer"
    csrf_token: str | None = None
    scopes: frozenset[str] | None = None  # API keys carry scopes; users have none (their role decides)

    @property
    def actor(self) -> Actor:
        if self.token_kind == "api_key":
            return Actor(kind="api_key", user_id=self.user_id, role="api_key", agency_id=self.agency_id, name=self.name)
        return Actor(kind="user", user_id=self.user_id, role=self.role, agency_id=self.agency_id, badge=self.badge)

    @property
    def is_platform_admin(self) -> bool:
        return self.role == "admin" and self.agency_id is None


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def register_owner(p: Platform, reg: OwnerRegistration) -> str:
    return (await register_owner_with_secret(p, reg))[0]


async def register_owner_with_secret(p: Platform, reg: OwnerRegistration) -> tuple[str, str | None]:
    """Register an owner; also returns the webhook signing secret made for them (when they gave a webhook URL),
    which is shown to them once, at registration, so that their receiver can check signatures."""
    now = p.now()
    user = User(
        email=normalise_email(reg.email),
        name=reg.name,
        phone=reg.phone,
        password_hash=hash_password(reg.password),
        role="owner",
        notify_email=reg.notify.email,
        notify_sms=reg.notify.sms,
        webhook_url=reg.notify.webhook_url,
        created_at=now,
    )
    secret = new_secret("whsec_", 24) if reg.notify.webhook_url else None
    # Kept encrypted with the deployment key (the channel needs it back to sign); shown to the owner once.
    user.webhook_secret = p.keyring.encrypt(secret) if secret else None
    try:
        async with p.db.transaction() as session:
            session.add(user)
            await session.flush()
            await audit.record(p.db, session, now, Actor(kind="user", user_id=user.id, role="owner"), "owner.registered",
                               subject_type="user", subject_id=user.id)
    except IntegrityError as exc:
        raise Conflict(
            "an account with this email already exists", errors=[FieldError(("body", "email"), "already registered")]
        ) from exc
    return user.id, secret


# --- an owner's notification choices ------------------------------------------------------------------


def notification_prefs_out(user: User, new_webhook_secret: str | None = None) -> dict[str, Any]:
    return {"email": user.notify_email, "sms": user.notify_sms, "webhook_url": user.webhook_url,
            "webhook_secret_set": bool(user.webhook_secret), "webhook_secret": new_webhook_secret}


async def notification_prefs(p: Platform, who: Principal) -> dict[str, Any]:
    async with p.db.sessions() as session:
        user = await session.get(User, who.user_id)
        if user is None:
            raise NotFound("no such account")
        return notification_prefs_out(user)


async def set_notification_prefs(p: Platform, who: Principal, email: bool, sms: bool, webhook_url: str | None,
                                 rotate_webhook_secret: bool) -> dict[str, Any]:
    """Change how the owner is told of requests. A new webhook URL (or a rotation) gets a new signing secret,
    returned this once; removing the URL removes the secret. Audited, without the URL or the secret."""
    now = p.now()
    async with p.db.transaction() as session:
        user = await session.get(User, who.user_id)
        if user is None:
            raise NotFound("no such account")
        fresh = None
        if webhook_url and (webhook_url != user.webhook_url or rotate_webhook_secret or not user.webhook_secret):
            fresh = new_secret("whsec_", 24)
            user.webhook_secret = p.keyring.encrypt(fresh)
        if not webhook_url:
            user.webhook_secret = None
        user.notify_email, user.notify_sms, user.webhook_url = email, sms, webhook_url
        await audit.record(p.db, session, now, who.actor, "owner.notifications_changed", subject_type="user",
                           subject_id=user.id, detail={"email": email, "sms": sms, "webhook": bool(webhook_url),
                                                       "webhook_secret_rotated": fresh is not None})
        return notification_prefs_out(user, fresh)


# --- login, tokens and throttling ---------------------------------------------------------------------


async def _throttled(p: Platform, keys: list[str]) -> float:
    now = p.now()
    async with p.db.sessions() as session:
        rows = (await session.execute(select(LoginThrottle).where(LoginThrottle.key.in_(keys)))).scalars().all()
    waits = [(r.blocked_until - now).total_seconds() for r in rows if r.blocked_until and r.blocked_until > now]
    return max(waits, default=0.0)


async def _note_failure(p: Platform, keys: list[str], limit: int | None = None) -> None:
    now = p.now()
    limit = limit or p.settings.login_max_failures
    async with p.db.transaction() as session:
        # Concurrent failures for the same key must neither collide inserting its row nor lose a count: insert
        # what is missing (ignoring a row another failure just wrote), then lock the rows in a fixed order.
        insert_ignoring = (sqlite_insert if p.db.is_sqlite else postgresql_insert)(LoginThrottle)
        await session.execute(insert_ignoring.on_conflict_do_nothing(),
                              [{"key": key, "failures": 0, "last_failure_at": now} for key in sorted(keys)])
        rows = (await session.execute(
            select(LoginThrottle).where(LoginThrottle.key.in_(keys)).order_by(LoginThrottle.key).with_for_update()
        )).scalars().all()
        for row in rows:
            if (now - row.last_failure_at) > timedelta(minutes=15):
                row.failures = 0
            row.failures += 1
            row.last_failure_at = now
            if row.failures >= limit:
                # Exponential slow-down past the limit, capped at 15 minutes.
                extra = min(p.settings.login_lockout_seconds * 2 ** (row.failures - limit), 900.0)
                row.blocked_until = now + timedelta(seconds=extra)


async def check_rate(p: Platform, key: str, what: str) -> None:
    """Refuse with 429 while ``key`` (an action and a client address) is slowed down."""
    wait = await _throttled(p, [key])
    if wait > 0:
        raise TooManyRequests(f"too many {what} from your address; try again in {int(wait) + 1} s", retry_after=wait)


async def note_rate(p: Platform, key: str, limit: int) -> None:
    """Count one more event for ``key``; past ``limit`` within 15 minutes it is slowed down (as failed logins are)."""
    await _note_failure(p, [key], limit)


async def _clear_failures(p: Platform, key: str) -> None:
    async with p.db.transaction() as session:
        row = await session.get(LoginThrottle, key)
        if row is not None:
            await session.delete(row)


async def login(p: Platform, email: str, password: str, client: str, *, kind: str = "bearer") -> tuple[str, AuthToken, User]:
    email_n = normalise_email(email)
    keys = [f"email:{email_n}", f"addr:{client}"]
    wait = await _throttled(p, keys)
    if wait > 0:
        raise TooManyRequests(f"too many failed logins; try again in {int(wait) + 1} s", retry_after=wait)
    async with p.db.sessions() as session:
        user = (await session.execute(select(User).where(User.email == email_n))).scalar_one_or_none()
    if not verify_password(user.password_hash if user else None, password):
        await _note_failure(p, keys)
        raise LoginFailed("email or password is wrong")
    assert user is not None
    # The account's own counter is cleared; the address's is not: otherwise whoever holds one valid account could
    # reset their address's count between guesses at other people's passwords. It lapses 15 minutes after the
    # address's last failure.
    await _clear_failures(p, f"email:{email_n}")
    secret = new_secret("cc_")
    now = p.now()
    token = AuthToken(
        token_hash=digest(secret),
        user_id=user.id,
        kind=kind,
        csrf_token=new_secret("", 24) if kind == "cookie" else None,
        created_at=now,
        expires_at=now + timedelta(hours=p.settings.token_hours),
    )
    async with p.db.transaction() as session:
        session.add(token)
    return secret, token, user


async def logout(p: Platform, secret: str) -> None:
    async with p.db.transaction() as session:
        await session.execute(update(AuthToken).where(AuthToken.token_hash == digest(secret)).values(revoked=True))


async def authenticate(p: Platform, secret: str) -> Principal:
    """Resolve a bearer or cookie token. Tokens of a suspended agency stay valid but are refused while it is."""
    now = p.now()
    async with p.db.sessions() as session:
        row = (
            await session.execute(
                select(AuthToken, User, Agency)
                .join(User, User.id == AuthToken.user_id)
                .outerjoin(Agency, Agency.id == User.agency_id)
                .where(AuthToken.token_hash == digest(secret))
            )
        ).first()
    if row is None or row.AuthToken.revoked or row.AuthToken.expires_at <= now:
        raise Unauthorized("the token is unknown or has expired; sign in again")
    user, agency = row.User, row.Agency
    if agency is not None and agency.suspended:
        raise AgencySuspended(
            f"access for {agency.name} is suspended by the city"
            + (f": {agency.suspended_reason}" if agency.suspended_reason else "")
            + "; your token works again once it is resumed",
            agency_id=agency.id,
        )
    return Principal(
        user_id=user.id,
        role=user.role,
        agency_id=user.agency_id,
        badge=user.badge,
        name=user.name,
        token_kind=row.AuthToken.kind,
        csrf_token=row.AuthToken.csrf_token,
    )


# --- agencies -----------------------------------------------------------------------------------------


def parse_jurisdiction(raw: Any, loc: tuple[str | int, ...] = ("jurisdiction",)) -> tuple[dict[str, Any], tuple[float, ...]]:
    geometry = parse_area_geojson(raw, loc, allow_multi=True)
    return to_geojson(geometry), bounds_of(geometry)


async def create_agency(p: Platform, actor: Actor, spec: AgencyCreate,
                        loc: tuple[str | int, ...] = ("body", "jurisdiction")) -> str:
    jurisdiction, (min_lon, min_lat, max_lon, max_lat) = parse_jurisdiction(spec.jurisdiction, loc)
    now = p.now()
    agency = Agency(
        name=spec.name,
        jurisdiction=jurisdiction,
        min_lon=min_lon,
        min_lat=min_lat,
        max_lon=max_lon,
        max_lat=max_lat,
        require_approval=spec.require_approval,
        max_window_hours=spec.max_window_hours,
        max_area_km2=spec.max_area_km2,
        upload_link_days=spec.upload_link_days,
        policy_text=spec.policy_text,
        created_at=now,
    )
    try:
        async with p.db.transaction() as session:
            session.add(agency)
            await session.flush()
            await audit.record(p.db, session, now, actor, "agency.created", subject_type="agency", subject_id=agency.id,
                               detail={"name": spec.name})
    except IntegrityError as exc:
        raise Conflict(f"an agency named {spec.name!r} already exists") from exc
    return agency.id


async def create_agency_user(
    p: Platform, actor: Actor, agency_id: str, email: str, role: str, name: str | None = None, *, platform_admin: bool = False
) -> tuple[str, str]:
    """Create an agency user (or a platform admin with ``platform_admin``); returns (id, one-time password)."""
    if role not in {"investigator", "supervisor", "auditor", "admin"}:
        raise InvalidInput.at("role", "role is investigator, supervisor, auditor or admin")
    password = one_time_password()
    now = p.now()
    async with p.db.sessions() as session:
        if not platform_admin and await session.get(Agency, agency_id) is None:
            raise NotFound(f"no agency {agency_id}")
    try:
        async with p.db.transaction() as session:
            badge = (
                await session.execute(select(func.coalesce(func.max(User.badge), 0)).where(User.agency_id == agency_id))
            ).scalar_one() + 1
            user = User(
                email=normalise_email(email),
                name=name or email.split("@")[0],
                password_hash=hash_password(password),
                role=role,
                agency_id=None if platform_admin else agency_id,
                badge=badge,
                must_change_password=True,
                notify_email=False,
                created_at=now,
            )
            session.add(user)
            await session.flush()
            await audit.record(p.db, session, now, actor, "user.created", subject_type="user", subject_id=user.id,
                               detail={"role": role, "agency_id": user.agency_id})
    except IntegrityError as exc:
        raise Conflict("an account with this email already exists") from exc
    return user.id, password


async def set_suspended(p: Platform, actor: Actor, agency_id: str | None, suspended: bool, reason: str | None = None) -> int:
    """Suspend or resume one agency, or every agency when ``agency_id`` is None. Returns how many changed."""
    now = p.now()
    async with p.db.transaction() as session:
        stmt = update(Agency).values(suspended=suspended, suspended_reason=reason if suspended else None)
        if agency_id is not None:
            if await session.get(Agency, agency_id) is None:
                raise NotFound(f"no agency {agency_id}")
            stmt = stmt.where(Agency.id == agency_id)
        result = await session.execute(stmt)
        await audit.record(p.db, session, now, actor, "agency.suspended" if suspended else "agency.resumed",
                           subject_type="agency", subject_id=agency_id or "*", detail={"reason": reason})
    return result.rowcount or 0


async def get_agency(p: Platform, agency_id: str) -> Agency:
    async with p.db.sessions() as session:
        agency = await session.get(Agency, agency_id)
    if agency is None:
        raise NotFound(f"no agency {agency_id}")
    return agency


def require(principal: Principal, *roles: str) -> None:
    if principal.role not in roles:
        raise Forbidden(f"this needs the role {' or '.join(roles)}; you are {principal.role}")

