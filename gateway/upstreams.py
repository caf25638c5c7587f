"""One gRPC channel per upstream service, opened at start-up, and the stubs over them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import grpc
from cashback.identity.v1 import identity_pb2_grpc
from cashback.ledger.v1 import ledger_pb2_grpc
from cashback.redemption.v1 import redemption_pb2_grpc
from cashback.tracking.v1 import tracking_pb2, tracking_pb2_grpc
from fastapi import Request
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.config import Settings
from services.common.batching import Batcher
from services.common.grpc_client import failure_as_error, open_channel

MAX_POSTBACK_BATCH_BYTES = 2 * 1024 * 1024
PostbackBatcher = Batcher[tracking_pb2.IngestPostbackRequest, tracking_pb2.IngestPostbackResponse]


@dataclass
class Upstreams:
    channels: dict[str, grpc.aio.Channel]
    identity: identity_pb2_grpc.IdentityServiceStub
    tracking: tracking_pb2_grpc.TrackingServiceStub
    ledger: ledger_pb2_grpc.LedgerServiceStub
    redemption: redemption_pb2_grpc.RedemptionServiceStub
    timeout: float
    postback_batch_size: int
    postback_batches_in_flight: int
    _postbacks: PostbackBatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Bounded in bytes too, well under gRPC's 4 MiB message limit: big refused bodies arriving together
        # never make a batch fail for the good postbacks in it.
        self._postbacks = Batcher(self._ingest_postbacks, name="postbacks", max_size=self.postback_batch_size,
                                  max_in_flight=self.postback_batches_in_flight,
                                  weight=lambda request: request.ByteSize(), max_weight=MAX_POSTBACK_BATCH_BYTES)

    async def ingest_postback(self, request: tracking_pb2.IngestPostbackRequest
                              ) -> tracking_pb2.IngestPostbackResponse:
        """Tracking's IngestPostback, with the postbacks arriving meanwhile: those that come while
        calls are in flight go together in one IngestPostbacks call (services/common/batching.py),
        so a burst costs a few round trips, not one each. Each gets its own answer or error, as
        from IngestPostback; a failure of the whole call reaches each of them. The calls carry
        the request id of the first postback of the batch."""
        return await self._postbacks.submit(request)

    async def _ingest_postbacks(self, requests: list[tracking_pb2.IngestPostbackRequest]
                                ) -> list[tracking_pb2.IngestPostbackResponse | grpc.aio.AioRpcError]:
        reply = await self.tracking.IngestPostbacks(tracking_pb2.IngestPostbacksRequest(postbacks=requests),
                                                    timeout=self.timeout)
        return [r.response if r.WhichOneof("result") == "response"
                else failure_as_error(r.failure.code, r.failure.message, r.failure.reason, r.failure.metadata,
                                      "cashback.tracking")
                for r in reply.results]

    @classmethod
    def open(cls, settings: Settings) -> Upstreams:
        channels = {
            name: open_channel(address, default_timeout=settings.rpc_deadline_seconds, caller="gateway")
            for name, address in (("identity", settings.identity_address), ("tracking", settings.tracking_address),
                                  ("ledger", settings.ledger_address), ("redemption", settings.redemption_address))
        }
        return cls(channels=channels,
                   identity=identity_pb2_grpc.IdentityServiceStub(channels["identity"]),
                   tracking=tracking_pb2_grpc.TrackingServiceStub(channels["tracking"]),
                   ledger=ledger_pb2_grpc.LedgerServiceStub(channels["ledger"]),
                   redemption=redemption_pb2_grpc.RedemptionServiceStub(channels["redemption"]),
                   timeout=settings.rpc_deadline_seconds, postback_batch_size=settings.postback_batch_size,
                   postback_batches_in_flight=settings.postback_batches_in_flight)

    async def not_serving(self, timeout: float) -> list[str]:
        """The upstreams whose standard health check does not answer SERVING."""
        async def check(name: str, channel: grpc.aio.Channel) -> str | None:
            try:
                reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                                        timeout=timeout)
            except grpc.aio.AioRpcError:
                return name
            return None if reply.status == health_pb2.HealthCheckResponse.SERVING else name

        results = await asyncio.gather(*(check(n, c) for n, c in self.channels.items()))
        return sorted(n for n in results if n)

    async def close(self) -> None:
        for channel in self.channels.values():
            await channel.close()


async def upstreams(request: Request) -> Upstreams:  # async: no thread-pool hop per request
    return request.app.state.upstreams
