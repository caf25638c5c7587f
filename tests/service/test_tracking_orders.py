"""Money reaches the right person: orders per shop, reports in order, claims that pay once — over
real gRPC with the real identity and ledger, a real database and Redis (or none, embedded)."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
from cashback.identity.v1 import identity_pb2 as ipb
from cashback.ledger.v1 import ledger_pb2
from cashback.tracking.v1 import tracking_pb2 as pb
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from services.common.grpc_client import error_info
from tests.service.tracking_harness import DAY, Stack, order, rpc_error

STATUS_OF = {"pending": pb.PURCHASE_STATUS_PENDING, "approved": pb.PURCHASE_STATUS_CONFIRMED,
             "declined": pb.PURCHASE_STATUS_REJECTED}


async def test_the_same_order_id_at_two_shops_is_two_purchases_each_credited_to_its_buyer(stack):
    ali_buyer, ozon_buyer = await stack.sign_up(), await stack.sign_up()
    ali_click = await stack.click(ali_buyer.user_id, "aliexpress")
    ozon_click = await stack.click(ozon_buyer.user_id, "ozon")
    oid = order()
    ali = await stack.direct(order_id=oid, click_id=ali_click, status="pending", amount_kopecks=100_000)
    ozon = await stack.direct(order_id=oid, click_id=ozon_click, status="pending", amount_kopecks=50_000)
    assert ali.outcome == ozon.outcome == pb.POSTBACK_OUTCOME_ACCEPTED and ali.purchase_id != ozon.purchase_id
    stack.clock.advance(timedelta(seconds=1))
    # Ozon confirms its order 1001: AliExpress's purchase of "1001" is not touched.
    await stack.direct(order_id=oid, click_id=ozon_click, status="approved", amount_kopecks=50_000)
    assert (await stack.purchase(ali.purchase_id)).status == pb.PURCHASE_STATUS_PENDING
    await stack.direct(order_id=oid, click_id=ali_click, status="approved", amount_kopecks=100_000)
    stack.clock.advance(DAY)
    await stack.wait_balance(ali_buyer.user_id, 7_000)  # 7 % of 1,000 ₽
    await stack.wait_balance(ozon_buyer.user_id, 2_000)  # 4 % of 500 ₽
    ali_row = await stack.purchase(ali.purchase_id)
    assert (ali_row.partner_id, ali_row.user_id) == ("aliexpress", ali_buyer.user_id)


async def test_a_report_naming_another_shop_than_its_click_is_refused_and_kept(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "aliexpress")
    oid = order()
    refused = await rpc_error(stack.direct(order_id=oid, click_id=click, partner_id="ozon", status="approved",
                                           amount_kopecks=100_000))
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_info(refused).reason == "PARTNER_MISMATCH"
    [row] = await stack.wait_audit_rows(1, order_id=oid)
    assert row.outcome == "CONFLICT" and row.detail.startswith("PARTNER_MISMATCH") and not row.purchase_id
    # The same report naming the right shop goes in (the refused one left no claim behind in Redis).
    right = await stack.direct(order_id=oid, click_id=click, partner_id="aliexpress", status="approved",
                               amount_kopecks=100_000)
    assert right.outcome == pb.POSTBACK_OUTCOME_ACCEPTED


async def test_a_claim_for_an_order_tracked_for_the_user_answers_with_that_purchase(stack):
    user, other = await stack.sign_up(), await stack.sign_up()
    click = await stack.click(user.user_id, "aliexpress")
    oid = order()
    tracked = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=100_000)
    mine = await rpc_error(stack.tracking.FileClaim(claim(user.user_id, oid)))
    assert mine.code() == grpc.StatusCode.ALREADY_EXISTS
    info = error_info(mine)
    assert (info.reason, info.metadata.get("purchase_id")) == ("ORDER_ALREADY_TRACKED", tracked.purchase_id)
    theirs = await rpc_error(stack.tracking.FileClaim(claim(other.user_id, oid)))
    assert error_info(theirs).reason == "ORDER_NOT_CLAIMABLE"
    assert user.user_id not in str(error_info(theirs).metadata) + error_info(theirs).message  # never says whose
    stack.clock.advance(DAY)
    await stack.wait_balance(user.user_id, 7_000)
    assert await stack.balance(other.user_id) == 0


async def test_an_order_claimed_by_someone_else_cannot_be_claimed(stack):
    first, second = await stack.sign_up(), await stack.sign_up()
    oid = order()
    await stack.tracking.FileClaim(claim(first.user_id, oid))
    refused = await rpc_error(stack.tracking.FileClaim(claim(second.user_id, oid)))
    assert error_info(refused).reason == "ORDER_NOT_CLAIMABLE"


async def test_approval_links_a_pending_unattributed_order_which_is_credited_when_the_shop_confirms(stack):
    user = await stack.sign_up()
    oid = order()
    shop = await stack.direct(order_id=oid, partner_id="aliexpress", status="pending", amount_kopecks=100_000)
    assert shop.outcome == pb.POSTBACK_OUTCOME_UNATTRIBUTED
    filed = (await stack.tracking.FileClaim(claim(user.user_id, oid, amount=101_000))).claim
    approved = (await stack.tracking.ApproveClaim(pb.ApproveClaimRequest(claim_id=filed.claim_id,
                                                                         decided_by="support:anna"))).claim
    assert approved.purchase_id == shop.purchase_id
    linked = await stack.purchase(shop.purchase_id)
    assert (linked.user_id, linked.status, linked.cashback_kopecks) == (user.user_id, pb.PURCHASE_STATUS_PENDING,
                                                                        7_000)
    stack.clock.advance(DAY)
    await asyncio.sleep(0.1)
    assert await stack.balance(user.user_id) == 0  # the shop still has it as pending
    await stack.direct(order_id=oid, partner_id="aliexpress", status="approved", amount_kopecks=100_000)
    stack.clock.advance(DAY)
    await stack.wait_balance(user.user_id, 7_000)


async def test_approval_refuses_an_amount_that_does_not_agree(stack):
    user = await stack.sign_up()
    oid = order()
    await stack.direct(order_id=oid, partner_id="aliexpress", status="approved", amount_kopecks=100_000)
    filed = (await stack.tracking.FileClaim(claim(user.user_id, oid, amount=150_000))).claim
    refused = await rpc_error(stack.tracking.ApproveClaim(pb.ApproveClaimRequest(claim_id=filed.claim_id,
                                                                                 decided_by="support:anna")))
    assert error_info(refused).reason == "CLAIM_AMOUNT_MISMATCH"


async def test_a_report_after_an_approved_claim_joins_its_purchase_and_never_pays_twice(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "aliexpress")
    oid = order()
    filed = (await stack.tracking.FileClaim(claim(user.user_id, oid))).claim
    approved = (await stack.tracking.ApproveClaim(pb.ApproveClaimRequest(claim_id=filed.claim_id,
                                                                         decided_by="support:anna"))).claim
    stack.clock.advance(DAY)
    await stack.wait_balance(user.user_id, 7_000)
    for status in ("pending", "approved"):  # the network's reports arrive after all, one part of the order
        stack.clock.advance(timedelta(seconds=1))
        late = await stack.direct(order_id=oid, part_id="p1", click_id=click, status=status, amount_kopecks=100_000)
        assert late.purchase_id == approved.purchase_id
    stack.clock.advance(DAY)
    await asyncio.sleep(0.2)
    assert await stack.balance(user.user_id) == 7_000
    listed = await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id))
    assert [p.purchase_id for p in listed.purchases] == [approved.purchase_id]


async def test_an_open_claim_is_matched_by_itself_when_its_order_is_reported(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "aliexpress")
    oid = order()
    filed = (await stack.tracking.FileClaim(claim(user.user_id, oid))).claim
    report = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=100_000)
    claims = (await stack.tracking.ListClaims(pb.ListClaimsRequest(user_id=user.user_id))).claims
    [matched] = [c for c in claims if c.claim_id == filed.claim_id]
    assert (matched.status, matched.purchase_id) == (pb.CLAIM_STATUS_APPROVED, report.purchase_id)
    stack.clock.advance(DAY)
    await stack.wait_balance(user.user_id, 7_000)


def claim(user_id: str, order_id: str, *, amount: int = 100_000, partner: str = "aliexpress") -> pb.FileClaimRequest:
    return pb.FileClaimRequest(user_id=user_id, partner_id=partner, order_id=order_id, order_date="2025-12-28",
                               amount_kopecks=amount, comment="кэшбэк не пришёл")


# --- reports in any order end in the state of the newest --------------------------------------

EXAMPLES = int(os.environ.get("REPORT_ORDER_EXAMPLES", "12"))
STEPS = int(os.environ.get("REPORT_ORDER_STEPS", "12"))


class ReportOrder(RuleBasedStateMachine):
    """One order per example: a few reports of it, each with its own event time, sent in any order,
    any number of times, some at once. After every step the purchase is in the state of the newest
    report sent so far, and there is one purchase."""

    stack: Stack
    call: Callable[[Callable[[], Awaitable[Any]]], Any]
    click_id: str

    def __init__(self) -> None:
        super().__init__()
        self.reports: list[dict[str, Any]] = []
        self.sent: set[int] = set()
        self.purchase_ids: set[str] = set()

    @initialize(data=st.data())
    def reports_of_one_order(self, data: st.DataObject) -> None:
        oid, base = order(), self.stack.clock.now()
        count = data.draw(st.integers(2, 5), label="reports")
        for i in range(count):
            self.reports.append({
                "order_id": oid, "click_id": self.click_id, "status": data.draw(st.sampled_from(sorted(STATUS_OF))),
                "amount_kopecks": data.draw(st.sampled_from([50_000, 80_000, 100_000])),
                "event_time": (base + timedelta(minutes=i)).isoformat()})

    def send(self, i: int) -> None:
        answer = self.call(lambda: self.stack.direct(**self.reports[i]))
        self.sent.add(i)
        if answer.purchase_id:
            self.purchase_ids.add(answer.purchase_id)

    @rule(data=st.data())
    def send_one(self, data: st.DataObject) -> None:
        self.send(data.draw(st.integers(0, len(self.reports) - 1), label="report"))

    @rule(data=st.data())
    def send_copies_at_once(self, data: st.DataObject) -> None:
        i = data.draw(st.integers(0, len(self.reports) - 1), label="report")
        answers = self.call(lambda: asyncio.gather(*(self.stack.direct(**self.reports[i]) for _ in range(3))))
        self.sent.add(i)
        self.purchase_ids.update(a.purchase_id for a in answers if a.purchase_id)

    @invariant()
    def the_purchase_is_in_the_state_of_the_newest_report(self) -> None:
        if not self.sent:
            return
        assert len(self.purchase_ids) == 1, self.purchase_ids
        newest = self.reports[max(self.sent)]  # event times ascend with the index
        [purchase_id] = self.purchase_ids
        purchase = self.call(lambda: self.stack.purchase(purchase_id))
        assert (purchase.status, purchase.amount_kopecks) == (STATUS_OF[newest["status"]], newest["amount_kopecks"])


async def test_reports_in_any_order_duplicated_or_not_end_in_the_state_of_the_newest(stack, capsys):
    user = await stack.sign_up()
    loop = asyncio.get_running_loop()

    async def invoke(make: Callable[[], Awaitable[Any]]) -> Any:
        return await make()

    ReportOrder.stack = stack
    ReportOrder.click_id = await stack.click(user.user_id, "aliexpress")
    ReportOrder.call = staticmethod(lambda make: asyncio.run_coroutine_threadsafe(invoke(make), loop).result(60))
    chosen = int(os.environ.get("REPORT_ORDER_SEED") or random.SystemRandom().randrange(2**32))
    with capsys.disabled():
        print(f"\nreport order: seed {chosen} (replay with REPORT_ORDER_SEED={chosen})")
    try:
        await asyncio.to_thread(run_state_machine_as_test, seed(chosen)(ReportOrder), settings=settings(
            max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None, print_blob=True,
            suppress_health_check=[HealthCheck.too_slow]))
    except Exception:
        print(f"report order failed with seed {chosen}: replay with REPORT_ORDER_SEED={chosen}")
        raise


# --- reversals after crediting ------------------------------------------------------------------

async def spend(stack: Stack, user_id: str, amount: int) -> None:
    await stack.ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
        transfer_id=f"spend:{uuid.uuid4()}", debit_account=ledger_pb2.AccountRef(user_id=user_id),
        credit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_MOBILE_PAYMENTS),
        amount_kopecks=amount, kind=ledger_pb2.TRANSFER_KIND_MOBILE_PAYMENT, reference="phone bill")))


async def balance(stack: Stack, user_id: str) -> ledger_pb2.Balance:
    return (await stack.ledger.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id))).balance


async def wait_debt(stack: Stack, user_id: str, debt: int) -> ledger_pb2.Balance:
    for _ in range(300):
        found = await balance(stack, user_id)
        if found.debt_kopecks == debt:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"debt of {user_id} is {found.debt_kopecks}, not {debt}")


async def credited_purchase(stack: Stack, user_id: str, click: str, amount: int) -> tuple[str, str]:
    oid = order()
    answer = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=amount)
    stack.clock.advance(DAY)
    await stack.wait_status(answer.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    return oid, answer.purchase_id


async def test_a_decline_after_crediting_takes_the_cashback_back_once(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "aliexpress")
    oid, purchase_id = await credited_purchase(stack, user.user_id, click, 100_000)
    await stack.wait_balance(user.user_id, 7_000)
    stack.clock.advance(timedelta(seconds=1))
    declined = await stack.direct(order_id=oid, click_id=click, status="declined", amount_kopecks=100_000)
    assert declined.outcome == pb.POSTBACK_OUTCOME_REJECTED  # 200 at the gateway: networks stop retrying
    for _ in range(2):  # the network retries the same late report: nothing more happens
        again = await stack.direct(order_id=oid, click_id=click, status="declined", amount_kopecks=100_000)
        assert again.outcome == pb.POSTBACK_OUTCOME_DUPLICATE
    await stack.wait_balance(user.user_id, 0)
    purchase = await stack.purchase(purchase_id)
    assert (purchase.status, purchase.credited_kopecks) == (pb.PURCHASE_STATUS_REJECTED, 0)
    audit = await stack.ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
    assert audit.ok and audit.posted_sum_kopecks == 0, list(audit.violations)
    texts = await notifications(stack, user.user_id)
    assert any("списано 70.00 ₽" in t for t in texts), texts


async def test_a_lower_amount_after_spending_becomes_a_debt_that_the_next_credits_repay_first(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "aliexpress")
    oid, _ = await credited_purchase(stack, user.user_id, click, 100_000)  # +70 ₽
    await stack.wait_balance(user.user_id, 7_000)
    await spend(stack, user.user_id, 6_000)  # 10 ₽ left
    stack.clock.advance(timedelta(seconds=1))
    lowered = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=40_000)  # 28 ₽
    assert lowered.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    after = await wait_debt(stack, user.user_id, 3_200)  # 42 ₽ to take back: 10 ₽ taken, 32 ₽ owed
    assert (after.posted_kopecks, after.available_kopecks) == (0, 0)  # never below zero
    await credited_purchase(stack, user.user_id, click, 100_000)  # +70 ₽: 32 ₽ repay the debt first
    after = await wait_debt(stack, user.user_id, 0)
    await stack.wait_balance(user.user_id, 3_800)
    kinds = [e.kind for e in (await stack.ledger.ListStatement(ledger_pb2.ListStatementRequest(
        user_id=user.user_id))).entries]
    assert ledger_pb2.TRANSFER_KIND_CASHBACK_REVERSAL in kinds and ledger_pb2.TRANSFER_KIND_DEBT_REPAYMENT in kinds
    audit = await stack.ledger.AuditLedger(ledger_pb2.AuditLedgerRequest())
    assert audit.ok and audit.posted_sum_kopecks == 0, list(audit.violations)


async def notifications(stack: Stack, user_id: str) -> list[str]:
    for _ in range(300):
        found = (await stack.identity.ListNotifications(ipb.ListNotificationsRequest(user_id=user_id))).notifications
        texts = [n.text for n in found]
        if any("списано" in t for t in texts):
            return texts
        await asyncio.sleep(0.02)
    return texts
