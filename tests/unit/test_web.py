"""The website's own rules, without I/O: money and amounts in Russian, a partner's terms and a
purchase's decision in words, where a sign-in may send the browser back, and the forms' CSRF check."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from web.config import Settings
from web.render import safe_next
from web.session import CSRF_COOKIE, CsrfRejected, Session
from web.texts import NBSP, decision, money, parse_roubles, terms, when


def test_money_is_roubles_with_kopecks_only_when_there_are_any():
    assert money(123456) == f"1{NBSP}234,56{NBSP}₽"
    assert money(40000) == f"400{NBSP}₽"
    assert money(-5) == f"−0,05{NBSP}₽"
    assert money(None) == f"0{NBSP}₽"


@pytest.mark.parametrize(("text", "kopecks"), [("1500", 150000), ("1 500,50", 150050), ("1500.5", 150050),
                                               ("0,01", 1), (f"2{NBSP}490 ₽", 249000)])
def test_amounts_typed_in_roubles_become_exact_kopecks(text, kopecks):
    assert parse_roubles(text) == kopecks


@pytest.mark.parametrize("text", ["", "0", "-1", "abc", "1,005", "NaN", "Infinity", "1e3"])
def test_what_is_not_a_positive_amount_in_kopecks_is_refused(text):
    assert parse_roubles(text) is None


def test_terms_say_every_rule_in_words():
    said = terms({"tiers": [{"min_amount_kopecks": 0, "rate_type": "PERCENT", "rate_bps": 300, "fixed_kopecks": 0},
                            {"min_amount_kopecks": 100000, "rate_type": "PERCENT", "rate_bps": 550,
                             "fixed_kopecks": 0}],
                  "cap_kopecks": 200000, "min_purchase_kopecks": 5000, "excluded_domains": ["tmall.ru"],
                  "app_orders_allowed": True, "exclusive_loyalty": True, "legal_entities_excluded": True})
    text = " ".join(said)
    for part in (f"Кэшбэк: 3{NBSP}% при покупке до 1{NBSP}000{NBSP}₽, 5,5{NBSP}% — от 1{NBSP}000{NBSP}₽.",
                 f"Не больше 2{NBSP}000{NBSP}₽", f"дешевле 50{NBSP}₽", "tmall.ru", "приложении магазина тоже",
                 "бонусы или мили", "юридических лиц", f"меньше 1{NBSP}₽"):
        assert part in text, part


def test_a_single_rate_is_said_of_the_purchase_or_per_purchase():
    rules = {"tiers": [{"min_amount_kopecks": 0, "rate_type": "PERCENT", "rate_bps": 400, "fixed_kopecks": 0}]}
    assert terms(rules)[0] == f"Кэшбэк — 4{NBSP}% от суммы покупки."
    rules = {"tiers": [{"min_amount_kopecks": 0, "rate_type": "FIXED", "rate_bps": 0, "fixed_kopecks": 5000}]}
    assert terms(rules)[0] == f"Кэшбэк — 50{NBSP}₽ за покупку."


def test_a_decision_explains_a_capped_cashback_and_a_missing_click():
    capped = decision({"reason": "CAP_APPLIED", "amount_kopecks": 10_000_000, "computed_kopecks": 500_000,
                       "cashback_kopecks": 200_000, "explanation": "…"})
    assert f"вышло бы 5{NBSP}000{NBSP}₽" in capped and f"не больше 2{NBSP}000{NBSP}₽" in capped
    unattributed = decision({"reason": "UNATTRIBUTED", "amount_kopecks": 100, "computed_kopecks": 4,
                             "cashback_kopecks": 0, "explanation": "…"})
    assert "блокировщик рекламы" in unattributed and "заявке" in unattributed
    assert decision({"reason": "SOMETHING_NEW", "amount_kopecks": 1, "computed_kopecks": 0, "cashback_kopecks": 0,
                     "explanation": "as the service says"}) == "as the service says"


@pytest.mark.parametrize(("target", "safe"), [("/cashback?page_token=x", "/cashback?page_token=x"),
                                              ("//evil.example", "/"), ("https://evil.example/", "/"),
                                              ("/\\evil.example", "/"), ("", "/")])
def test_after_sign_in_the_browser_goes_back_only_to_our_own_pages(target, safe):
    assert safe_next(target) == safe


def _request(body: bytes, cookie: str) -> Request:
    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    headers = [(b"cookie", cookie.encode()), (b"content-type", b"application/x-www-form-urlencoded")]
    return Request({"type": "http", "method": "POST", "path": "/settings/leave", "headers": headers,
                    "query_string": b"", "client": ("127.0.0.1", 1)}, receive)


async def test_a_form_counts_only_with_the_csrf_token_made_for_this_browser():
    settings = Settings(env="dev")
    browser = f"{CSRF_COOKIE}={'s' * 43}"
    session = Session(_request(b"", browser), settings, api=None)  # type: ignore[arg-type]
    assert await session.form(_request(f"csrf_token={session.csrf_token}&goal=x".encode(), browser)) == {"goal": "x"}
    another_browser = Session(_request(b"", f"{CSRF_COOKIE}={'o' * 43}"), settings, api=None)  # type: ignore[arg-type]
    for body in (f"csrf_token={another_browser.csrf_token}".encode(), b"csrf_token=", b"goal=x"):
        with pytest.raises(CsrfRejected):
            await session.form(_request(body, browser))


def test_times_are_shown_in_moscow_time():
    assert when("2026-12-01T21:05:00Z") == "02.12.2026 00:05"
    assert when(None) == ""
