"""Redis, when there is one. Redis is the fast path (postback dedup, rate limits, HTTP idempotency
keys); the databases' unique constraints are the truth underneath, so with Redis down the system
is slower, never wrong."""

from __future__ import annotations

import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger("cashback.redis")
LOCAL_REDIS = "redis://127.0.0.1:6379/0"


class RedisRequired(RuntimeError):
    pass


async def connect_redis(url: str) -> Redis | None:
    """`url` set: Redis must answer (raise otherwise). `url` empty: use a local Redis if one
    answers, else go on without, saying so. `url` = "off": run without Redis on purpose."""
    if url == "off":
        log.warning("Redis switched off (REDIS_URL=off): using the database-backed idempotency path only")
        return None
    target = url or LOCAL_REDIS
    client: Redis = Redis.from_url(target, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        if url:
            raise RedisRequired(f"REDIS_URL={url} does not answer: {exc}") from exc
        log.warning("no Redis at %s: using the database-backed idempotency path only", target)
        return None
    log.info("using Redis at %s", target.split("@")[-1])
    return client


class WindowCounters:
    """Fixed-window counters for rate limits: `hit` adds one to `key` and answers the count so far
    in its window, or None when Redis is absent or failing (the caller then counts elsewhere).
    Put the window in the key (e.g. its start); the TTL only tidies up."""

    def __init__(self, redis: Redis | None, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, key: str, ttl_seconds: int) -> int | None:
        if self._redis is None:
            return None
        name = self._prefix + key
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(name, 0, nx=True, ex=max(1, ttl_seconds))
                pipe.incr(name)
                _, count = await pipe.execute()
            return int(count)
        except RedisError as exc:
            log.warning("redis counter failed (%s): falling back to the database", exc)
            return None

    async def give_back(self, keys: list[str]) -> None:
        """Undoes `hit`s whose effect did not happen (a later check refused, the write failed).
        A key that has meanwhile expired is left alone (no negative counts without a TTL)."""
        if self._redis is None or not keys:
            return
        try:
            await self._redis.eval(_GIVE_BACK, len(keys), *(self._prefix + key for key in keys))
        except RedisError as exc:
            log.warning("redis give-back failed (%s): counts stay high until their window ends", exc)


_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then redis.call('DECR', key) end
end
return 0
"""
