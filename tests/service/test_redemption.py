"""Redemption over real gRPC, in front of the real ledger and identity, with the fake operator
billing as a real local HTTP server."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import httpx
import pytest
from cashback.identity.v1 import identity_pb2, identity_pb2_grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from cashback.redemption.v1 import redemption_pb2 as pb
from cashback.redemption.v1 import redemption_pb2_grpc

from fakes.billing import running_billing
from services.common.db import Database
from services.common.grpc_client import error_info, open_channel
from services.redemption import domain
from services.redemption.models import Certificate, MobilePayment
from services.redemption.repository import RedemptionRepository

FUNDING = ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING)
OPERATOR_PREFIX = "+7987"  # MTS numbers: operator subscribers
OTHER_PREFIX = "+7926"  # MegaFon


@dataclass
class Stack:
    redemption: redemption_pb2_grpc.RedemptionServiceStub
    ledger: ledger_pb2_grpc.LedgerServiceStub
    identity: identity_pb2_grpc.IdentityServiceStub
    billing_url: str
    start_redemption: Callable[..., Awaitable[object]]
    redemption_database_url: str
    last_key: str = ""

    async def user(self, *, operator: bool = True, funded: int = 0) -> identity_pb2.User:
        phone = f"{OPERATOR_PREFIX if operator else OTHER_PREFIX}{random.randrange(10**7):07d}"
        challenge = await self.identity.StartPhoneChallenge(identity_pb2.StartPhoneChallengeRequest(phone=phone))
        code = await poll(lambda: self._code_sent_to(phone))
        verified = await self.identity.VerifyPhoneChallenge(
            identity_pb2.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code))
        assert verified.user.is_operator_subscriber == operator
        if funded:
            await self.fund(verified.user.user_id, funded)
        return verified.user

    async def _code_sent_to(self, phone: str) -> str | None:
        messages = (await self.identity.ListDevOutbox(identity_pb2.ListDevOutboxRequest(to=phone))).messages
        for message in messages:
            found = re.search(r"\b(\d{6})\b", message.text)
            if found:
                return found.group(1)
        return None

    async def fund(self, user_id: str, amount: int) -> str:
        transfer_id = f"cashback:{uuid.uuid4()}"
        await self.ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
            transfer_id=transfer_id, debit_account=FUNDING, credit_account=ledger_pb2.AccountRef(user_id=user_id),
            amount_kopecks=amount, kind=ledger_pb2.TRANSFER_KIND_CASHBACK)))
        return transfer_id

    async def balance(self, user_id: str) -> ledger_pb2.Balance:
        return (await self.ledger.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id))).balance

    async def billing(self, mode: str, delay: float = 5.0) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.billing_url}/control", json={"mode": mode, "delay_seconds": delay})
            response.raise_for_status()

    async def port(self, phone: str, *, subscriber: bool) -> None:
        async with httpx.AsyncClient() as client:
            response = await client.post(f"{self.billing_url}/control/subscribers",
                                         json={"phone": phone, "subscriber": subscriber})
            response.raise_for_status()

    async def credited(self, phone: str) -> int:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"{self.billing_url}/v1/accounts/{phone}")).json()["credited_kopecks"]

    async def pay(self, user_id: str, amount: int, key: str | None = None) -> pb.CreateMobilePaymentResponse:
        return await self.redemption.CreateMobilePayment(pb.CreateMobilePaymentRequest(
            user_id=user_id, idempotency_key=key or str(uuid.uuid4()), amount_kopecks=amount))

    async def payment(self, user_id: str, payment_id: str) -> pb.MobilePayment:
        return (await self.redemption.GetMobilePayment(
            pb.GetMobilePaymentRequest(user_id=user_id, payment_id=payment_id))).payment

    async def order(self, user_id: str, nominal: int, key: str | None = None) -> pb.OrderCertificateResponse:
        self.last_key = key or str(uuid.uuid4())
        return await self.redemption.OrderCertificate(pb.OrderCertificateRequest(
            user_id=user_id, idempotency_key=self.last_key, nominal_kopecks=nominal))

    async def held(self, user_id: str) -> list[pb.Certificate]:
        return list((await self.redemption.ListCertificates(pb.ListCertificatesRequest(user_id=user_id))).certificates)

    async def assert_audit_ok(self) -> None:
        audit = await self.ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
        assert audit.ok, audit.violations


async def poll(probe: Callable[[], Awaitable[object]], *, attempts: int = 300, every: float = 0.05) -> object:
    """Bounded polling of a condition (never a timed assertion)."""
    for _ in range(attempts):
        value = await probe()
        if value:
            return value
        await asyncio.sleep(every)
    raise AssertionError("condition not reached")


async def rpc_error(call: Awaitable[object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    info = error_info(caught.value)
    return info.code, info.reason


@pytest.fixture
async def stack(start_service):
    ledger = await start_service("ledger")
    identity = await start_service("identity", address_codes_per_hour=0, phone_codes_per_hour=0,
                                   phone_codes_per_day=0, sms_per_minute=0)
    channels = []

    def channel(address: str) -> grpc.aio.Channel:
        channels.append(open_channel(address))
        return channels[-1]

    async with running_billing() as billing_url:
        async def start_redemption(**overrides: object) -> object:
            settings: dict[str, object] = {
                "identity_address": identity.address, "ledger_address": ledger.address, "billing_url": billing_url,
                "billing_timeout_seconds": 0.3, "reconcile_interval_seconds": 0.05, "claim_lease_seconds": 30.0,
            }
            settings.update(overrides)
            return await start_service("redemption", **settings)

        redemption = await start_redemption()
        yield Stack(redemption_pb2_grpc.RedemptionServiceStub(channel(redemption.address)),
                    ledger_pb2_grpc.LedgerServiceStub(channel(ledger.address)),
                    identity_pb2_grpc.IdentityServiceStub(channel(identity.address)),
                    billing_url, start_redemption, redemption.settings.database_url)
        for ch in channels:
            await ch.close()


# --- mobile payments --------------------------------------------------------------------------

async def test_payment_tops_up_the_phone_once_and_takes_the_points(stack):
    user = await stack.user(funded=50_000)
    first = await stack.pay(user.user_id, 15_000, key="pay-1")
    assert first.payment.status == pb.PAYMENT_STATUS_COMPLETED and not first.already_existed
    assert first.payment.phone == user.phone and first.payment.HasField("complete_time")
    again = await stack.pay(user.user_id, 15_000, key="pay-1")
    assert again.already_existed and again.payment.payment_id == first.payment.payment_id

    balance = await stack.balance(user.user_id)
    assert (balance.posted_kopecks, balance.available_kopecks) == (35_000, 35_000)
    assert await stack.credited(user.phone) == 15_000
    assert await stack.credited(user.phone) == 15_000

    code, reason = await rpc_error(stack.pay(user.user_id, 16_000, key="pay-1"))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")

    async def told() -> bool:
        notes = await stack.identity.ListNotifications(identity_pb2.ListNotificationsRequest(user_id=user.user_id))
        return any(n.template == "mobile_payment_completed" for n in notes.notifications)

    await poll(told)
    await stack.assert_audit_ok()


async def test_billing_refusal_voids_the_hold_and_restores_the_balance(stack):
    user = await stack.user(funded=20_000)
    await stack.billing("refuse")
    response = await stack.pay(user.user_id, 5_000)
    assert response.payment.status == pb.PAYMENT_STATUS_FAILED and response.payment.failure_reason
    balance = await stack.balance(user.user_id)
    assert (balance.posted_kopecks, balance.available_kopecks, balance.pending_debits_kopecks) == (20_000, 20_000, 0)
    assert await stack.credited(user.phone) == 0
    await stack.assert_audit_ok()


async def test_billing_timeout_leaves_the_payment_processing_until_the_reconciler_settles_it_once(stack):
    user = await stack.user(funded=20_000)
    await stack.billing("timeout", delay=0.8)
    response = await stack.pay(user.user_id, 7_000)
    assert response.payment.status == pb.PAYMENT_STATUS_PROCESSING
    assert (await stack.balance(user.user_id)).available_kopecks == 13_000  # held, not lost

    async def settled() -> pb.MobilePayment | None:
        payment = await stack.payment(user.user_id, response.payment.payment_id)
        return payment if payment.status != pb.PAYMENT_STATUS_PROCESSING else None

    payment = await poll(settled)
    assert payment.status == pb.PAYMENT_STATUS_COMPLETED
    assert await stack.credited(user.phone) == 7_000
    balance = await stack.balance(user.user_id)
    assert (balance.posted_kopecks, balance.pending_debits_kopecks) == (13_000, 0)
    await stack.assert_audit_ok()


async def test_billing_that_fails_after_applying_settles_as_completed_once(stack):
    user = await stack.user(funded=20_000)
    await stack.billing("fail_after_apply")
    response = await stack.pay(user.user_id, 4_000)
    assert response.payment.status == pb.PAYMENT_STATUS_PROCESSING

    async def completed() -> bool:
        return (await stack.payment(user.user_id, response.payment.payment_id)).status == pb.PAYMENT_STATUS_COMPLETED

    await poll(completed)
    assert await stack.credited(user.phone) == 4_000
    assert (await stack.balance(user.user_id)).posted_kopecks == 16_000
    await stack.assert_audit_ok()


async def test_payment_beyond_the_balance_is_refused_and_recorded_as_failed(stack):
    user = await stack.user(funded=1_000)
    code, reason = await rpc_error(stack.pay(user.user_id, 1_001, key="too-much"))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    listed = (await stack.redemption.ListMobilePayments(pb.ListMobilePaymentsRequest(user_id=user.user_id))).payments
    assert [p.status for p in listed] == [pb.PAYMENT_STATUS_FAILED]
    assert (await stack.balance(user.user_id)).available_kopecks == 1_000
    assert await stack.credited(user.phone) == 0


async def test_concurrent_requests_with_one_key_make_one_payment(stack):
    user = await stack.user(funded=10_000)
    responses = await asyncio.gather(*(stack.pay(user.user_id, 2_000, key="double-click") for _ in range(5)))
    assert len({r.payment.payment_id for r in responses}) == 1
    assert sum(not r.already_existed for r in responses) == 1
    payment_id = responses[0].payment.payment_id

    async def completed() -> bool:
        return (await stack.payment(user.user_id, payment_id)).status == pb.PAYMENT_STATUS_COMPLETED

    await poll(completed)
    assert await stack.credited(user.phone) == 2_000
    assert (await stack.balance(user.user_id)).posted_kopecks == 8_000


@pytest.mark.parametrize("amount", [0, 99, -500])
async def test_payment_below_one_rouble_is_invalid(stack, amount):
    code, reason = await rpc_error(stack.pay(str(uuid.uuid4()), amount))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "AMOUNT_INVALID")


async def test_payments_are_listed_newest_first_and_only_to_their_owner(stack):
    user = await stack.user(funded=10_000)
    other = await stack.user()
    ids = [(await stack.pay(user.user_id, 100 + i)).payment.payment_id for i in range(3)]
    page1 = await stack.redemption.ListMobilePayments(pb.ListMobilePaymentsRequest(user_id=user.user_id, page_size=2))
    page2 = await stack.redemption.ListMobilePayments(pb.ListMobilePaymentsRequest(
        user_id=user.user_id, page_size=2, page_token=page1.next_page_token))
    assert [p.payment_id for p in [*page1.payments, *page2.payments]] == ids[::-1]
    assert not page2.next_page_token
    code, reason = await rpc_error(stack.redemption.GetMobilePayment(
        pb.GetMobilePaymentRequest(user_id=other.user_id, payment_id=ids[0])))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "PAYMENT_NOT_FOUND")


async def test_payment_left_by_a_crash_before_the_hold_is_finished_after_restart(stack, start_service):
    """A crash right after the payment row was committed (no hold, no top-up): a fresh replica
    finishes it exactly once."""
    user = await stack.user(funded=9_000)
    db = Database(stack.redemption_database_url)
    payment_id = str(uuid.uuid4())
    past = datetime.now(UTC) - timedelta(minutes=5)
    async with db.transaction() as session:
        session.add(MobilePayment(id=payment_id, user_id=user.user_id, idempotency_key="crashed", phone=user.phone,
                                  amount=2_500, status="PROCESSING", failure_reason="", created_at=past,
                                  next_check_at=past, attempts=0))
    await db.dispose()

    async def completed() -> bool:
        return (await stack.payment(user.user_id, payment_id)).status == pb.PAYMENT_STATUS_COMPLETED

    await poll(completed)
    assert await stack.credited(user.phone) == 2_500
    assert (await stack.balance(user.user_id)).posted_kopecks == 6_500
    await stack.assert_audit_ok()


async def test_payment_cut_off_between_hold_and_billing_answer_is_settled_once_by_another_replica(stack):
    """A replica holds the points and is stopped while its top-up request is still on the way; the
    other replica on the same database takes the payment over once its lease runs out and settles
    it exactly once."""
    user = await stack.user(funded=9_000)
    doomed = await stack.start_redemption(database_url=stack.redemption_database_url, billing_timeout_seconds=10.0,
                                          claim_lease_seconds=0.5, reconcile_interval_seconds=3600.0)
    channel = open_channel(doomed.address)
    await stack.billing("timeout", delay=1.0)
    call = asyncio.ensure_future(redemption_pb2_grpc.RedemptionServiceStub(channel).CreateMobilePayment(
        pb.CreateMobilePaymentRequest(user_id=user.user_id, idempotency_key="cut-off", amount_kopecks=3_000)))

    async def held() -> bool:
        return (await stack.balance(user.user_id)).pending_debits_kopecks == 3_000

    await poll(held)
    await doomed.stop(0)
    with pytest.raises(grpc.aio.AioRpcError):
        await call
    await channel.close()
    await stack.billing("ok")

    async def completed() -> pb.MobilePayment | None:
        listed = await stack.redemption.ListMobilePayments(pb.ListMobilePaymentsRequest(user_id=user.user_id))
        done = [p for p in listed.payments if p.status == pb.PAYMENT_STATUS_COMPLETED]
        return done[0] if done else None

    await poll(completed)
    assert await stack.credited(user.phone) == 3_000
    balance = await stack.balance(user.user_id)
    assert (balance.posted_kopecks, balance.pending_debits_kopecks) == (6_000, 0)
    await stack.assert_audit_ok()


# --- certificates -----------------------------------------------------------------------------

@pytest.mark.parametrize("nominal", [99 * 100, 80_001 * 100, 150 * 100 + 50, 0])
async def test_certificate_nominal_outside_100_to_80000_whole_roubles_is_invalid(stack, nominal):
    code, reason = await rpc_error(stack.order(str(uuid.uuid4()), nominal))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "NOMINAL_INVALID")


async def test_certificates_of_100_and_80000_roubles_are_issued_and_paid_for(stack):
    user = await stack.user(funded=80_100 * 100)
    small = (await stack.order(user.user_id, 100 * 100)).certificate
    large = (await stack.order(user.user_id, 80_000 * 100)).certificate
    assert small.status == large.status == pb.CERTIFICATE_STATUS_ACTIVE
    assert re.fullmatch(r"([2-9A-HJKMNP-Z]{4}-){4}[2-9A-HJKMNP-Z]{4}", small.code)
    assert (await stack.balance(user.user_id)).posted_kopecks == 0
    assert [c.certificate_id for c in await stack.held(user.user_id)] == [large.certificate_id, small.certificate_id]

    async def told() -> bool:
        notes = await stack.identity.ListNotifications(identity_pb2.ListNotificationsRequest(user_id=user.user_id))
        return sum(n.template == "certificate_issued" for n in notes.notifications) >= 2

    await poll(told)
    await stack.assert_audit_ok()


async def test_certificate_beyond_the_balance_is_refused_and_nothing_is_issued(stack):
    user = await stack.user(funded=9_900)
    code, reason = await rpc_error(stack.order(user.user_id, 10_000, key="cert-1"))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_FUNDS")
    assert await stack.held(user.user_id) == []
    assert (await stack.balance(user.user_id)).posted_kopecks == 9_900
    # The same key, once the points are there, orders the certificate.
    await stack.fund(user.user_id, 100)
    issued = await stack.order(user.user_id, 10_000, key="cert-1")
    assert issued.certificate.status == pb.CERTIFICATE_STATUS_ACTIVE
    await stack.assert_audit_ok()


async def test_same_key_retry_returns_the_same_certificate_and_takes_the_points_once(stack):
    user = await stack.user(funded=50_000)
    first = await stack.order(user.user_id, 20_000, key="k")
    again = await stack.order(user.user_id, 20_000, key="k")
    assert again.already_existed and again.certificate == first.certificate
    assert (await stack.balance(user.user_id)).posted_kopecks == 30_000
    code, reason = await rpc_error(stack.order(user.user_id, 30_000, key="k"))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED")


async def test_certificate_left_by_a_crash_before_the_points_left_is_issued_by_the_reconciler(stack):
    user = await stack.user(funded=30_000)
    db = Database(stack.redemption_database_url)
    past = datetime.now(UTC) - timedelta(minutes=5)
    cert_id = str(uuid.uuid4())
    async with db.transaction() as session:
        session.add(Certificate(id=cert_id, code=domain.new_certificate_code(), user_id=user.user_id,
                                idempotency_key="crashed", holder_user_id=user.user_id, nominal=20_000,
                                status="ISSUING", created_at=past, next_check_at=past))
    await db.dispose()

    async def issued() -> bool:
        return [c.certificate_id for c in await stack.held(user.user_id)] == [cert_id]

    await poll(issued)
    assert (await stack.balance(user.user_id)).posted_kopecks == 10_000
    again = await stack.order(user.user_id, 20_000, key="crashed")
    assert again.already_existed and again.certificate.certificate_id == cert_id
    assert (await stack.balance(user.user_id)).posted_kopecks == 10_000
    await stack.assert_audit_ok()


async def test_concurrent_redemptions_of_one_code_let_exactly_one_through(stack):
    user = await stack.user(funded=50_000)
    cert = (await stack.order(user.user_id, 50_000)).certificate

    async def redeem(i: int) -> object:
        try:
            return await stack.redemption.RedeemCertificate(pb.RedeemCertificateRequest(
                store_id="store-1", certificate_code=cert.code, sale_id=f"sale-{i}", device_price_kopecks=3_000_000))
        except grpc.aio.AioRpcError as exc:
            return error_info(exc).reason

    outcomes = await asyncio.gather(*(redeem(i) for i in range(50)))
    wins = [o for o in outcomes if isinstance(o, pb.RedeemCertificateResponse)]
    assert len(wins) == 1
    assert sorted(set(o for o in outcomes if isinstance(o, str))) == ["CERTIFICATE_REDEEMED"]
    assert (wins[0].covered_kopecks, wins[0].to_pay_kopecks, wins[0].forfeited_kopecks) == (50_000, 2_950_000, 0)
    [held] = await stack.held(user.user_id)
    assert held.status == pb.CERTIFICATE_STATUS_REDEEMED and held.HasField("redeem_time")


async def test_certificate_leaves_the_buyer_at_least_one_rouble_to_pay_and_says_what_is_forfeited(stack):
    user = await stack.user(funded=100_000)
    cert = (await stack.order(user.user_id, 100_000)).certificate
    result = await stack.redemption.RedeemCertificate(pb.RedeemCertificateRequest(
        store_id="store-1", certificate_code=cert.code.lower(), sale_id="S-cheap", device_price_kopecks=60_000))
    assert (result.covered_kopecks, result.to_pay_kopecks, result.forfeited_kopecks) == (59_900, 100, 40_100)


async def test_one_sale_takes_one_certificate(stack):
    user = await stack.user(funded=40_000)
    first = (await stack.order(user.user_id, 20_000)).certificate
    second = (await stack.order(user.user_id, 20_000)).certificate
    sale = pb.RedeemCertificateRequest(store_id="store-1", sale_id="S-1", device_price_kopecks=2_000_000)
    sale.certificate_code = first.code
    await stack.redemption.RedeemCertificate(sale)
    sale.certificate_code = second.code
    code, reason = await rpc_error(stack.redemption.RedeemCertificate(sale))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SALE_ALREADY_HAS_CERTIFICATE")
    sale.certificate_code, sale.sale_id = first.code, "S-2"
    code, reason = await rpc_error(stack.redemption.RedeemCertificate(sale))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CERTIFICATE_REDEEMED")


async def test_mistyped_or_unknown_codes_are_refused(stack):
    code = domain.new_certificate_code()
    typo = code[:-1] + ("2" if code[-1] != "2" else "3")
    request = pb.RedeemCertificateRequest(store_id="store-1", sale_id="S", device_price_kopecks=100_000)
    request.certificate_code = domain.format_code(typo)
    assert (await rpc_error(stack.redemption.RedeemCertificate(request)))[1] == "CERTIFICATE_CODE_MALFORMED"
    request.certificate_code = domain.format_code(code)
    assert (await rpc_error(stack.redemption.RedeemCertificate(request)))[1] == "CERTIFICATE_NOT_FOUND"


async def test_handing_a_certificate_over_moves_it_to_the_new_holder(stack):
    giver = await stack.user(funded=10_000)
    taker = await stack.user()
    stranger = await stack.user()
    cert = (await stack.order(giver.user_id, 10_000)).certificate

    code, reason = await rpc_error(stack.redemption.TransferCertificate(pb.TransferCertificateRequest(
        user_id=stranger.user_id, certificate_id=cert.certificate_id, to_phone=stranger.phone)))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CERTIFICATE_NOT_FOUND")
    code, reason = await rpc_error(stack.redemption.TransferCertificate(pb.TransferCertificateRequest(
        user_id=giver.user_id, certificate_id=cert.certificate_id, to_phone=f"{OTHER_PREFIX}0000000")))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "RECIPIENT_NOT_FOUND")

    moved = await stack.redemption.TransferCertificate(pb.TransferCertificateRequest(
        user_id=giver.user_id, certificate_id=cert.certificate_id, to_phone=taker.phone))
    assert moved.certificate.holder_user_id == taker.user_id
    assert moved.certificate.code == ""  # the giver never sees the new code
    assert await stack.held(giver.user_id) == []
    [held] = await stack.held(taker.user_id)
    assert held.certificate_id == cert.certificate_id and held.code and held.code != cert.code
    replay = await stack.redemption.OrderCertificate(pb.OrderCertificateRequest(
        user_id=giver.user_id, idempotency_key=stack.last_key, nominal_kopecks=10_000))
    assert replay.already_existed and replay.certificate.code == ""
    code, reason = await rpc_error(stack.redemption.TransferCertificate(pb.TransferCertificateRequest(
        user_id=giver.user_id, certificate_id=cert.certificate_id, to_phone=giver.phone)))
    assert (code, reason) == (grpc.StatusCode.NOT_FOUND, "CERTIFICATE_NOT_FOUND")
    db = Database(stack.redemption_database_url)
    async with db.sessions() as session:
        history = await RedemptionRepository(session).holders(cert.certificate_id)
    await db.dispose()
    assert [(h.user_id, h.from_user_id) for h in history] == [(giver.user_id, None), (taker.user_id, giver.user_id)]


async def test_points_pay_only_numbers_that_billing_says_are_the_operators(stack):
    outsider = await stack.user(operator=False, funded=10_000)
    code, reason = await rpc_error(stack.pay(outsider.user_id, 5_000))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "PHONE_NOT_OPERATOR")
    assert await stack.credited(outsider.phone) == 0
    assert (await stack.balance(outsider.user_id)).posted_kopecks == 10_000
    # Number portability: billing knows, not the number range identity saw at sign-up.
    await stack.port(outsider.phone, subscriber=True)
    assert (await stack.pay(outsider.user_id, 5_000)).payment.status == pb.PAYMENT_STATUS_COMPLETED
    leaver = await stack.user(operator=True, funded=10_000)
    await stack.port(leaver.phone, subscriber=False)
    assert (await rpc_error(stack.pay(leaver.user_id, 5_000)))[1] == "PHONE_NOT_OPERATOR"
    credit = await stack.fund(leaver.user_id, 12_000)
    swept = await stack.redemption.SweepCredit(pb.SweepCreditRequest(
        user_id=leaver.user_id, credit_transfer_id=credit, amount_kopecks=12_000))
    assert swept.payment_id == "" and await stack.credited(leaver.phone) == 0
    await stack.assert_audit_ok()


# --- USSD and sweep ----------------------------------------------------------------------------

async def test_ussd_balance_is_one_short_screen(stack):
    user = await stack.user(funded=15_000)
    text = (await stack.redemption.AnswerUssd(pb.AnswerUssdRequest(
        msisdn=user.phone.lstrip("+"), request="*100*1#"))).text
    assert text == "Баланс кешбэка: 150,00 баллов. Доступно: 150,00" and len(text) <= 80
    national = (await stack.redemption.AnswerUssd(pb.AnswerUssdRequest(
        msisdn="8" + user.phone.removeprefix("+7"), request=" *100*1# "))).text
    assert national == text
    unknown_number = (await stack.redemption.AnswerUssd(pb.AnswerUssdRequest(
        msisdn=f"{OTHER_PREFIX}0000001", request="*100*1#"))).text
    unknown_request = (await stack.redemption.AnswerUssd(pb.AnswerUssdRequest(
        msisdn=user.phone, request="*555#"))).text
    assert unknown_number and unknown_request and "Баланс" not in unknown_number
    assert len(unknown_number) <= 80 and len(unknown_request) <= 80


async def test_credit_of_an_operator_subscriber_saving_for_mobile_is_swept_once(stack):
    user = await stack.user(operator=True)
    credit = await stack.fund(user.user_id, 12_000)
    request = pb.SweepCreditRequest(user_id=user.user_id, credit_transfer_id=credit, amount_kopecks=12_000)
    first = await stack.redemption.SweepCredit(request)
    again = await stack.redemption.SweepCredit(request)
    assert first.payment_id and again.payment_id == first.payment_id
    assert (await stack.payment(user.user_id, first.payment_id)).status == pb.PAYMENT_STATUS_COMPLETED
    assert await stack.credited(user.phone) == 12_000
    assert (await stack.balance(user.user_id)).posted_kopecks == 0
    await stack.assert_audit_ok()


async def test_credit_is_not_swept_for_other_operators_or_goals(stack):
    outsider = await stack.user(operator=False)
    credit = await stack.fund(outsider.user_id, 12_000)
    swept = await stack.redemption.SweepCredit(pb.SweepCreditRequest(
        user_id=outsider.user_id, credit_transfer_id=credit, amount_kopecks=12_000))
    assert swept.payment_id == ""
    saver = await stack.user(operator=True)
    await stack.identity.UpdateSpendingGoal(identity_pb2.UpdateSpendingGoalRequest(
        user_id=saver.user_id, spending_goal=identity_pb2.SPENDING_GOAL_DEVICE_CERTIFICATE))
    credit = await stack.fund(saver.user_id, 12_000)
    swept = await stack.redemption.SweepCredit(pb.SweepCreditRequest(
        user_id=saver.user_id, credit_transfer_id=credit, amount_kopecks=12_000))
    assert swept.payment_id == ""
    assert (await stack.balance(saver.user_id)).posted_kopecks == 12_000


async def test_a_store_asking_again_about_the_same_sale_gets_the_same_answer(stack):
    user = await stack.user(funded=30_000)
    cert = (await stack.order(user.user_id, 30_000)).certificate
    sale = pb.RedeemCertificateRequest(store_id="store-1", certificate_code=cert.code, sale_id="S-retry",
                                       device_price_kopecks=2_000_000)
    first = await stack.redemption.RedeemCertificate(sale)
    again = await stack.redemption.RedeemCertificate(sale)
    assert again == first
    assert (first.covered_kopecks, first.to_pay_kopecks, first.forfeited_kopecks) == (30_000, 1_970_000, 0)
    for changed in ({"device_price_kopecks": 2_100_000}, {"store_id": "store-2"}, {"sale_id": "S-other"}):
        other = pb.RedeemCertificateRequest()
        other.CopyFrom(sale)
        for name, value in changed.items():
            setattr(other, name, value)
        code, reason = await rpc_error(stack.redemption.RedeemCertificate(other))
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "CERTIFICATE_REDEEMED"), changed
