"""Messages to owners, sent by jobs through the channel plugins the owner chose (email, webhook, or others)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from .db.models import Agency, Camera, FootageRequest, Job, RequestItem, User
from .errors import NotFound
from .hooktypes import DeliveryResult, OwnerNotification
from .jobs import PermanentFailure, RetryLater, job_handler
from .platform import Platform
from .services.requests import FETCHABLE_KINDS, item_status, item_token, page_url, upload_url


def channels_of(owner: User) -> dict[str, Any]:
    return {"email": owner.notify_email, "sms": owner.notify_sms, "webhook_url": owner.webhook_url,
            "webhook_secret": owner.webhook_secret}


async def deliver(p: Platform, notification: OwnerNotification) -> dict[str, Any]:
    """Send through every chosen channel. One delivered channel is enough; if none delivered and any may work
    later, the job is retried (at least once, with the job's idempotency key on every attempt)."""
    results: list[DeliveryResult] = await p.plugins.notify_owner(notification)
    summary = {"channels": [{"channel": r.channel, "delivered": r.delivered, "detail": r.detail} for r in results]}
    if not results:
        summary["note"] = "the owner chose no channel this platform has; the request waits in their inbox"
        return summary
    if any(r.delivered for r in results):
        return summary
    if any(r.retryable for r in results):
        raise RetryLater("; ".join(f"{r.channel}: {r.detail}" for r in results))
    raise PermanentFailure("; ".join(f"{r.channel}: {r.detail}" for r in results))


def _window(request: FootageRequest) -> str:
    fmt = "%Y-%m-%d %H:%M UTC"
    return f"{request.window_start.strftime(fmt)} to {request.window_end.strftime(fmt)}"


@job_handler("notify.request")
async def notify_request(p: Platform, job: Job) -> dict[str, Any]:
    now = p.now()
    async with p.db.sessions() as session:
        request = await session.get(FootageRequest, job.payload["request_id"])
        owner = await session.get(User, job.payload["owner_id"])
        if request is None or owner is None:
            raise PermanentFailure("the request or the owner no longer exists")
        agency = await session.get(Agency, request.agency_id)
        rows = (
            await session.execute(
                select(RequestItem, Camera.label, Camera.grant_direct_fetch, Camera.connection_kind)
                .join(Camera, Camera.id == RequestItem.camera_id)
                .where(RequestItem.request_id == request.id, RequestItem.owner_id == owner.id)
                .order_by(Camera.label)
            )
        ).all()
    open_items = [(item, label, direct and kind in FETCHABLE_KINDS) for item, label, direct, kind in rows
                  if item_status(item, now) == "notified"]
    if not open_items:
        return {"note": "nothing left to ask: every item was cancelled, declined or expired before sending"}
    agency_name = agency.name if agency else "the police"
    lines = [
        f"Hello {owner.name},",
        "",
        f"{agency_name} is asking owners of cameras near an incident whether their cameras recorded anything.",
        f"Case {request.case_number}: {request.description}",
        f"Time asked about: {_window(request)}",
        "",
        "Sharing is your choice. Each link below works only for that camera and this request, and stops working "
        "if you decline, revoke your permission, or the request closes.",
        "",
    ]
    links = []
    for item, label, automatic in open_items:
        token = item_token(p, item.id, item.token_salt)
        lines.append(f"Camera: {label}")
        if automatic:
            lines.append("  You allowed direct fetch for this camera, so ConsentCam will pull exactly this time window "
                         "from it; decline below, or revoke direct fetch, if you do not want that.")
        lines += [
            f"  Send a clip in your browser: {page_url(p, token)}",
            f"  Or upload with any HTTP client: PUT {upload_url(p, token)}",
            f"  Decline: {page_url(p, token)}?action=decline",
            f"  Link valid until {item.token_expires_at.strftime('%Y-%m-%d %H:%M UTC')}",
            "",
        ]
        links.append({"item_id": item.id, "camera_label": label, "upload_url": upload_url(p, token),
                      "page_url": page_url(p, token)})
    lines.append("You can also see and answer this request in your ConsentCam inbox.")
    notification = OwnerNotification(
        owner_id=owner.id, email=owner.email, name=owner.name, phone=owner.phone, channels=channels_of(owner),
        subject=f"{agency_name} asks about footage: case {request.case_number}", text="\n".join(lines),
        kind="request",
        data={"request_id": request.id, "case_number": request.case_number, "description": request.description,
              "window": {"start": request.window_start.isoformat(), "end": request.window_end.isoformat()},
              "items": links},
        idempotency_key=job.idempotency_key or job.id,
    )
    result = await deliver(p, notification)
    result["items"] = [i["item_id"] for i in links]
    return result


@job_handler("notify.receipt")
async def notify_receipt(p: Platform, job: Job) -> dict[str, Any]:
    """The uploader's receipt: what the vault holds, by hash, so they can check it themselves."""
    async with p.db.sessions() as session:
        owner = await session.get(User, job.payload["owner_id"])
    if owner is None:
        raise NotFound("owner gone")
    data = job.payload
    text = "\n".join([
        f"Hello {owner.name},",
        "",
        f"Thank you. The clip you sent for case {data['case_number']} is stored unchanged in the evidence vault.",
        f"  SHA-256: {data['sha256']}",
        f"  Size: {data['size']} bytes",
        f"  Received: {data['received_at']}",
        "",
        "You can compare this fingerprint with your own copy (for example: sha256sum FILE).",
    ])
    notification = OwnerNotification(
        owner_id=owner.id, email=owner.email, name=owner.name, phone=owner.phone, channels=channels_of(owner),
        subject=f"Receipt for your clip, case {data['case_number']}", text=text, kind="receipt", data=data,
        idempotency_key=job.idempotency_key or job.id,
    )
    return await deliver(p, notification)
