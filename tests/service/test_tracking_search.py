"""The Russian catalogue and its search, over real gRPC on a real database: a shop is found by its
Russian or Latin name, by transliteration and with a typo or two, best match first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cashback.tracking.v1 import tracking_pb2 as pb
from cashback.tracking.v1 import tracking_pb2_grpc
from sqlalchemy import func, update

from services.common.db import Database
from services.common.grpc_client import open_channel
from services.tracking.config import DEFAULT_CATALOGUE
from services.tracking.models import Partner

NOT_CALLED = {"ledger_address": "127.0.0.1:1", "identity_address": "127.0.0.1:1"}  # the catalogue needs neither


@pytest.fixture
async def start_tracking(start_service):
    channels = []

    async def _start(**overrides) -> tuple[tracking_pb2_grpc.TrackingServiceStub, str]:
        service = await start_service("tracking", **NOT_CALLED, **overrides)
        channels.append(open_channel(service.address))
        return tracking_pb2_grpc.TrackingServiceStub(channels[-1]), service.settings.database_url

    yield _start
    for channel in channels:
        await channel.close()


@pytest.fixture
async def tracking(start_tracking) -> tracking_pb2_grpc.TrackingServiceStub:
    return (await start_tracking())[0]


async def search(tracking, query: str, **more) -> pb.ListPartnersResponse:
    return await tracking.ListPartners(pb.ListPartnersRequest(query=query, **more))


async def first(tracking, query: str) -> str:
    found = await search(tracking, query)
    assert found.partners, f"nothing found for {query!r}"
    return found.partners[0].partner_id


SPELLINGS = [
    # as the shop is named
    ("Лабиринт", "labirint"), ("М.Видео", "mvideo"), ("Эльдорадо", "eldorado"), ("Спортмастер", "sportmaster"),
    ("Ozon", "ozon"), ("AliExpress", "aliexpress"), ("Золотое яблоко", "goldapple"),
    # the other script, transliterated either way
    ("озон", "ozon"), ("алиэкспресс", "aliexpress"), ("labirint", "labirint"), ("mvideo", "mvideo"),
    ("eldorado", "eldorado"), ("sportmaster", "sportmaster"), ("тмолл", "tmall"), ("хофф", "hoff"),
    ("ситилинк", "citilink"), ("citylink", "citilink"), ("вайлдберриз", "wildberries"),
    # one typo or two, any case
    ("ОЗОМ", "ozon"), ("алиекспрес", "aliexpress"), ("aliexpres", "aliexpress"), ("alixepress", "aliexpress"),
    ("лаберинт", "labirint"), ("эльдарадо", "eldorado"), ("спортмастр", "sportmaster"), ("м видео", "mvideo"),
    ("спртмастр", "sportmaster"),
    # the start of a name
    ("али", "aliexpress"), ("ALIEXP", "aliexpress"), ("спорт", "sportmaster"),
]


async def test_a_shop_is_found_first_by_any_spelling_people_type(tracking):
    found = {query: (await search(tracking, query)).partners for query, _ in SPELLINGS}
    misses = {query: [p.partner_id for p in found[query][:3]] for query, slug in SPELLINGS
              if not found[query] or found[query][0].partner_id != slug}
    assert misses == {}


async def test_the_exact_name_comes_before_names_that_merely_resemble_it(tracking):
    found = await search(tracking, "Tmall", page_size=100)
    ids = [p.partner_id for p in found.partners]
    assert ids[0] == "tmall" and found.total_size == len(ids) > 1  # "Smart Mall" follows
    urban = await search(tracking, "урбан", page_size=100)  # Latin names found by a Cyrillic query
    assert urban.partners and all(p.name.startswith("Urban ") for p in urban.partners)


async def test_a_search_matches_nothing_unrelated(tracking):
    for query in ("xyzzy", "qwertyuiop", "ъъъ", "!!!"):
        found = await search(tracking, query)
        assert (found.total_size, list(found.partners)) == (0, []), query


async def test_search_results_page_within_a_category(tracking):
    everything = await search(tracking, "мир", page_size=100)
    assert everything.total_size > 20
    pages, token = [], ""
    while True:
        page = await search(tracking, "мир", page_size=7, page_token=token)
        pages.extend(p.partner_id for p in page.partners)
        assert page.total_size == everything.total_size
        if not (token := page.next_page_token):
            break
    assert pages == [p.partner_id for p in everything.partners]  # the same order, nothing twice
    kids = await search(tracking, "мир", category_id="kids", page_size=100)
    assert 0 < kids.total_size < everything.total_size and all(p.category_id == "kids" for p in kids.partners)
    assert {p.partner_id for p in kids.partners} <= set(pages)


async def test_categories_are_russian_and_keep_their_partner_counts(tracking):
    categories = (await tracking.ListCategories(pb.ListCategoriesRequest())).categories
    names = {c.category_id: c.name for c in categories}
    assert names["online-shops"] == "Интернет-магазины" and names["travel"] == "Путешествия"
    assert names["restaurant-booking"] == "Бронирование ресторанов"
    counts = {c.category_id: c.partner_count for c in categories}
    assert sum(counts.values()) == (await tracking.ListPartners(pb.ListPartnersRequest())).total_size >= 780
    for category in ("books", "operator-services"):
        listed = await tracking.ListPartners(pb.ListPartnersRequest(category_id=category, page_size=100))
        assert listed.total_size == counts[category] > 0
    ali = (await tracking.GetPartner(pb.GetPartnerRequest(partner_id="aliexpress"))).partner
    assert ali.name == "AliExpress" and ali.description.startswith("Товары")


def english_catalogue(path: Path) -> Path:
    """The seed as it was before the Russian catalogue: English names, no aliases, English terms."""
    data = json.loads(Path(DEFAULT_CATALOGUE).read_text(encoding="utf-8"))
    english = {"ozon": "Ozon", "labirint": "Labirint", "eldorado": "Eldorado", "leroymerlin": "Leroy Merlin"}
    data["categories"] = [{**c, "name": c["slug"].replace("-", " ").title()} for c in data["categories"]]
    for p in data["partners"]:
        p["name"] = english.get(p["slug"], p["name"])
        p.pop("aliases", None)
        p["description"], p["terms_text"] = "Goods.", "Cashback: 4% of the purchase."
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


async def as_the_old_code_wrote_it(database_url: str) -> None:
    """search_text as the seed wrote it before: the lower-cased name and slug."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            await session.execute(update(Partner).values(search_text=func.lower(Partner.name + " " + Partner.slug)))
    finally:
        await db.dispose()


async def test_reseeding_a_database_with_the_old_english_names_updates_them(start_tracking, tmp_path):
    _, database_url = await start_tracking(catalogue_path=str(english_catalogue(tmp_path / "catalogue.json")))
    await as_the_old_code_wrote_it(database_url)
    # The next start (any replica) seeds the current catalogue into the same database.
    new, _ = await start_tracking(database_url=database_url)
    labirint = (await new.GetPartner(pb.GetPartnerRequest(partner_id="labirint"))).partner
    assert (labirint.name, labirint.rules.version) == ("Лабиринт", 1)  # same terms: same version
    assert labirint.terms_text.startswith("Кэшбэк: 6\u00a0% от суммы покупки.")
    assert labirint.description == "Книги, канцелярия и настольные игры."
    for query, slug in (("labirint", "labirint"), ("озон", "ozon"), ("алиэкспресс", "aliexpress"),
                        ("лемана", "leroymerlin")):  # the last one only an alias finds
        assert await first(new, query) == slug
    categories = (await new.ListCategories(pb.ListCategoriesRequest())).categories
    assert {c.category_id: c.name for c in categories}["books"] == "Книги и хобби"
