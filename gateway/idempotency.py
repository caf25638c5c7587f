"""HTTP idempotency keys on the money routes: the first response is kept in Redis for 24 h; a
replay gets it back, the same key with another body is 422, a request still in flight with the
same key is 409. The services are idempotent by the same key underneath, so without Redis (or
when it fails) requests pass through and the service's own dedup answers.

A response that carries a bearer secret (a certificate's code) is not kept: the store records that
the key is done and a replay asks the service again, which shows the secret only to whoever holds
it now (a certificate handed over meanwhile replays without its code)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from fastapi.responses import JSONResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import problem_response, rpc_error_response

log = logging.getLogger("cashback.gateway.idempotency")

IN_FLIGHT_SECONDS = 120
REPLAYED_HEADER = "Idempotent-Replayed"


def fingerprint(method: str, path: str, body: Any) -> str:
    raw = json.dumps({"m": method, "p": path, "b": body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


class IdempotencyStore:
    def __init__(self, redis: Redis | None, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds

    async def run(self, scope: str, key: str, print_: str, call: Callable[[], Awaitable[JSONResponse]], *,
                  keep_body: bool = True) -> JSONResponse:
        """`keep_body=False`: the response holds a secret; a replay calls again instead of reading it."""
        redis_key = "gw:idem:" + hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()
        if self._redis is None:
            return await self._call(call)
        marker = json.dumps({"state": "in_flight", "fingerprint": print_})
        try:
            first = await self._redis.set(redis_key, marker, nx=True, ex=IN_FLIGHT_SECONDS)
            stored = None if first else await self._redis.get(redis_key)
        except (RedisError, OSError) as exc:
            log.warning("idempotency store unavailable (%s); the service dedups by key", exc)
            return await self._call(call)
        if not first:
            if stored is None:  # expired between SET and GET: treat as in flight, the client retries
                return _in_flight()
            record = json.loads(stored)
            if record["fingerprint"] != print_:
                return problem_response(422, "IDEMPOTENCY_KEY_REUSED",
                                        "This Idempotency-Key was used with another request body.")
            if record["state"] == "in_flight":
                return _in_flight()
            if "body" not in record:
                replayed = await self._call(call)
                if replayed.status_code < 300:  # the service's own replay (200): answered as the first was
                    replayed.status_code = record["status"]
                replayed.headers[REPLAYED_HEADER] = "true"
                return replayed
            return JSONResponse(record["body"], status_code=record["status"],
                                media_type=record["media_type"], headers={REPLAYED_HEADER: "true"})
        response = await self._call(call)
        try:
            if response.status_code < 500 and response.status_code not in (409, 429):
                record = {"state": "done", "fingerprint": print_, "status": response.status_code,
                          "media_type": response.media_type}
                if keep_body or response.status_code >= 400:
                    record["body"] = json.loads(bytes(response.body))
                await self._redis.set(redis_key, json.dumps(record), ex=self._ttl)
            else:
                await self._redis.delete(redis_key)
        except (RedisError, OSError) as exc:
            log.warning("could not record an idempotent response (%s); the service dedups by key", exc)
        return response

    @staticmethod
    async def _call(call: Callable[[], Awaitable[JSONResponse]]) -> JSONResponse:
        try:
            return await call()
        except grpc.aio.AioRpcError as exc:
            return rpc_error_response(exc)


def _in_flight() -> JSONResponse:
    return problem_response(409, "IDEMPOTENCY_REQUEST_IN_FLIGHT",
                            "A request with this Idempotency-Key is still being processed; retry shortly.",
                            headers={"Retry-After": "1"})
