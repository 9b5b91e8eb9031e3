"""Footage requests, the owner's inbox, declines. (Uploads through links are in routes_vault.)"""

from __future__ import annotations

from ..schemas import (
    DeclineIn,
    Inbox,
    PreviewOut,
    RequestCreate,
    RequestCreated,
    RequestList,
    RequestListQuery,
    RequestOut,
    RequestPreview,
    RequestStatus,
    TransparencyReport,
)
from ..services import requests, transparency
from .api import PUBLIC, Api, Call

INVESTIGATORS = {"investigator", "supervisor"}
AGENCY_USERS = {"investigator", "supervisor", "auditor", "admin"}


def request_routes(api: Api) -> None:
    @api.route("POST", "/api/v1/requests", summary="Ask owners in a fence for footage of a time window",
               roles=INVESTIGATORS, body=RequestCreate, response=RequestCreated, status=201, tags=("requests",))
    async def create_request(call: Call) -> RequestCreated:
        request = await requests.create_request(call.platform, call.user, call.body)
        return RequestCreated(id=request.id, status=request.status, matched=request.matched)  # type: ignore[arg-type]

    @api.route("POST", "/api/v1/requests/preview", summary="How many cameras a request would ask, before sending",
               roles=INVESTIGATORS, body=RequestPreview, response=PreviewOut, tags=("requests",))
    async def preview_request(call: Call) -> PreviewOut:
        b = call.body
        return PreviewOut.model_validate(await requests.preview(call.platform, call.user, b.area, b.window.start, b.window.end))

    @api.route("GET", "/api/v1/requests", summary="Your agency's requests, newest first", roles=AGENCY_USERS,
               query=RequestListQuery, response=RequestList, tags=("requests",), scope="requests:read")
    async def list_requests(call: Call) -> RequestList:
        q = call.query
        found = await requests.list_requests(call.platform, call.user, q.status, q.limit, q.offset)
        return RequestList.model_validate({"requests": found})

    @api.route("GET", "/api/v1/requests/{request_id}", summary="A request with the status of every item",
               roles=AGENCY_USERS, response=RequestOut, errors=(404,), tags=("requests",), scope="requests:read")
    async def get_request(call: Call) -> RequestOut:
        return RequestOut.model_validate(await requests.get_request(call.platform, call.user, call.param("request_id")))

    @api.route("POST", "/api/v1/requests/{request_id}/approve", summary="Approve: owners are asked from now on",
               roles={"supervisor"}, response=RequestStatus, errors=(404,), tags=("requests",))
    async def approve_request(call: Call) -> RequestStatus:
        request = await requests.approve(call.platform, call.user, call.param("request_id"))
        return RequestStatus(id=request.id, status=request.status)

    @api.route("POST", "/api/v1/requests/{request_id}/close", summary="Close: open items are cancelled, links die",
               roles=INVESTIGATORS, response=RequestStatus, errors=(404,), tags=("requests",))
    async def close_request(call: Call) -> RequestStatus:
        request = await requests.close(call.platform, call.user, call.param("request_id"))
        return RequestStatus(id=request.id, status=request.status)

    @api.route("GET", "/api/v1/inbox", summary="Requests for your cameras", roles={"owner"}, response=Inbox,
               tags=("requests",))
    async def inbox(call: Call) -> Inbox:
        return Inbox.model_validate({"items": await requests.inbox(call.platform, call.user)})

    @api.route("POST", "/api/v1/items/{item_id}/decline", summary="Decline a request for one of your cameras",
               roles={"owner"}, body=DeclineIn, body_required=False, response=RequestStatus, errors=(404, 410),
               tags=("requests",))
    async def decline_item(call: Call) -> RequestStatus:
        result = await requests.decline(call.platform, call.user, item_id=call.param("item_id"), reason=call.body.reason)
        return RequestStatus.model_validate(result)

    @api.route("POST", "/api/v1/uploads/{token}/decline", summary="Decline through the item's private link",
               roles=PUBLIC, body=DeclineIn, body_required=False, response=RequestStatus, errors=(404, 410),
               tags=("requests",))
    async def decline_by_link(call: Call) -> RequestStatus:
        from .routes_vault import link_guard

        async with link_guard(call):
            result = await requests.decline(call.platform, None, token=call.param("token"), reason=call.body.reason)
        return RequestStatus.model_validate(result)


def transparency_routes(api: Api) -> None:
    @api.route("GET", "/api/v1/transparency", summary="Public monthly counts per agency, and owners' revocations",
               roles=PUBLIC, response=TransparencyReport, tags=("oversight",))
    async def transparency_report(call: Call) -> TransparencyReport:
        return TransparencyReport.model_validate(await transparency.report(call.platform))
