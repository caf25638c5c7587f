"""Partners' and networks' postbacks, passed to tracking exactly as received: tracking
authenticates each network (signature, shared secret) and stores every postback."""

from __future__ import annotations

import json
from typing import Annotated

from cashback.tracking.v1 import tracking_pb2
from fastapi import APIRouter, Path, Request, Response

from gateway.errors import responses
from gateway.limits import client_address
from gateway.routes.common import Rpc
from gateway.schemas import PostbackAck, short
from services.common.logs import request_id_var

router = APIRouter(prefix="/v1/postbacks", tags=["postbacks"], responses=responses(400, 401, 404, 422, 503, 504))

Network = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$",
                              description="The network's slug.", examples=["direct", "admitad"])]
_BODY_DOC = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": {"type": "object"}, "example": {
        "order_id": "A-1001", "click_id": "c_2b9…", "status": "approved", "amount_kopecks": 459900,
        "currency": "RUB", "channel": "web", "customer_type": "individual", "event_time": "2026-01-15T10:00:00Z"}},
    "application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}},
}}, "parameters": [{"name": "X-Cashback-Signature", "in": "header", "required": False,
                    "schema": {"type": "string"}, "description": "`t=<unix seconds>,v1=<hex HMAC-SHA256>` (direct)"}]}


_OUTCOMES = {v.number: short(tracking_pb2.PostbackOutcome.DESCRIPTOR, v.number, "POSTBACK_OUTCOME_")
             for v in tracking_pb2.PostbackOutcome.DESCRIPTOR.values}


async def _ingest(network: str, request: Request, rpc: Rpc) -> Response:
    """The busiest route: the answer is a `PostbackAck` serialised by hand (a Response skips
    FastAPI's validation and serialisation of the return value; the schema stays documented)."""
    body = await request.body()
    scope = request.scope
    r = await rpc.ingest_postback(tracking_pb2.IngestPostbackRequest(
        network=network, http_method=scope["method"], query_string=scope.get("query_string", b"").decode(),
        body=body, headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
        remote_address=client_address(request), request_id=request_id_var.get(),
    ))
    ack = {"status": "ok", "outcome": _OUTCOMES.get(r.outcome), "postback_id": r.postback_id,
           "purchase_id": r.purchase_id or None}
    return Response(json.dumps(ack, separators=(",", ":")).encode(), media_type="application/json")


@router.get("/{network}", response_model=PostbackAck, summary="A network reports a purchase (query parameters)")
async def postback_get(network: Network, request: Request, rpc: Rpc) -> Response:
    return await _ingest(network, request, rpc)


@router.post("/{network}", response_model=PostbackAck, openapi_extra=_BODY_DOC,
             summary="A partner or network reports a purchase (signed JSON or form)")
async def postback_post(network: Network, request: Request, rpc: Rpc) -> Response:
    return await _ingest(network, request, rpc)
