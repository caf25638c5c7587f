"""The rules engine: every rule with its seed example, rounding edges, the lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.tracking import domain
from services.tracking.catalogue import load
from services.tracking.config import DEFAULT_CATALOGUE
from services.tracking.domain import (
    Channel,
    CustomerType,
    DecisionReason,
    Effect,
    PurchaseFacts,
    PurchaseStatus,
    ReportedStatus,
    RuleSet,
    decide,
)

CATALOGUE = {p.slug: p for p in load(DEFAULT_CATALOGUE).partners}


def rules(slug: str) -> RuleSet:
    return CATALOGUE[slug].rules


def test_catalogue_has_at_least_780_partners_in_categories():
    assert len(CATALOGUE) >= 780
    assert {"online-shops", "travel", "restaurant-booking", "leisure", "operator-services"} <= {
        p.category for p in CATALOGUE.values()}


def test_percent_is_floored_to_whole_kopecks():
    r = RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 0, "rate_bps": 333}]})
    d = decide(r, PurchaseFacts(10_001))  # 10001 * 333 / 10000 = 333.0333
    assert (d.reason, d.computed_kopecks, d.cashback_kopecks) == (DecisionReason.RATE_APPLIED, 333, 333)
    assert decide(r, PurchaseFacts(30_029)).cashback_kopecks == 999  # 999.9657 floors, never rounds up


def test_aliexpress_cap_is_2000_roubles_per_purchase():
    d = decide(rules("aliexpress"), PurchaseFacts(5_000_000))  # 7 % of 50 000 roubles = 3 500
    assert d.reason is DecisionReason.CAP_APPLIED
    assert (d.computed_kopecks, d.cashback_kopecks) == (350_000, 200_000)
    just_under = decide(rules("aliexpress"), PurchaseFacts(2_857_142))
    assert just_under.reason is DecisionReason.RATE_APPLIED and just_under.cashback_kopecks == 199_999


def test_jump_from_aliexpress_to_tmall_earns_nothing():
    for host in ("tmall.ru", "www.TMALL.ru", "tmall.ru."):
        d = decide(rules("aliexpress"), PurchaseFacts(100_000, destination_domain=host))
        assert d.reason is DecisionReason.EXCLUDED_DESTINATION and d.cashback_kopecks == 0
    other = decide(rules("aliexpress"), PurchaseFacts(100_000, destination_domain="nottmall.ru"))
    assert other.cashback_kopecks == 7000


def test_app_orders_earn_only_where_the_partner_allows_them():
    assert decide(rules("aliexpress"), PurchaseFacts(100_000, channel=Channel.APP)).cashback_kopecks == 7000
    d = decide(rules("ozon"), PurchaseFacts(100_000, channel=Channel.APP))
    assert d.reason is DecisionReason.APP_ORDER and d.cashback_kopecks == 0


def test_ozon_exclusive_loyalty_other_bonuses_earn_nothing():
    d = decide(rules("ozon"), PurchaseFacts(100_000, other_loyalty_used=True))
    assert d.reason is DecisionReason.OTHER_LOYALTY_USED and d.cashback_kopecks == 0
    # Partners without exclusive loyalty ignore the flag.
    assert decide(rules("aliexpress"), PurchaseFacts(100_000, other_loyalty_used=True)).cashback_kopecks == 7000


def test_ozon_split_order_accrues_per_part_each_computed_on_its_own():
    parts = [PurchaseFacts(2_000), PurchaseFacts(2_600), PurchaseFacts(1_000_000)]  # 4 %
    decisions = [decide(rules("ozon"), p) for p in parts]
    assert [d.computed_kopecks for d in decisions] == [80, 104, 40_000]
    assert [d.cashback_kopecks for d in decisions] == [0, 104, 40_000]  # the first part is under 1 rouble
    assert decisions[0].reason is DecisionReason.UNDER_ONE_ROUBLE
    whole = decide(rules("ozon"), PurchaseFacts(sum(p.amount_kopecks for p in parts)))
    assert whole.cashback_kopecks == 40_184 != sum(d.cashback_kopecks for d in decisions)


def test_labirint_nothing_under_50_roubles():
    d = decide(rules("labirint"), PurchaseFacts(4_999))
    assert d.reason is DecisionReason.BELOW_MINIMUM and d.cashback_kopecks == 0
    at_minimum = decide(rules("labirint"), PurchaseFacts(5_000))  # 6 % of 50 roubles = 3 roubles
    assert at_minimum.reason is DecisionReason.RATE_APPLIED and at_minimum.cashback_kopecks == 300


def test_legal_entity_earns_nothing():
    d = decide(rules("aliexpress"), PurchaseFacts(100_000, customer_type=CustomerType.LEGAL_ENTITY))
    assert d.reason is DecisionReason.LEGAL_ENTITY and d.cashback_kopecks == 0


def test_cashback_under_one_rouble_is_not_credited():
    r = RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 0, "rate_bps": 100}]})
    under = decide(r, PurchaseFacts(9_999))  # 99.99 kopecks → 99
    assert under.reason is DecisionReason.UNDER_ONE_ROUBLE
    assert (under.computed_kopecks, under.cashback_kopecks) == (99, 0)
    exactly = decide(r, PurchaseFacts(10_000))
    assert exactly.reason is DecisionReason.RATE_APPLIED and exactly.cashback_kopecks == 100


def test_tiers_by_amount_pick_the_highest_reached():
    eldorado = rules("eldorado")  # 2 % / 3 % from 20 000 / 4 % from 50 000 roubles, cap 5 000
    assert decide(eldorado, PurchaseFacts(1_999_999)).tier_index == 0
    at = decide(eldorado, PurchaseFacts(2_000_000))
    assert (at.tier_index, at.cashback_kopecks) == (1, 60_000)
    top = decide(eldorado, PurchaseFacts(5_000_000))
    assert (top.tier_index, top.cashback_kopecks) == (2, 200_000)


def test_fixed_amount_and_mixed_tiers():
    d = decide(rules("restoclub"), PurchaseFacts(1_000))
    assert d.reason is DecisionReason.RATE_APPLIED and d.cashback_kopecks == 15_000
    kassir = rules("kassir")  # 100 roubles fixed, then 3 % from 5 000 roubles
    assert decide(kassir, PurchaseFacts(499_999)).cashback_kopecks == 10_000
    assert decide(kassir, PurchaseFacts(1_000_000)).cashback_kopecks == 30_000


def test_no_rate_above_80_percent_and_tiers_must_ascend():
    with pytest.raises(domain.RulesInvalid):
        RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 0, "rate_bps": 8001}]})
    RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 0, "rate_bps": 8000}]})
    with pytest.raises(domain.RulesInvalid):
        RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 0, "rate_bps": 100},
                                     {"min_amount_kopecks": 0, "rate_bps": 200}]})
    with pytest.raises(domain.RulesInvalid):
        RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 100, "rate_bps": 100}]})


def test_decision_carries_rule_version_and_survives_storage():
    r = RuleSet.from_json(rules("aliexpress").to_json(), version=3)
    d = decide(r, PurchaseFacts(12_345))
    assert d.rule_version == 3 and domain.Decision.from_json(d.to_json()) == d
    assert d.explanation.endswith(".") and "\n" not in d.explanation


def test_unattributed_says_what_it_would_have_earned_but_credits_nothing():
    d = domain.unattributed(rules("aliexpress"), PurchaseFacts(100_000))
    assert d.reason is DecisionReason.UNATTRIBUTED and (d.computed_kopecks, d.cashback_kopecks) == (7000, 0)


P, C, A, R, E = (PurchaseStatus.PENDING, PurchaseStatus.CONFIRMED, PurchaseStatus.ACCRUED, PurchaseStatus.REJECTED,
                 PurchaseStatus.EXPIRED)
T1, T2 = datetime(2026, 12, 1, 10, tzinfo=UTC), datetime(2026, 12, 1, 11, tzinfo=UTC)


@pytest.mark.parametrize(("status", "reported", "new_amount", "effect", "to"), [
    (P, ReportedStatus.PENDING, 100, Effect.NONE, P),
    (P, ReportedStatus.PENDING, 90, Effect.MOVE, P),
    (P, ReportedStatus.APPROVED, 90, Effect.MOVE, C),
    (P, ReportedStatus.DECLINED, 100, Effect.MOVE, R),
    (C, ReportedStatus.PENDING, 100, Effect.MOVE, P),  # the newest report decides, back to pending too
    (C, ReportedStatus.APPROVED, 80, Effect.MOVE, C),
    (C, ReportedStatus.DECLINED, 100, Effect.MOVE, R),
    (A, ReportedStatus.APPROVED, 100, Effect.NONE, A),
    (A, ReportedStatus.APPROVED, 80, Effect.MOVE, A),  # credited: the difference is reversed
    (A, ReportedStatus.DECLINED, 100, Effect.MOVE, R),  # credited: the cashback is reversed
    (R, ReportedStatus.APPROVED, 100, Effect.MOVE, C),  # re-approved by the shop
    (R, ReportedStatus.DECLINED, 100, Effect.NONE, R),
    (E, ReportedStatus.APPROVED, 100, Effect.SUPERSEDED, E),  # expiry is final
])
def test_the_newest_report_moves_the_purchase(status, reported, new_amount, effect, to):
    move = domain.apply_report(status, 100, T1, reported, new_amount, T2)
    assert (move.effect, move.status) == (effect, to)


def test_an_older_report_is_superseded_and_one_without_time_is_ordered_by_arrival():
    assert domain.apply_report(C, 100, T2, ReportedStatus.PENDING, 50, T1).effect is Effect.SUPERSEDED
    assert domain.apply_report(C, 100, T2, ReportedStatus.PENDING, 50, None).effect is Effect.MOVE
    assert domain.apply_report(C, 100, None, ReportedStatus.PENDING, 50, T1).effect is Effect.MOVE


def test_support_approval_is_not_undone_by_a_late_pending():
    assert domain.apply_report(A, 100, None, ReportedStatus.PENDING, 100, T2, support_approved=True).effect \
        is Effect.NONE
    assert domain.apply_report(A, 100, None, ReportedStatus.DECLINED, 100, T2, support_approved=True).status is R


@pytest.mark.parametrize(("status", "cashback", "credited", "due"), [
    (A, 500, 0, 500), (A, 300, 500, -200), (A, 700, 500, 200), (R, 500, 500, -500), (P, 500, 500, -500),
    (C, 500, 0, 0),
])
def test_what_a_purchase_owes_the_ledger(status, cashback, credited, due):
    assert domain.credit_due(status, cashback, credited) == due


def test_claim_amounts_agree_within_five_percent_or_a_rouble():
    assert domain.claim_amount_agrees(10_450, 10_000) and not domain.claim_amount_agrees(10_600, 10_000)
    assert domain.claim_amount_agrees(1_100, 1_000) and not domain.claim_amount_agrees(1_101, 1_000)
