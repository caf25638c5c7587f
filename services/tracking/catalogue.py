"""The seeded catalogue file (data/catalogue.json, written by data/generate_catalogue.py):
categories and partners with their terms, read into domain values."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from services.tracking.domain import RuleSet, RulesInvalid, describe


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
            site_url=raw["site_url"], rules=rules, terms_text=raw.get("terms_text") or describe(rules),
            service_code=raw.get("service_code"),
        ))
    return Catalogue(categories, partners)
