"""The seeded catalogue file (data/catalogue.json, written by data/generate_catalogue.py):
categories and partners with their terms, read into domain values. A partner may list `aliases`,
the other spellings people search for («Алиэкспресс» for AliExpress); `terms_text`, when the file
does not give it, is written from the rules in Russian (`terms_text`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.tracking.domain import RateType, RuleSet, RulesInvalid


@dataclass(frozen=True)
class CategorySpec:
    slug: str
    name: str
    position: int


@dataclass(frozen=True)
class PartnerSpec:
    slug: str
    name: str
    category: str
    description: str
    site_url: str
    rules: RuleSet
    terms_text: str
    service_code: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalogue:
    categories: list[CategorySpec]
    partners: list[PartnerSpec]


def load(path: str | Path) -> Catalogue:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    categories = [CategorySpec(c["slug"], c["name"], i) for i, c in enumerate(data["categories"])]
    known = {c.slug for c in categories}
    partners, seen = [], set()
    for raw in data["partners"]:
        slug = raw["slug"]
        if slug in seen:
            raise RulesInvalid(f"partner {slug} appears twice in the catalogue")
        if raw["category"] not in known:
            raise RulesInvalid(f"partner {slug} is in an unknown category {raw['category']}")
        seen.add(slug)
        rules = RuleSet.from_dict(raw["rules"])
        partners.append(PartnerSpec(
            slug=slug, name=raw["name"], category=raw["category"], description=raw.get("description", ""),
            site_url=raw["site_url"], rules=rules, terms_text=raw.get("terms_text") or terms_text(rules),
            service_code=raw.get("service_code"), aliases=tuple(raw.get("aliases", ())),
        ))
    return Catalogue(categories, partners)


# --- the terms as the user reads them -----------------------------------------------------------

def roubles(kopecks: int) -> str:
    """150000 → "1 500 ₽", 5050 → "50,50 ₽" (exact; no-break spaces, never a line break inside)."""
    whole, part = divmod(kopecks, 100)
    text = f"{whole:,}".replace(",", "\u00a0")
    return f"{text},{part:02d}\u00a0₽" if part else f"{text}\u00a0₽"


def percent(bps: int) -> str:
    """700 → "7 %", 250 → "2,5 %"."""
    whole, part = divmod(bps, 100)
    text = str(whole) if part == 0 else f"{whole},{part:02d}".rstrip("0")
    return f"{text}\u00a0%"


def terms_text(rules: RuleSet) -> str:
    """The terms as shown to the user, in one paragraph of Russian."""
    parts = []
    for i, tier in enumerate(rules.tiers):
        rate = roubles(tier.fixed_kopecks) if tier.rate_type is RateType.FIXED else percent(tier.rate_bps)
        if len(rules.tiers) == 1:
            parts.append(f"{rate} за покупку" if tier.rate_type is RateType.FIXED else f"{rate} от суммы покупки")
        elif i == 0:
            parts.append(f"{rate} за покупку до {roubles(rules.tiers[1].min_amount_kopecks)}")
        else:
            parts.append(f"{rate} — от {roubles(tier.min_amount_kopecks)}")
    text = "Кэшбэк: " + ", ".join(parts) + "."
    if rules.cap_kopecks:
        text += f" Не больше {roubles(rules.cap_kopecks)} за одну покупку."
    if rules.min_purchase_kopecks:
        text += f" За покупку меньше {roubles(rules.min_purchase_kopecks)} кэшбэка нет."
    if rules.excluded_domains:
        text += f" За покупки после перехода на {', '.join(rules.excluded_domains)} кэшбэка нет."
    text += (" Заказы в мобильном приложении магазина тоже приносят кэшбэк." if rules.app_orders_allowed
             else " Заказы в мобильном приложении магазина кэшбэк не приносят.")
    if rules.exclusive_loyalty:
        text += " Если в заказе потрачены бонусы или мили самого магазина, кэшбэка нет."
    if rules.legal_entities_excluded:
        text += " Покупки юридических лиц кэшбэк не приносят."
    return text + " Кэшбэк меньше 1\u00a0₽ не начисляется."
