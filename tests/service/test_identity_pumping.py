"""The SMS-pumping defence under a scripted attack: 10,000 code requests against 1,000 sequential
numbers from 50 client addresses, over real gRPC (many concurrent calls on one channel), with the
service's limits, the
SMS budget and the per-address limit configured small (100 SMS a minute, 6 codes an hour per
address) so that both bind within the run. Redis is real on the PostgreSQL backend and off in the embedded run
(there the database-backed counters must hold on their own). SMS are counted where they land: a
local HTTP SMS provider."""

from __future__ import annotations

import asyncio
import collections
import time
from datetime import timedelta

import grpc
from cashback.identity.v1 import identity_pb2 as pb

from services.common.clock import FrozenClock
from services.common.grpc_client import error_info
from services.identity.config import Settings
from tests.service.test_identity import PRODUCTION, FakeSmsProvider, _client

NUMBERS = [f"+7982{n:07d}" for n in range(2_000_000, 2_001_000)]
ADDRESSES = [f"198.51.100.{n}" for n in range(1, 51)]
ROUNDS = 10  # every number is asked for once per round: 10 x 1,000 = 10,000 requests
ROUND_SECONDS = 20  # the script's pace: the 10 rounds span 200 s, i.e. 4 one-minute SMS windows
IN_FLIGHT = 32
LIMITS = {"sms_per_minute": 100, "address_codes_per_hour": 6}


async def test_ten_thousand_code_requests_send_no_more_sms_than_the_limits_allow(start_service, redis_url):
    s = Settings(database_url="", **LIMITS)
    provider = FakeSmsProvider()
    clock = FrozenClock()  # 2026-01-01 00:00:00: the whole attack falls within one hour window
    try:
        c = await _client(start_service, clock, **{**PRODUCTION, "sms_url": provider.url}, **LIMITS)
        per_window: collections.Counter[int] = collections.Counter()
        per_address: collections.Counter[str] = collections.Counter()
        per_phone: collections.Counter[str] = collections.Counter()
        refusals: collections.Counter[str] = collections.Counter()
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def ask(phone: str, address: str) -> bool:
            async with gate:
                try:
                    await c.stub.StartPhoneChallenge(pb.StartPhoneChallengeRequest(phone=phone, client_address=address))
                except grpc.aio.AioRpcError as err:
                    info = error_info(err)
                    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (err.code(), err.details())
                    assert int(info.metadata["retry_after_seconds"]) > 0
                    refusals[info.reason if info.reason != "RATE_LIMITED" else info.metadata["limit"]] += 1
                    return False
                per_address[address] += 1
                per_phone[phone] += 1
                return True

        started = time.monotonic()
        for round_ in range(ROUNDS):
            # Addresses rotate over the numbers from round to round, as a script spreading its traffic would.
            calls = [(phone, ADDRESSES[(n + 7 * round_) % len(ADDRESSES)]) for n, phone in enumerate(NUMBERS)]
            outcomes = await asyncio.gather(*(ask(p, a) for p, a in calls))
            per_window[int(clock.now().timestamp()) // 60] += sum(outcomes)
            clock.advance(timedelta(seconds=ROUND_SECONDS))
        elapsed = time.monotonic() - started

        sent = sum(per_window.values())
        windows = len({(r * ROUND_SECONDS) // 60 for r in range(ROUNDS)})
        allowed = min(s.sms_per_minute * windows, s.address_codes_per_hour * len(ADDRESSES),
                      s.phone_codes_per_hour * len(NUMBERS))
        print(f"\n{ROUNDS * len(NUMBERS)} code requests, {len(NUMBERS)} numbers, {len(ADDRESSES)} addresses "
              f"(Redis {'on' if redis_url != 'off' else 'off'}): {sent} SMS sent, at most {allowed} allowed "
              f"(SMS per minute by window {sorted(per_window.items())}); refusals {dict(refusals)}; "
              f"{elapsed:.1f} s")

        assert 0 < sent <= allowed
        assert all(count <= s.sms_per_minute for count in per_window.values())
        assert max(per_address.values()) <= s.address_codes_per_hour
        assert max(per_phone.values()) <= s.phone_codes_per_hour
        # The budget is used, not merely refused: the minute budget is spent until the addresses' run out.
        assert sent == allowed
        for _ in range(3000):  # bounded polling: the relay hands the codes to the provider
            if len(provider.received) >= sent:
                break
            await asyncio.sleep(0.02)
        assert len(provider.received) == sent
        assert len({key for key, _ in provider.received}) == sent
    finally:
        provider.close()
