"""How a purchase's facts, decision and terms are kept in its row: one place for the use cases."""

from __future__ import annotations

import functools

from services.tracking.domain import Channel, CustomerType, Decision, PurchaseFacts, RuleSet
from services.tracking.models import Partner, Purchase


def facts_of(p: Purchase) -> PurchaseFacts:
    return PurchaseFacts(p.amount_kopecks, Channel(p.channel), CustomerType(p.customer_type), p.destination_domain,
                         p.other_loyalty_used)


def decision_of(p: Purchase) -> Decision:
    return Decision.from_json(p.decision_json)


def rules_of(partner: Partner) -> RuleSet:
    return parsed_rules(partner.rules_json, partner.rule_version)


@functools.lru_cache(maxsize=1024)
def parsed_rules(rules_json: str, version: int) -> RuleSet:
    """A rule set is a pure function of its stored JSON (RuleSet is immutable): parsed once."""
    return RuleSet.from_json(rules_json, version)


def facts_columns(facts: PurchaseFacts) -> dict[str, object]:
    return {"amount_kopecks": facts.amount_kopecks, "channel": facts.channel.value,
            "customer_type": facts.customer_type.value, "destination_domain": facts.destination_domain[:253],
            "other_loyalty_used": facts.other_loyalty_used}


def decision_columns(decision: Decision) -> dict[str, object]:
    return {"decision_json": decision.to_json(), "cashback_kopecks": decision.cashback_kopecks,
            "rule_version": decision.rule_version}


def set_facts(purchase: Purchase, facts: PurchaseFacts) -> None:
    for name, value in facts_columns(facts).items():
        setattr(purchase, name, value)


def set_decision(purchase: Purchase, decision: Decision) -> None:
    for name, value in decision_columns(decision).items():
        setattr(purchase, name, value)
