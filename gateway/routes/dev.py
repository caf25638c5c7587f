"""Dev only (`CASHBACK_ENV=dev`; the router is not mounted otherwise): the sink of sent SMS and
e-mails, read from identity; and a bare gateway→gRPC round trip for benchmarks."""

from __future__ import annotations

from typing import Annotated

from cashback.identity.v1 import identity_pb2
from fastapi import APIRouter, Query
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.errors import responses
from gateway.routes.common import Rpc
from gateway.schemas import DevMessage, DevOutbox, short, ts

router = APIRouter(prefix="/dev", tags=["dev"], responses=responses(400, 503, 504))


@router.get("/outbox", response_model=DevOutbox, summary="SMS and e-mails sent to a phone or address")
async def dev_outbox(rpc: Rpc, to: Annotated[str, Query(max_length=254, examples=["+79161234567"])] = "") -> DevOutbox:
    r = await rpc.identity.ListDevOutbox(identity_pb2.ListDevOutboxRequest(to=to), timeout=rpc.timeout)
    return DevOutbox(messages=[
        DevMessage(channel=short(identity_pb2.Channel.DESCRIPTOR, m.channel, "CHANNEL_"), to=m.to, text=m.text,
                   create_time=ts(m, "create_time"))
        for m in r.messages])


@router.get("/echo", summary="A bare gateway→gRPC round trip (tracking's health check), for benchmarks")
async def dev_echo(rpc: Rpc) -> dict[str, str]:
    await health_pb2_grpc.HealthStub(rpc.channels["tracking"]).Check(health_pb2.HealthCheckRequest(),
                                                                     timeout=rpc.timeout)
    return {}
