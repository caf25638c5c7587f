"""Per-user and per-address rate limits (fixed one-minute windows in Redis, shared by every
gateway replica). Without Redis the limits are off; the services keep their own limits."""

from __future__ import annotations

import ipaddress
import logging
import time

from fastapi import Request
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.errors import ApiError

log = logging.getLogger("cashback.gateway.limits")
WINDOW_SECONDS = 60


class RateLimiter:
    def __init__(self, redis: Redis | None, *, per_user: int, per_address: int) -> None:
        self._redis = redis
        self._per_user = per_user
        self._per_address = per_address

    async def _hit(self, bucket: str, limit: int) -> None:
        if self._redis is None or limit <= 0:
            return
        now = time.time()
        window = int(now // WINDOW_SECONDS)
        key = f"gw:rl:{bucket}:{window}"
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(key)
                pipe.expire(key, WINDOW_SECONDS * 2)
                count, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("rate limit check skipped, Redis failed: %s", exc)
            return
        if int(count) > limit:
            retry_after = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
            raise ApiError(429, "RATE_LIMITED", f"Too many requests; retry in {retry_after} s.",
                           headers={"Retry-After": str(retry_after)})

    async def check_user(self, user_id: str) -> None:
        await self._hit(f"user:{user_id}", self._per_user)

    async def check_address(self, address: str) -> None:
        await self._hit(f"addr:{address}", self._per_address)


def client_address(request: Request) -> str:
    """The client's address: the connection's peer, unless the peer is a proxy named in
    GATEWAY_TRUSTED_PROXIES; then X-Forwarded-For is read from the right, past trusted proxies,
    to the first address a trusted proxy vouches for. Anything else in the header is the client's
    own say and is ignored."""
    address = request.client.host if request.client else ""
    trusted = request.app.state.settings.trusted_proxies
    if not trusted or not _within(address, trusted):
        return address
    hops = [hop.strip() for value in request.headers.getlist("x-forwarded-for") for hop in value.split(",")]
    for hop in reversed(hops):
        if not _is_ip(hop):
            break
        address = hop
        if not _within(hop, trusted):
            break
    return address


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _within(address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


async def limit_by_address(request: Request) -> None:
    """A router dependency: every API route counts against the caller's address."""
    await request.app.state.limits.check_address(client_address(request))
