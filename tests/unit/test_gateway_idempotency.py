"""The gateway's Idempotency-Key store without Redis, or with Redis failing: requests pass through
and the service's own dedup by the same key answers (a replay is then the service's 200)."""

from __future__ import annotations

from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.idempotency import REPLAYED_HEADER, IdempotencyStore, fingerprint


class BrokenRedis:
    async def set(self, *args, **kwargs):
        raise RedisConnectionError("Redis is down")

    async def get(self, *args, **kwargs):
        raise RedisConnectionError("Redis is down")

    async def delete(self, *args, **kwargs):
        raise RedisConnectionError("Redis is down")


async def _run_twice(store: IdempotencyStore) -> tuple[list[int], list[JSONResponse]]:
    calls: list[int] = []

    async def call() -> JSONResponse:
        calls.append(1)
        return JSONResponse({"certificate_id": "c-1"}, status_code=201 if len(calls) == 1 else 200)

    print_ = fingerprint("POST", "/v1/me/certificates", {"nominal_kopecks": 10_000})
    answers = [await store.run("user:u-1", "key-1", print_, call) for _ in range(2)]
    return calls, answers


async def test_without_redis_every_request_reaches_the_service_which_dedups():
    calls, answers = await _run_twice(IdempotencyStore(None, 3600))
    assert len(calls) == 2 and [a.status_code for a in answers] == [201, 200]
    assert all(REPLAYED_HEADER.lower() not in a.headers for a in answers)


async def test_with_redis_failing_requests_pass_through_rather_than_fail():
    calls, answers = await _run_twice(IdempotencyStore(BrokenRedis(), 3600))  # type: ignore[arg-type]
    assert len(calls) == 2 and [a.status_code for a in answers] == [201, 200]


def test_the_fingerprint_is_of_method_path_and_body_not_of_key_order():
    assert fingerprint("POST", "/p", {"a": 1, "b": 2}) == fingerprint("POST", "/p", {"b": 2, "a": 1})
    assert fingerprint("POST", "/p", {"a": 1}) != fingerprint("POST", "/p", {"a": 2})
    assert fingerprint("POST", "/p", {"a": 1}) != fingerprint("POST", "/q", {"a": 1})
