"""The Russian catalogue file and the search keys, with no I/O."""

from __future__ import annotations

import re

import pytest

from services.tracking import search
from services.tracking.catalogue import load, terms_text
from services.tracking.config import DEFAULT_CATALOGUE
from services.tracking.domain import RuleSet
from services.tracking.models import Partner

CATALOGUE = load(DEFAULT_CATALOGUE)
PARTNERS = {p.slug: p for p in CATALOGUE.partners}
CYRILLIC = re.compile(r"[а-яё]", re.IGNORECASE)


@pytest.mark.parametrize(("spellings", "key"), [
    (["Ozon", "озон", "OZON", "Озон"], "ozon"),
    (["AliExpress", "алиэкспресс", "Алиекспресс", "aliexpres"], "aliekspres"),
    (["М.Видео", "m.video", "м видео"], "m video"),
    (["Эльдорадо", "eldorado"], "eldorado"),
    (["Hoff", "Хофф"], "hof"),
    (["Citilink", "Ситилинк"], "sitilink"),
    (["Л'Этуаль", "letual"], "letual"),
    (["Читай-город", "chitai gorod"], "chitai gorod"),
    (["Gloria Jeans", "Глория Джинс"], "gloria jins"),
    (["Café Pushkin", "Кафе Пушкин"], "kafe pushkin"),
    (["Ёлка", "Елка", "ёлка"], "elka"),
    (["Тайм", "Таим"], "taim"),
])
def test_spellings_of_one_name_fold_to_one_key(spellings, key):
    assert {search.fold(s) for s in spellings} == {key}


def test_search_text_holds_every_spelling_once_with_and_without_spaces():
    text = search.search_text("М.Видео", "mvideo", ["M.Video", "МВидео"])
    assert text.split("\n") == ["m video", "mvideo"]


def test_rank_puts_the_exact_name_first_then_prefixes_then_typos():
    candidates = [search.Candidate(slug, name, search.search_text(name, slug)) for slug, name in [
        ("smart-mall", "Smart Mall"), ("tmall", "Tmall"), ("tmall-travel", "Tmall Travel"), ("ozon", "Ozon")]]
    assert search.rank("тмолл", candidates)[:2] == ["tmall", "tmall-travel"]
    assert search.rank("tmall", candidates) == ["tmall", "tmall-travel", "smart-mall"]
    assert search.rank("озм", candidates) == []  # three letters leave no room for a typo
    assert search.rank("озонн", candidates) == ["ozon"]
    assert search.rank("", candidates) == search.rank("!?", candidates) == []


def test_the_named_partners_are_called_as_people_know_them():
    names = {slug: PARTNERS[slug].name for slug in (
        "aliexpress", "ozon", "labirint", "tmall", "eldorado", "mvideo", "sportmaster", "tutu", "kassir")}
    assert names == {"aliexpress": "AliExpress", "ozon": "Ozon", "labirint": "Лабиринт", "tmall": "Tmall",
                     "eldorado": "Эльдорадо", "mvideo": "М.Видео", "sportmaster": "Спортмастер",
                     "tutu": "Туту.ру", "kassir": "Кассир.ру"}
    assert "Алиэкспресс" in PARTNERS["aliexpress"].aliases and "Озон" in PARTNERS["ozon"].aliases


def test_the_source_articles_terms_are_the_seeds():
    ali, ozon, labirint = PARTNERS["aliexpress"].rules, PARTNERS["ozon"].rules, PARTNERS["labirint"].rules
    assert (ali.cap_kopecks, ali.excluded_domains, ali.app_orders_allowed) == (200_000, ("tmall.ru",), True)
    assert ozon.exclusive_loyalty and not ozon.app_orders_allowed
    assert labirint.min_purchase_kopecks == 5_000
    services = {p.service_code for p in CATALOGUE.partners if p.service_code}
    assert services == {"music", "tv", "ringback"}


def test_the_rest_are_plausible_russian_shop_names():
    names = [p.name for p in CATALOGUE.partners]
    assert len(names) >= 780 and len({n.casefold() for n in names}) == len(names)
    assert not [n for n in names if re.search(r"\d{2,}|shop|store \d", n, re.IGNORECASE) and n != "Book24"]
    assert sum(bool(CYRILLIC.search(n)) for n in names) > 0.7 * len(names)
    assert all(CYRILLIC.search(c.name) for c in CATALOGUE.categories)
    assert all(CYRILLIC.search(p.description) for p in CATALOGUE.partners)


def test_every_partner_fits_its_columns():
    width = Partner.__table__.c.search_text.type.length
    assert all(len(search.search_text(p.name, p.slug, p.aliases)) <= width for p in CATALOGUE.partners)
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", p.slug) for p in CATALOGUE.partners)


def test_terms_are_written_in_russian_with_exact_amounts():
    tiers = RuleSet.from_dict({"tiers": [{"min_amount_kopecks": 0, "fixed_kopecks": 10_050},
                                         {"min_amount_kopecks": 500_000, "rate_bps": 250}],
                               "cap_kopecks": 1_234_500, "min_purchase_kopecks": 5_000})
    assert terms_text(tiers) == (
        "Кэшбэк: 100,50\u00a0₽ за покупку до 5\u00a0000\u00a0₽, 2,5\u00a0% — от 5\u00a0000\u00a0₽."
        " Не больше 12\u00a0345\u00a0₽ за одну покупку. За покупку меньше 50\u00a0₽ кэшбэка нет."
        " Заказы в мобильном приложении магазина кэшбэк не приносят. Покупки юридических лиц кэшбэк не приносят."
        " Кэшбэк меньше 1\u00a0₽ не начисляется.")
    ali = PARTNERS["aliexpress"].terms_text
    assert ali.startswith("Кэшбэк: 7\u00a0% от суммы покупки. Не больше 2\u00a0000\u00a0₽")
