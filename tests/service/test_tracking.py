"""Tracking over real gRPC, with the real identity and ledger, a real database and Redis."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
from cashback.identity.v1 import identity_pb2 as ipb
from cashback.ledger.v1 import ledger_pb2
from cashback.tracking.v1 import tracking_pb2 as pb
from cashback.tracking.v1 import tracking_pb2_grpc

from services.common.clock import FrozenClock
from services.common.grpc_client import error_info, open_channel
from services.tracking.config import DEFAULT_CATALOGUE
from services.tracking.postbacks import sign
from tests.service.tracking_harness import DAY, order, rpc_error

# --- catalogue --------------------------------------------------------------------------------


async def test_catalogue_lists_filters_and_pages(stack):
    categories = (await stack.tracking.ListCategories(pb.ListCategoriesRequest())).categories
    assert sum(c.partner_count for c in categories) >= 780
    assert {"online-shops", "travel", "restaurant-booking", "leisure", "operator-services"} <= {
        c.category_id for c in categories}
    first = await stack.tracking.ListPartners(pb.ListPartnersRequest(page_size=100))
    assert first.total_size >= 780 and len(first.partners) == 100 and first.next_page_token
    second = await stack.tracking.ListPartners(pb.ListPartnersRequest(page_size=100, page_token=first.next_page_token))
    assert not {p.partner_id for p in first.partners} & {p.partner_id for p in second.partners}
    found = await stack.tracking.ListPartners(pb.ListPartnersRequest(query="ALIEXP"))
    assert [p.partner_id for p in found.partners] == ["aliexpress"] and found.total_size == 1
    travel = await stack.tracking.ListPartners(pb.ListPartnersRequest(category_id="travel", page_size=100))
    assert travel.total_size > 0 and all(p.category_id == "travel" for p in travel.partners)
    error = await rpc_error(stack.tracking.ListPartners(pb.ListPartnersRequest(page_token="garbage!")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_partner_terms_and_quote(stack):
    ali = (await stack.tracking.GetPartner(pb.GetPartnerRequest(partner_id="aliexpress"))).partner
    assert ali.rules.cap_kopecks == 200000 and list(ali.rules.excluded_domains) == ["tmall.ru"]
    assert ali.rules.app_orders_allowed and ali.rules.version == 1
    assert "Не больше 2\u00a0000\u00a0₽ за одну покупку" in ali.terms_text
    quote = (await stack.tracking.QuoteCashback(pb.QuoteCashbackRequest(
        partner_id="aliexpress", facts=pb.PurchaseFacts(amount_kopecks=5_000_000, channel=pb.CHANNEL_APP)))).decision
    assert quote.reason == pb.DECISION_REASON_CAP_APPLIED and quote.cashback_kopecks == 200000
    tmall = (await stack.tracking.QuoteCashback(pb.QuoteCashbackRequest(
        partner_id="aliexpress", facts=pb.PurchaseFacts(amount_kopecks=100000, destination_domain="tmall.ru"))))
    assert tmall.decision.reason == pb.DECISION_REASON_EXCLUDED_DESTINATION
    missing = await rpc_error(stack.tracking.GetPartner(pb.GetPartnerRequest(partner_id="nope")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND and error_info(missing).reason == "PARTNER_NOT_FOUND"
    bad = await rpc_error(stack.tracking.QuoteCashback(pb.QuoteCashbackRequest(partner_id="ozon")))
    assert error_info(bad).reason == "AMOUNT_INVALID"


# --- clicks -----------------------------------------------------------------------------------


async def test_click_redirects_with_an_unguessable_sub_id(stack):
    user = await stack.sign_up()
    answer = await stack.tracking.RecordClick(pb.RecordClickRequest(user_id=user.user_id, partner_id="ozon"))
    assert len(answer.click_id) >= 24
    url = urlsplit(answer.redirect_url)
    assert url.netloc == "www.ozon.ru" and parse_qs(url.query)["sub_id"] == [answer.click_id]
    assert answer.click_id != await stack.click(user.user_id, "ozon")


async def test_clicks_of_disabled_or_unknown_users_are_refused(stack):
    user = await stack.sign_up()
    await stack.identity.DisableUser(ipb.DisableUserRequest(user_id=user.user_id))
    disabled = await rpc_error(stack.tracking.RecordClick(pb.RecordClickRequest(user_id=user.user_id,
                                                                                 partner_id="ozon")))
    assert disabled.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(disabled).reason == "USER_DISABLED"
    unknown = await rpc_error(stack.tracking.RecordClick(pb.RecordClickRequest(user_id=str(uuid.uuid4()),
                                                                                partner_id="ozon")))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and error_info(unknown).reason == "USER_NOT_FOUND"


# --- postbacks and crediting --------------------------------------------------------------------


async def test_direct_postback_pending_then_approved_is_credited_exactly_once(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    oid = order()
    pending = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=100000)
    assert pending.outcome == pb.POSTBACK_OUTCOME_ACCEPTED and pending.purchase_id and pending.postback_id
    assert await stack.pending(user.user_id) == 7000
    approved = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=100000)
    assert approved.outcome == pb.POSTBACK_OUTCOME_ACCEPTED and approved.purchase_id == pending.purchase_id
    purchase = await stack.purchase(pending.purchase_id)
    assert purchase.status == pb.PURCHASE_STATUS_CONFIRMED and purchase.user_id == user.user_id
    assert purchase.decision.reason == pb.DECISION_REASON_RATE_APPLIED and purchase.cashback_kopecks == 7000
    assert await stack.balance(user.user_id) == 0  # not before the delay

    stack.clock.advance(DAY)
    accrued = await stack.wait_status(pending.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    assert accrued.accrue_time.seconds
    await stack.wait_balance(user.user_id, 7000)
    replay = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=100000)
    assert replay.outcome == pb.POSTBACK_OUTCOME_DUPLICATE
    transfer = (await stack.ledger.GetTransfer(ledger_pb2.GetTransferRequest(
        transfer_id=f"cashback:{pending.purchase_id}"))).transfer
    assert transfer.amount_kopecks == 7000 and transfer.kind == ledger_pb2.TRANSFER_KIND_CASHBACK
    assert await stack.pending(user.user_id) == 0
    for _ in range(300):
        notes = (await stack.identity.ListNotifications(
            ipb.ListNotificationsRequest(user_id=user.user_id))).notifications
        if any(n.template == "cashback_credited" for n in notes):
            break
        await asyncio.sleep(0.02)
    assert [n.template for n in notes].count("cashback_credited") >= 1
    stack.clock.advance(DAY)
    await asyncio.sleep(0.1)
    assert await stack.balance(user.user_id) == 7000
    statement = await stack.ledger.ListStatement(ledger_pb2.ListStatementRequest(user_id=user.user_id))
    assert len(statement.entries) == 1


async def test_exact_duplicates_and_concurrent_copies_change_nothing(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "ozon")
    oid = order()
    answers = await asyncio.gather(*(stack.direct(order_id=oid, click_id=click, status="pending",
                                                  amount_kopecks=50000) for _ in range(10)))
    outcomes = sorted(a.outcome for a in answers)
    assert outcomes == [pb.POSTBACK_OUTCOME_ACCEPTED] + [pb.POSTBACK_OUTCOME_DUPLICATE] * 9
    purchases = (await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id))).purchases
    assert len(purchases) == 1 and purchases[0].cashback_kopecks == 2000
    # Fast-path duplicates' audit rows are spooled in Redis and flushed in batches: poll.
    await stack.wait_audit_rows(10, order_id=oid)


async def test_a_batch_of_postbacks_answers_each_as_if_sent_alone(stack):
    """IngestPostbacks (what the gateway sends): new orders, copies, a later status of an order of
    the same batch, a forgery, an unknown click and a malformed body, each with its own answer in
    order and its own audit row; the purchases are what one-by-one ingestion would make."""
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    a, b, c = order(), order(), order()
    requests = [
        stack.direct_request(order_id=a, click_id=click, status="pending", amount_kopecks=100000),
        stack.direct_request(order_id=a, click_id=click, status="pending", amount_kopecks=100000),
        stack.direct_request(order_id=b, click_id=click, status="pending", amount_kopecks=20000),
        stack.direct_request(order_id=b, click_id=click, status="approved", amount_kopecks=20000),
        stack.direct_request(secret="guessed", order_id=c, click_id=click, status="approved", amount_kopecks=500),
        stack.direct_request(order_id=c, click_id="no-such-click", status="pending", amount_kopecks=30000),
        stack.direct_request(order_id=order(), status="paid", amount_kopecks=100),
    ]
    reply = await stack.tracking.IngestPostbacks(pb.IngestPostbacksRequest(postbacks=requests))
    assert len(reply.results) == len(requests)
    answers = [r.response if r.WhichOneof("result") == "response" else r.failure for r in reply.results]
    assert [r.WhichOneof("result") for r in reply.results] == ["response"] * 4 + ["failure", "response", "failure"]
    assert answers[0].outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    assert answers[1].outcome == pb.POSTBACK_OUTCOME_DUPLICATE
    assert {answers[2].outcome, answers[3].outcome} == {pb.POSTBACK_OUTCOME_ACCEPTED}
    assert answers[2].purchase_id == answers[3].purchase_id != answers[0].purchase_id
    assert (answers[4].code, answers[4].reason) == (grpc.StatusCode.UNAUTHENTICATED.value[0], "SIGNATURE_INVALID")
    assert answers[5].outcome == pb.POSTBACK_OUTCOME_UNATTRIBUTED
    assert (answers[6].code, answers[6].reason) == (grpc.StatusCode.INVALID_ARGUMENT.value[0], "POSTBACK_MALFORMED")
    assert len({x.postback_id for x in answers[:4]} | {answers[5].postback_id}) == 5

    first = await stack.purchase(answers[0].purchase_id)
    assert first.status == pb.PURCHASE_STATUS_PENDING and first.cashback_kopecks == 7000
    second = await stack.purchase(answers[2].purchase_id)
    assert second.status == pb.PURCHASE_STATUS_CONFIRMED and second.amount_kopecks == 20000
    unattributed = await stack.purchase(answers[5].purchase_id)
    assert unattributed.user_id == "" and unattributed.status == pb.PURCHASE_STATUS_PENDING
    purchases = (await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id))).purchases
    assert sorted(p.order_id for p in purchases) == sorted([a, b])
    assert await stack.pending(user.user_id) == 7000 + 1400
    for oid, outcomes in ((a, ["ACCEPTED", "DUPLICATE"]), (b, ["ACCEPTED", "ACCEPTED"])):
        assert sorted(r.outcome for r in await stack.wait_audit_rows(2, order_id=oid)) == outcomes
    refused = [r.outcome for r in await stack.audit_rows(network="direct") if r.outcome in ("UNAUTHENTICATED",
                                                                                             "REJECTED")]
    assert sorted(refused) == ["REJECTED", "UNAUTHENTICATED"]

    empty = await rpc_error(stack.tracking.IngestPostbacks(pb.IngestPostbacksRequest()))
    assert empty.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(empty).reason == "BATCH_SIZE_INVALID"


async def test_when_a_batch_of_new_purchases_fails_each_postback_is_applied_on_its_own(stack, monkeypatch):
    """A batch whose transaction fails (here: its INSERT, once) loses nothing: each of its postbacks
    is applied alone, with its own answer and audit row."""
    from services.tracking.repository import TrackingRepository

    original, failures = TrackingRepository.insert_purchases_if_new, []

    async def failing_once(self, rows):
        if not failures:
            failures.append(len(rows))
            raise ConnectionResetError("connection lost mid-batch")
        return await original(self, rows)

    monkeypatch.setattr(TrackingRepository, "insert_purchases_if_new", failing_once)
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    orders = [order() for _ in range(5)]
    reply = await stack.tracking.IngestPostbacks(pb.IngestPostbacksRequest(postbacks=[
        stack.direct_request(order_id=oid, click_id=click, status="pending", amount_kopecks=10000)
        for oid in orders]))
    assert failures == [5]
    assert [r.response.outcome for r in reply.results] == [pb.POSTBACK_OUTCOME_ACCEPTED] * 5
    purchases = (await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id))).purchases
    assert sorted(p.order_id for p in purchases) == sorted(orders)
    for oid in orders:
        assert [r.outcome for r in await stack.audit_rows(order_id=oid)] == ["ACCEPTED"]


async def test_bad_signature_is_unauthenticated_and_stored(stack):
    oid = order()
    forged = await rpc_error(stack.direct(secret="guessed", order_id=oid, status="approved", amount_kopecks=100))
    assert forged.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(forged).reason == "SIGNATURE_INVALID"
    unsigned = await rpc_error(stack.direct(header="", order_id=oid, status="approved", amount_kopecks=100))
    assert error_info(unsigned).reason == "SIGNATURE_INVALID"
    rows = [r for r in await stack.audit_rows(network="direct") if oid.encode() in r.body]
    assert [r.outcome for r in rows] == ["UNAUTHENTICATED", "UNAUTHENTICATED"]
    assert json.loads(rows[0].body)["order_id"] == oid and rows[0].remote_address == "198.51.100.7"


async def test_stale_and_future_timestamps_are_refused(stack):
    for skew in (timedelta(seconds=-301), timedelta(seconds=301)):
        error = await rpc_error(stack.direct(skew=skew, order_id=order(), status="pending", amount_kopecks=100))
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(error).reason == "TIMESTAMP_OUT_OF_WINDOW"
    ok = await stack.direct(skew=timedelta(seconds=-299), order_id=order(), status="pending", amount_kopecks=100)
    assert ok.outcome == pb.POSTBACK_OUTCOME_UNATTRIBUTED


async def test_malformed_postback_is_invalid_argument_and_stored(stack):
    error = await rpc_error(stack.direct(order_id=order(), status="paid", amount_kopecks=100))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(error).reason == "POSTBACK_MALFORMED"
    unknown = await rpc_error(stack.tracking.IngestPostback(pb.IngestPostbackRequest(network="cityads",
                                                                                     http_method="GET")))
    assert unknown.code() == grpc.StatusCode.NOT_FOUND and error_info(unknown).reason == "NETWORK_UNKNOWN"
    assert [r.outcome for r in await stack.audit_rows(network="cityads")] == ["REJECTED"]


async def test_admitad_get_and_post_with_parts(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "ozon")
    oid = order()
    first = await stack.admitad(order_id=oid, status="pending", order_sum="1234.50", currency="RUB", subid=click,
                                position_id="1", time="1767225600")
    second = await stack.admitad("POST", order_id=oid, status="approved", order_sum="600.00", currency="RUB",
                                 subid=click, position_id="2")
    assert first.outcome == second.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    part1, part2 = await stack.purchase(first.purchase_id), await stack.purchase(second.purchase_id)
    assert (part1.amount_kopecks, part1.cashback_kopecks, part1.part_id) == (123450, 4938, "1")  # 4 %, floored
    assert (part2.amount_kopecks, part2.cashback_kopecks, part2.status) == (60000, 2400, pb.PURCHASE_STATUS_CONFIRMED)
    bad = await rpc_error(stack.admitad(secret="nope", order_id=oid, status="approved", order_sum="1"))
    assert error_info(bad).reason == "SIGNATURE_INVALID"
    too_precise = await rpc_error(stack.admitad(order_id=oid, status="approved", order_sum="1.005", subid=click))
    assert error_info(too_precise).reason == "POSTBACK_MALFORMED"


async def test_unattributed_purchase_is_stored_and_a_claim_links_it(stack):
    oid = order()
    answer = await stack.direct(order_id=oid, partner_id="labirint", status="approved", amount_kopecks=100000)
    assert answer.outcome == pb.POSTBACK_OUTCOME_UNATTRIBUTED
    purchase = await stack.purchase(answer.purchase_id)
    assert purchase.user_id == "" and purchase.decision.reason == pb.DECISION_REASON_UNATTRIBUTED
    assert purchase.cashback_kopecks == 0 and purchase.decision.computed_kopecks == 6000

    user = await stack.sign_up()
    claim = (await stack.tracking.FileClaim(pb.FileClaimRequest(
        user_id=user.user_id, partner_id="labirint", order_id=oid, order_date="2025-12-30", amount_kopecks=100000,
        comment="bought a book"))).claim
    assert claim.status == pb.CLAIM_STATUS_OPEN
    again = await rpc_error(stack.tracking.FileClaim(pb.FileClaimRequest(
        user_id=user.user_id, partner_id="labirint", order_id=oid, order_date="2025-12-30", amount_kopecks=100000)))
    assert again.code() == grpc.StatusCode.ALREADY_EXISTS
    approved = (await stack.tracking.ApproveClaim(pb.ApproveClaimRequest(claim_id=claim.claim_id,
                                                                         decided_by="support-1"))).claim
    assert approved.status == pb.CLAIM_STATUS_APPROVED and approved.purchase_id == answer.purchase_id
    linked = await stack.purchase(answer.purchase_id)
    assert linked.user_id == user.user_id and linked.cashback_kopecks == 6000
    decided = await rpc_error(stack.tracking.RejectClaim(pb.RejectClaimRequest(claim_id=claim.claim_id,
                                                                               reason="late")))
    assert error_info(decided).reason == "CLAIM_ALREADY_DECIDED"
    stack.clock.advance(DAY)
    await stack.wait_balance(user.user_id, 6000)


async def test_claim_without_a_postback_creates_a_purchase_or_is_rejected(stack):
    user = await stack.sign_up()
    filed = []
    for _ in range(2):
        filed.append((await stack.tracking.FileClaim(pb.FileClaimRequest(
            user_id=user.user_id, partner_id="restoclub", order_id=order(), order_date="2025-12-31",
            amount_kopecks=500000))).claim)
        stack.clock.advance(timedelta(seconds=1))
    approved = (await stack.tracking.ApproveClaim(pb.ApproveClaimRequest(claim_id=filed[0].claim_id))).claim
    rejected = (await stack.tracking.RejectClaim(pb.RejectClaimRequest(
        claim_id=filed[1].claim_id, decided_by="support-1", reason="no such order"))).claim
    assert rejected.status == pb.CLAIM_STATUS_REJECTED and rejected.decision_reason == "no such order"
    assert (await stack.purchase(approved.purchase_id)).cashback_kopecks == 15000
    listed = (await stack.tracking.ListClaims(pb.ListClaimsRequest(user_id=user.user_id))).claims
    assert [c.claim_id for c in listed] == [filed[1].claim_id, filed[0].claim_id]
    stack.clock.advance(DAY)
    await stack.wait_balance(user.user_id, 15000)


async def test_amount_corrections_and_a_replay_that_must_not_undo_them(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    oid = order()
    first = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=100000)
    stack.clock.advance(timedelta(seconds=1))
    corrected = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=80000)
    assert corrected.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    purchase = await stack.purchase(first.purchase_id)
    assert (purchase.amount_kopecks, purchase.cashback_kopecks) == (80000, 5600)
    # The first report's bytes again (a network retry, delivered late): a duplicate, undoes nothing.
    replay = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=100000,
                                event_time=(stack.clock.now() - timedelta(seconds=1)).isoformat())
    assert replay.outcome == pb.POSTBACK_OUTCOME_DUPLICATE
    assert (await stack.purchase(first.purchase_id)).amount_kopecks == 80000
    stack.clock.advance(timedelta(seconds=1))
    back = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=100000)
    assert back.outcome == pb.POSTBACK_OUTCOME_ACCEPTED  # a newer correction back is no duplicate
    approved = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=90000)
    assert approved.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    assert (await stack.purchase(first.purchase_id)).cashback_kopecks == 6300
    stack.clock.advance(DAY)
    await stack.wait_status(first.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    await stack.wait_balance(user.user_id, 6300)
    # A higher amount after crediting is accepted: the difference is credited, once.
    raised = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=95000)
    assert raised.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    again = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=95000)
    assert again.outcome == pb.POSTBACK_OUTCOME_DUPLICATE
    await stack.wait_balance(user.user_id, 6650)
    purchase = await stack.purchase(first.purchase_id)
    assert (purchase.status, purchase.credited_kopecks) == (pb.PURCHASE_STATUS_ACCRUED, 6650)


async def test_the_newest_report_decides_and_an_older_one_is_superseded(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    oid = order()
    t0 = stack.clock.now()
    approved = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=100000)
    older = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=100000,
                               event_time=(t0 - timedelta(minutes=5)).isoformat())
    assert older.outcome == pb.POSTBACK_OUTCOME_SUPERSEDED
    assert (await stack.purchase(approved.purchase_id)).status == pb.PURCHASE_STATUS_CONFIRMED
    stack.clock.advance(timedelta(seconds=1))
    declined = await stack.direct(order_id=oid, click_id=click, status="declined", amount_kopecks=100000)
    assert declined.outcome == pb.POSTBACK_OUTCOME_REJECTED
    assert (await stack.purchase(approved.purchase_id)).status == pb.PURCHASE_STATUS_REJECTED
    replayed = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=100000,
                                  event_time=t0.isoformat())
    assert replayed.outcome == pb.POSTBACK_OUTCOME_DUPLICATE  # an old message delivered late
    stack.clock.advance(timedelta(seconds=1))
    reapproved = await stack.direct(order_id=oid, click_id=click, status="approved", amount_kopecks=90000)
    assert reapproved.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    history = (await stack.tracking.GetPurchase(pb.GetPurchaseRequest(purchase_id=approved.purchase_id))).reports
    assert [(r.status, r.superseded) for r in history] == [  # in the shop's order of events
        (pb.PURCHASE_STATUS_PENDING, True), (pb.PURCHASE_STATUS_CONFIRMED, False),
        (pb.PURCHASE_STATUS_REJECTED, False), (pb.PURCHASE_STATUS_CONFIRMED, False)]
    stack.clock.advance(DAY)
    await stack.wait_status(approved.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    await stack.wait_balance(user.user_id, 6300)
    assert await stack.pending(user.user_id) == 0



async def test_pending_purchase_expires_after_90_days(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    answer = await stack.direct(order_id=order(), click_id=click, status="pending", amount_kopecks=100000)
    stack.clock.advance(timedelta(days=89))
    await asyncio.sleep(0.05)
    assert (await stack.purchase(answer.purchase_id)).status == pb.PURCHASE_STATUS_PENDING
    stack.clock.advance(DAY)
    await stack.wait_status(answer.purchase_id, pb.PURCHASE_STATUS_EXPIRED)
    assert await stack.pending(user.user_id) == 0


async def test_zero_cashback_purchase_accrues_without_a_transfer(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id, "labirint")
    answer = await stack.direct(order_id=order(), click_id=click, status="approved", amount_kopecks=4999)
    assert (await stack.purchase(answer.purchase_id)).decision.reason == pb.DECISION_REASON_BELOW_MINIMUM
    stack.clock.advance(DAY)
    await stack.wait_status(answer.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    missing = await rpc_error(stack.ledger.GetTransfer(ledger_pb2.GetTransferRequest(
        transfer_id=f"cashback:{answer.purchase_id}")))
    assert missing.code() == grpc.StatusCode.NOT_FOUND


async def test_referrer_earns_30_roubles_once_on_the_first_credited_purchase(stack):
    referrer = await stack.sign_up()
    friend = await stack.sign_up(referral_code=referrer.referral_code)
    click = await stack.click(friend.user_id)
    ids = [(await stack.direct(order_id=order(), click_id=click, status="approved", amount_kopecks=10000 * (i + 1)))
           .purchase_id for i in range(2)]
    stack.clock.advance(DAY)
    for pid in ids:
        await stack.wait_status(pid, pb.PURCHASE_STATUS_ACCRUED)
    await stack.wait_balance(friend.user_id, 700 + 1400)
    await stack.wait_balance(referrer.user_id, 3000)
    third = await stack.direct(order_id=order(), click_id=click, status="approved", amount_kopecks=10000)
    stack.clock.advance(DAY)
    await stack.wait_status(third.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    await stack.wait_balance(friend.user_id, 2800)
    assert await stack.balance(referrer.user_id) == 3000


async def test_service_activation_is_credited_once(stack):
    user = await stack.sign_up()
    request = pb.ReportServiceActivationRequest(activation_id=f"act-{uuid.uuid4()}", user_id=user.user_id,
                                                service_code="music")
    first = await stack.tracking.ReportServiceActivation(request)
    again = await stack.tracking.ReportServiceActivation(request)
    assert not first.already_existed and again.already_existed
    assert first.purchase.purchase_id == again.purchase.purchase_id
    assert first.purchase.decision.reason == pb.DECISION_REASON_FIXED_SERVICE_REWARD
    assert first.purchase.status == pb.PURCHASE_STATUS_CONFIRMED  # credited the day after, like a purchase
    await asyncio.sleep(0.1)
    assert await stack.balance(user.user_id) == 0
    # Unsubscribing and subscribing again the same month earns nothing more.
    farmed = await stack.tracking.ReportServiceActivation(pb.ReportServiceActivationRequest(
        activation_id=f"act-{uuid.uuid4()}", user_id=user.user_id, service_code="music"))
    assert (farmed.purchase.decision.reason, farmed.purchase.cashback_kopecks) == (
        pb.DECISION_REASON_SERVICE_ALREADY_REWARDED, 0)
    stack.clock.advance(DAY)
    await stack.wait_status(first.purchase.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    await stack.wait_status(farmed.purchase.purchase_id, pb.PURCHASE_STATUS_ACCRUED)
    await stack.wait_balance(user.user_id, 10000)
    transfer = (await stack.ledger.GetTransfer(ledger_pb2.GetTransferRequest(
        transfer_id=f"activation:{request.activation_id}"))).transfer
    assert transfer.kind == ledger_pb2.TRANSFER_KIND_SERVICE_ACTIVATION
    unknown = await rpc_error(stack.tracking.ReportServiceActivation(pb.ReportServiceActivationRequest(
        activation_id="x", user_id=user.user_id, service_code="karaoke")))
    assert error_info(unknown).reason == "SERVICE_UNKNOWN"


async def test_purchases_are_listed_newest_first_with_a_status_filter_and_pages(stack):
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    ids = []
    for status in ("pending", "approved", "pending"):
        ids.append((await stack.direct(order_id=order(), click_id=click, status=status,
                                       amount_kopecks=10000)).purchase_id)
        stack.clock.advance(timedelta(seconds=1))
    page = await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id, page_size=2))
    rest = await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id, page_size=2,
                                                                      page_token=page.next_page_token))
    assert [p.purchase_id for p in [*page.purchases, *rest.purchases]] == ids[::-1] and not rest.next_page_token
    confirmed = await stack.tracking.ListPurchases(pb.ListPurchasesRequest(user_id=user.user_id,
                                                                           status=pb.PURCHASE_STATUS_CONFIRMED))
    assert [p.purchase_id for p in confirmed.purchases] == [ids[1]]


@pytest.fixture
def changed_catalogue(tmp_path) -> Path:
    """The seeded catalogue with AliExpress at 10 % instead of 7 %."""
    data = json.loads(Path(DEFAULT_CATALOGUE).read_text(encoding="utf-8"))
    ali = next(p for p in data["partners"] if p["slug"] == "aliexpress")
    ali["rules"]["tiers"][0]["rate_bps"] = 1000
    changed = tmp_path / "catalogue.json"
    changed.write_text(json.dumps(data))
    return changed


async def test_changed_terms_make_a_new_version_and_purchases_keep_theirs(stack, start_service, changed_catalogue):
    user = await stack.sign_up()
    click = await stack.click(user.user_id)
    oid = order()
    first = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=100000)
    assert (await stack.purchase(first.purchase_id)).decision.rule_version == 1
    # A second replica on the same database starts with the new terms (and seeds idempotently).
    for _ in range(2):
        replica = await start_service("tracking", clock=stack.clock, database_url=stack.database_url,
                                      catalogue_path=str(changed_catalogue), ledger_address="127.0.0.1:1",
                                      identity_address="127.0.0.1:1", redis_prefix=f"test-tracking:{uuid.uuid4()}:")
    channel = open_channel(replica.address)
    try:
        other = tracking_pb2_grpc.TrackingServiceStub(channel)
        rules = (await other.GetPartner(pb.GetPartnerRequest(partner_id="aliexpress"))).partner.rules
        assert (rules.version, rules.tiers[0].rate_bps) == (2, 1000)
    finally:
        await channel.close()
    corrected = await stack.direct(order_id=oid, click_id=click, status="pending", amount_kopecks=200000)
    assert corrected.outcome == pb.POSTBACK_OUTCOME_ACCEPTED
    purchase = await stack.purchase(first.purchase_id)
    assert (purchase.decision.rule_version, purchase.cashback_kopecks) == (1, 14000)  # still 7 %


async def test_with_redis_off_the_database_alone_keeps_concurrent_copies_to_one_purchase(start_service):
    clock = FrozenClock()
    tracking = await start_service("tracking", clock=clock, redis_url="off", ledger_address="127.0.0.1:1",
                                   identity_address="127.0.0.1:1")
    channel = open_channel(tracking.address)
    try:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        body = json.dumps({"order_id": order(), "partner_id": "ozon", "status": "approved", "amount_kopecks": 5000,
                           "currency": "RUB", "event_time": clock.now().isoformat()}).encode()
        request = pb.IngestPostbackRequest(network="direct", http_method="POST", body=body, headers={
            "x-cashback-signature": sign("dev-direct-secret", int(clock.now().timestamp()), body)})
        answers = await asyncio.gather(*(stub.IngestPostback(request) for _ in range(20)))
    finally:
        await channel.close()
    outcomes = [a.outcome for a in answers]
    assert outcomes.count(pb.POSTBACK_OUTCOME_UNATTRIBUTED) == 1
    assert outcomes.count(pb.POSTBACK_OUTCOME_DUPLICATE) == 19
    assert len({a.purchase_id for a in answers}) == 1
