"""The members' website in a real Chromium, as a member uses it on a phone: sign up with the SMS
code, find a shop, go to it (the click is recorded), see the purchase the shop reports and why it
earns what it earns, see it confirmed and credited, order a certificate and hand it over, pay the
operator bill, file a claim. Every page is checked with axe-core; the main ones are photographed
(into docs/screenshots with UPDATE_SCREENSHOTS=1). Nothing is fetched from the internet."""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import SCREENSHOTS, check_page, offline
from tests.e2e.conftest import direct_postback, read_code
from web.texts import money, percent

pytestmark = pytest.mark.e2e


def operator_phone() -> str:
    """A random number of the operator's own range (MTS, +7982…): it may pay its bill with points."""
    return f"+7982{random.randint(0, 9_999_999):07d}"


async def send_postback(gateway: httpx.AsyncClient, click_id: str, order_id: str, status: str,
                        amount_kopecks: int) -> None:
    body, headers = direct_postback(order_id=order_id, click_id=click_id, status=status, amount_kopecks=amount_kopecks,
                                    currency="RUB", channel="web", customer_type="individual",
                                    event_time=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    reply = await gateway.post("/v1/postbacks/direct", content=body, headers=headers)
    assert reply.status_code == 200, reply.text


async def reload_until(page: Page, shown: Locator, attempts: int = 100) -> None:
    """Cross-service effects (outboxes between the services) are asynchronous: bounded polling."""
    for _ in range(attempts):
        if await shown.count():
            return
        await asyncio.sleep(0.2)
        await page.reload()
    raise AssertionError(f"{page.url} never showed {shown}; it shows:\n{await page.locator('main').inner_text()}")


async def sign_in_by_sms(page: Page, site, gateway: httpx.AsyncClient, phone: str, screenshot: str | None = None):
    await page.goto(f"{site.web_url}/login")
    await check_page(page, screenshot)
    await page.get_by_label("Номер телефона").fill(phone)
    await page.get_by_role("button", name="Получить код").click()
    await check_page(page)
    await page.get_by_label("Код из SMS").fill(await read_code(gateway, phone))
    await page.get_by_role("button", name="Войти").click()


async def test_a_member_finds_a_shop_earns_cashback_and_spends_it(new_context, site, gateway):
    anna, friend = operator_phone(), operator_phone()
    # Ozon's terms as the catalogue has them today: one rate, of which a 10,000-rouble order earns enough to spend.
    ozon = (await gateway.get("/v1/partners/ozon")).raise_for_status().json()
    rate_bps = ozon["rules"]["tiers"][0]["rate_bps"]
    cashback = 1_000_000 * rate_bps // 10_000
    assert len(ozon["rules"]["tiers"]) == 1 and cashback >= 15_000, ozon["rules"]
    context = await new_context()
    guard = await offline(context)
    page = await context.new_page()

    # The catalogue; by keyboard, the first Tab reaches «skip to content».
    await page.goto(site.web_url)
    await check_page(page, "catalogue", full_page=False)
    await page.keyboard.press("Tab")
    await expect(page.locator(":focus")).to_have_text("Перейти к содержанию")

    # Sign up with the SMS code; the tokens stay out of reach of page scripts.
    await sign_in_by_sms(page, site, gateway, anna, screenshot="login")
    await expect(page.get_by_role("link", name="Мой кэшбэк", exact=True)).to_be_visible()
    cookies = {c["name"]: c for c in await context.cookies()}
    for name in ("cashback_refresh", "cashback_access", "cashback_csrf"):
        assert cookies[name]["httpOnly"] and cookies[name]["sameSite"] == "Lax", cookies[name]
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("JSON.stringify(Object.assign({}, localStorage, sessionStorage))") == "{}"

    # Save points rather than have them swept to the phone bill (an operator number's default goal).
    await page.get_by_role("link", name="Настройки", exact=True).click()
    await page.get_by_label("Сертификат на покупку телефона").check()
    await page.get_by_role("button", name="Сохранить").click()
    await expect(page.get_by_role("status")).to_have_text("Цель накоплений сохранена.")
    await check_page(page, "settings")

    # Search, open the partner, ask the calculator, go to the shop.
    await page.get_by_role("link", name="Каталог", exact=True).click()
    await page.get_by_label("Найти магазин").fill("Ozon")
    await page.get_by_role("button", name="Найти").click()
    await page.locator('a[href="/partners/ozon"]').click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(ozon["name"])
    await expect(page.get_by_text(f"Кэшбэк — {percent(rate_bps)} от суммы покупки.")).to_be_visible()
    await page.get_by_label("Сумма покупки, ₽").fill("10000")
    await page.get_by_role("button", name="Рассчитать").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Кэшбэк: {money(cashback)}")
    await check_page(page, "partner")
    # The access token has run out: the refresh cookie renews it on the way to the shop.
    await context.clear_cookies(name="cashback_access")
    await page.get_by_role("link", name="Перейти в магазин").click()
    await page.wait_for_url(re.compile(r"^https://www\.ozon\.ru/"))
    click_id = parse_qs(urlsplit(page.url).query)["sub_id"][0]
    assert guard.shop_visits and click_id

    # The shop reports the order: pending, with its explanation.
    order = f"OZ-{uuid.uuid4().hex[:8]}"
    await send_postback(gateway, click_id, order, "pending", 1_000_000)
    await page.goto(f"{site.web_url}/purchases")
    await reload_until(page, page.locator("li.purchase", has_text=order))
    purchase = page.locator("li.purchase", has_text=order)
    await expect(purchase.get_by_text("Ожидает подтверждения")).to_be_visible()
    await purchase.get_by_text("Почему столько?").click()
    await expect(purchase.get_by_text(f"По условиям магазина покупка на {money(1_000_000)} даёт {money(cashback)} "
                                      "кэшбэка.")).to_be_visible()
    await check_page(page, "purchases")
    # The purchase's own page: what the shop said, report by report.
    await purchase.get_by_role("link", name=f"Все сообщения магазина о заказе {order}").click()
    await expect(page.locator("ol.history")).to_contain_text("заказ оформлен, ждёт подтверждения")
    await check_page(page)

    # Confirmed: credited (the accrual delay is 0 in dev), and the balance shows it.
    await send_postback(gateway, click_id, order, "approved", 1_000_000)
    await page.get_by_role("link", name="Мой кэшбэк", exact=True).click()
    await reload_until(page, page.locator(".balance div", has_text="Можно потратить сейчас").filter(
        has_text=money(cashback)))
    await expect(page.locator("table")).to_contain_text(f"+{money(cashback)}")
    await check_page(page, "cashback")

    # A friend signs in with the operator's sign-in (the dev stand-in SSO signs the assertion).
    friend_context = await new_context()
    friend_guard = await offline(friend_context)
    friend_page = await friend_context.new_page()
    await friend_page.goto(f"{site.web_url}/login")
    await sign_in_with_operator(friend_page, friend)
    await expect(friend_page.get_by_role("link", name="Потратить", exact=True)).to_be_visible()

    # Order a certificate and hand it over: the friend holds it, and it leaves my list.
    await page.get_by_role("link", name="Потратить", exact=True).click()
    await page.get_by_label("Номинал, ₽").fill("100")
    await page.get_by_role("button", name="Оформить сертификат").click()
    await expect(page.get_by_role("status")).to_contain_text("Сертификат оформлен")
    certificate = page.locator("li.certificate")
    await expect(certificate).to_have_count(1)
    await certificate.get_by_label(re.compile("Передать другому человеку")).fill(friend)
    await certificate.get_by_role("button", name="Передать").click()
    await expect(page.get_by_role("status")).to_contain_text("Сертификат передан")
    await expect(certificate).to_have_count(0)
    await friend_page.goto(f"{site.web_url}/spend")
    await expect(friend_page.locator("li.certificate")).to_contain_text("100\u00a0₽")
    await check_page(friend_page)

    # Pay the operator bill with points.
    await page.get_by_label("Сумма, ₽").fill("50")
    await page.get_by_role("button", name="Оплатить баллами").click()
    await expect(page.get_by_role("status")).to_contain_text("Платёж принят")
    await expect(page.locator("section", has_text="Оплаты связи")).to_contain_text(f"50\u00a0₽ на номер {anna}")
    await expect(page.get_by_text(f"Можно потратить: {money(cashback - 15_000)}")).to_be_visible()
    await check_page(page, "spend")

    # A purchase that never arrived: a claim, open.
    await page.get_by_role("link", name="Заявки", exact=True).click()
    await page.get_by_label("Магазин").fill("ozon")
    await page.get_by_label("Номер заказа").fill(f"LOST-{order}")
    await page.get_by_label("Дата заказа").fill(date.today().isoformat())
    await page.get_by_label("Сумма заказа, ₽").fill("2490,50")
    await page.get_by_role("button", name="Отправить заявку").click()
    await expect(page.get_by_role("status")).to_contain_text("Заявка отправлена")
    await expect(page.locator("li.claim", has_text=f"LOST-{order}")).to_contain_text("На рассмотрении")
    await check_page(page, "claims")

    await page.get_by_role("button", name="Выйти").click()
    await expect(page.get_by_role("link", name="Войти", exact=True)).to_be_visible()
    assert not {c["name"] for c in await context.cookies()} & {"cashback_refresh", "cashback_access"}
    assert not guard.refused and not friend_guard.refused, guard.refused + friend_guard.refused


async def sign_in_with_operator(page: Page, phone: str) -> None:
    await page.get_by_label("Номер абонента оператора").fill(phone)
    await page.get_by_role("button", name="Войти через оператора").click()


async def test_a_form_posted_without_its_csrf_token_or_session_changes_nothing(new_context, site):
    context = await new_context()
    await offline(context)
    page = await context.new_page()
    phone = operator_phone()
    await page.goto(f"{site.web_url}/login?next=/settings")
    await sign_in_with_operator(page, phone)
    await expect(page.get_by_role("button", name="Выйти из программы")).to_be_visible()
    # The member's own cookies go along, as they would with a form another site posts here.
    for token in ("forged", ""):
        refused = await context.request.post(f"{site.web_url}/settings/leave", form={"csrf_token": token},
                                             max_redirects=0)
        assert refused.status == 403
    # The session ran out while the form was open: sign in again, back to the same page, nothing done.
    await context.clear_cookies(name="cashback_access")
    await context.clear_cookies(name="cashback_refresh")
    await page.get_by_role("button", name="Выйти из программы").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Вход")
    await sign_in_with_operator(page, phone)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Настройки")
    await expect(page.get_by_role("button", name="Выйти из программы")).to_be_visible()


async def test_a_member_confirms_an_email_leaves_the_program_and_comes_back(new_context, site, gateway):
    context = await new_context()
    await offline(context)
    page = await context.new_page()
    await sign_in_by_sms(page, site, gateway, operator_phone())
    email = f"anna-{uuid.uuid4().hex[:8]}@example.com"
    await page.get_by_role("link", name="Настройки", exact=True).click()
    await page.get_by_label("Адрес").fill(email)
    await page.get_by_role("button", name="Получить код").click()
    await page.get_by_label("Код из письма").fill(await read_code(gateway, email))
    await check_page(page)
    await page.get_by_role("button", name="Подтвердить почту").click()
    await expect(page.get_by_role("status")).to_have_text("Почта подтверждена.")
    await expect(page.locator(".facts")).to_contain_text(email)
    await page.get_by_role("button", name="Выйти из программы").click()
    await expect(page.get_by_role("status")).to_contain_text("Вы вышли из программы")
    await check_page(page)
    # Out of the program, the way to a shop says why no cashback would come.
    await page.goto(f"{site.web_url}/partners/ozon")
    await page.get_by_role("link", name="Перейти в магазин").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Покупки не отслеживаются")
    await check_page(page)
    await page.goto(f"{site.web_url}/settings")
    await page.get_by_role("button", name="Вернуться в программу").click()
    await expect(page.get_by_role("status")).to_have_text("Вы снова в программе.")


async def test_the_go_to_shop_link_asks_to_sign_in_first_and_then_goes(new_context, site, gateway):
    context = await new_context()
    guard = await offline(context)
    page = await context.new_page()
    await page.goto(f"{site.web_url}/partners/ozon")
    await page.get_by_role("link", name="Перейти в магазин").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Вход")
    phone = operator_phone()
    await page.get_by_label("Номер телефона").fill(phone)
    await page.get_by_role("button", name="Получить код").click()
    await page.get_by_label("Код из SMS").fill(await read_code(gateway, phone))
    await page.get_by_role("button", name="Войти").click()
    await page.wait_for_url(re.compile(r"^https://www\.ozon\.ru/.*sub_id="))
    assert len(guard.shop_visits) == 1


async def test_the_api_docs_render_without_internet(page: Page, site):
    guard = await offline(page.context)
    await page.goto(f"{site.gateway_url}/docs")
    await expect(page.locator(".swagger-ui .info .title")).to_contain_text("Cashback API")
    await expect(page.get_by_text("/v1/partners/{partner_id}/quote").first).to_be_visible()
    assert not guard.refused, guard.refused
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "docs.png"))
