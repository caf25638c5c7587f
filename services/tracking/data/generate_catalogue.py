"""Writes catalogue.json next to this file: the seeded partner catalogue. Deterministic (a fixed
seed), run once and the output committed; edit the named partners here and re-run to change it.

    python services/tracking/data/generate_catalogue.py

Tiers: `rate_bps` (percent in basis points, 100 = 1 %) or `fixed_kopecks`, from `min_amount_kopecks` up.
Partners with `service_code` are the operator's own services: a billing activation credits their
fixed amount (ReportServiceActivation).
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

OUT = Path(__file__).with_name("catalogue.json")
TARGET_PARTNERS = 800

CATEGORIES = [
    ("online-shops", "Online shops"),
    ("electronics", "Electronics and appliances"),
    ("fashion", "Clothes and shoes"),
    ("home", "Home and garden"),
    ("beauty", "Beauty and health"),
    ("kids", "Kids"),
    ("books", "Books and hobbies"),
    ("food", "Groceries and food delivery"),
    ("travel", "Travel"),
    ("restaurant-booking", "Restaurant booking"),
    ("leisure", "Leisure and entertainment"),
    ("education", "Education"),
    ("operator-services", "Operator services"),
]


def pct(bps: int, **more: object) -> dict[str, object]:
    return {"tiers": [{"min_amount_kopecks": 0, "rate_bps": bps}], "legal_entities_excluded": True, **more}


NAMED = [
    {"slug": "aliexpress", "name": "AliExpress", "category": "online-shops", "site_url": "https://aliexpress.ru/",
     "description": "Goods from China and the whole world.",
     "rules": pct(700, cap_kopecks=200000, app_orders_allowed=True, excluded_domains=["tmall.ru"])},
    {"slug": "ozon", "name": "Ozon", "category": "online-shops", "site_url": "https://www.ozon.ru/",
     "description": "Marketplace: everything from books to appliances.",
     "rules": pct(400, exclusive_loyalty=True)},
    {"slug": "labirint", "name": "Labirint", "category": "books", "site_url": "https://www.labirint.ru/",
     "description": "Books, stationery and games.", "rules": pct(600, min_purchase_kopecks=5000)},
    {"slug": "tmall", "name": "Tmall", "category": "online-shops", "site_url": "https://tmall.ru/",
     "description": "Brand stores.", "rules": pct(300)},
    {"slug": "eldorado", "name": "Eldorado", "category": "electronics", "site_url": "https://www.eldorado.ru/",
     "description": "Electronics and household appliances.",
     "rules": {"tiers": [{"min_amount_kopecks": 0, "rate_bps": 200},
                         {"min_amount_kopecks": 2000000, "rate_bps": 300},
                         {"min_amount_kopecks": 5000000, "rate_bps": 400}], "cap_kopecks": 500000}},
    {"slug": "ostrovok", "name": "Ostrovok", "category": "travel", "site_url": "https://ostrovok.ru/",
     "description": "Hotels all over the world.",
     "rules": {"tiers": [{"min_amount_kopecks": 0, "rate_bps": 300},
                         {"min_amount_kopecks": 3000000, "rate_bps": 500}], "app_orders_allowed": False}},
    {"slug": "tutu", "name": "Tutu.ru", "category": "travel", "site_url": "https://www.tutu.ru/",
     "description": "Train and bus tickets.", "rules": {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 5000}]}},
    {"slug": "restoclub", "name": "Restoclub", "category": "restaurant-booking", "site_url": "https://www.restoclub.ru/",
     "description": "Book a table.", "rules": {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 15000}]}},
    {"slug": "kassir", "name": "Kassir.ru", "category": "leisure", "site_url": "https://www.kassir.ru/",
     "description": "Concert and theatre tickets.",
     "rules": {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 10000},
                         {"min_amount_kopecks": 500000, "rate_bps": 300}]}},
    {"slug": "operator-music", "name": "Operator Music", "category": "operator-services", "service_code": "music",
     "site_url": "https://music.example-operator.ru/", "description": "Music streaming subscription.",
     "rules": {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 10000}]}},
    {"slug": "operator-tv", "name": "Operator TV", "category": "operator-services", "service_code": "tv",
     "site_url": "https://tv.example-operator.ru/", "description": "Online TV and films subscription.",
     "rules": {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 15000}]}},
    {"slug": "operator-ringback", "name": "Operator Ringback Tone", "category": "operator-services",
     "service_code": "ringback", "site_url": "https://gudok.example-operator.ru/",
     "description": "A melody instead of the ringing tone.",
     "rules": {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 5000}]}},
]

WORDS = {
    "online-shops": (["Mega", "Best", "Smart", "Quick", "Daily", "Happy", "Grand", "Prime"],
                     ["Market", "Shop", "Store", "Bazaar", "Mall", "Deals", "Outlet", "Basket"]),
    "electronics": (["Techno", "Digital", "Volt", "Gadget", "Pixel", "Nano", "Hyper", "Circuit"],
                    ["Point", "World", "Zone", "Lab", "Hub", "Park", "Store", "Line"]),
    "fashion": (["Urban", "Style", "Chic", "Classic", "Street", "Velvet", "Cotton", "Denim"],
                ["Wear", "Look", "Boutique", "Shoes", "Closet", "Atelier", "Trend", "Fashion"]),
    "home": (["Cozy", "Green", "Home", "Garden", "Comfort", "Wood", "Stone", "Sunny"],
             ["House", "Decor", "Interiors", "Tools", "Furniture", "Yard", "Nest", "Living"]),
    "beauty": (["Pure", "Bella", "Glow", "Fresh", "Silk", "Aroma", "Natura", "Vita"],
               ["Cosmetics", "Beauty", "Pharmacy", "Care", "Spa", "Skin", "Lab", "Health"]),
    "kids": (["Little", "Happy", "Tiny", "Bright", "Merry", "Sunny", "Teddy", "Magic"],
             ["Kids", "Toys", "World", "Steps", "Land", "Baby", "Planet", "Castle"]),
    "books": (["Read", "Page", "Ink", "Paper", "Story", "Hobby", "Craft", "Art"],
              ["Books", "House", "Corner", "Shelf", "Club", "Store", "Studio", "Supply"]),
    "food": (["Fresh", "Farm", "Tasty", "Green", "Daily", "Gourmet", "Local", "Quick"],
             ["Food", "Grocery", "Kitchen", "Delivery", "Box", "Market", "Bakery", "Table"]),
    "travel": (["Sky", "Sea", "Road", "Globe", "Sun", "North", "Star", "Wind"],
               ["Travel", "Tours", "Hotels", "Tickets", "Trips", "Booking", "Air", "Cruise"]),
    "restaurant-booking": (["Table", "Chef", "Dine", "Taste", "City", "Bistro", "Grill", "Feast"],
                           ["Booking", "Tables", "Reserve", "Guide", "Club", "Spot", "Place", "Night"]),
    "leisure": (["Fun", "Event", "Show", "Play", "Star", "Happy", "Wild", "Epic"],
                ["Tickets", "Park", "Games", "Arena", "Quest", "Cinema", "Club", "Time"]),
    "education": (["Smart", "Bright", "Skill", "Code", "Lingua", "Mind", "Study", "Next"],
                  ["School", "Academy", "Courses", "Lab", "Campus", "Tutor", "Class", "Up"]),
}


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def generated_rules(rng: random.Random) -> dict[str, object]:
    shape = rng.random()
    rules: dict[str, object]
    if shape < 0.12:
        rules = {"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": rng.choice([3000, 5000, 10000, 20000, 30000])}]}
    elif shape < 0.27:
        low = rng.choice([100, 150, 200, 300, 400])
        rules = {"tiers": [{"min_amount_kopecks": 0, "rate_bps": low},
                           {"min_amount_kopecks": rng.choice([500000, 1000000, 2000000]),
                            "rate_bps": low + rng.choice([100, 200, 300])}]}
    else:
        rules = {"tiers": [{"min_amount_kopecks": 0, "rate_bps": rng.choice(
            [100, 200, 250, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000])}]}
    if rng.random() < 0.25:
        rules["cap_kopecks"] = rng.choice([50000, 100000, 200000, 300000, 500000])
    if rng.random() < 0.2:
        rules["min_purchase_kopecks"] = rng.choice([5000, 10000, 30000, 50000, 100000])
    rules["app_orders_allowed"] = rng.random() < 0.3
    rules["exclusive_loyalty"] = rng.random() < 0.1
    rules["legal_entities_excluded"] = True
    return rules


def main() -> None:
    rng = random.Random(780)
    partners = [dict(p) for p in NAMED]
    seen = {p["slug"] for p in partners}
    cats = list(WORDS)
    while len(partners) < TARGET_PARTNERS:
        category = cats[len(partners) % len(cats)]
        first, second = WORDS[category]
        name = f"{rng.choice(first)} {rng.choice(second)}"
        slug = slugify(name)
        if slug in seen:
            name, slug = f"{name} {len(partners)}", f"{slug}-{len(partners)}"
        seen.add(slug)
        partners.append({
            "slug": slug, "name": name, "category": category, "site_url": f"https://{slug}.example.ru/",
            "description": f"{name}: {dict(CATEGORIES)[category].lower()}.", "rules": generated_rules(rng),
        })
    data = {"categories": [{"slug": s, "name": n} for s, n in CATEGORIES], "partners": partners}
    OUT.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {len(partners)} partners in {len(CATEGORIES)} categories to {OUT}")


if __name__ == "__main__":
    main()
