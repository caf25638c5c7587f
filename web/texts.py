"""Everything the website says in Russian that is built from the API's data: money, dates,
statuses, a partner's terms in words and the decision behind a purchase's cashback."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

NBSP = "\u00a0"
MOSCOW = timezone(timedelta(hours=3), "MSK")  # no daylight saving since 2014; needs no tz database
_ROUBLES = re.compile(r"^\d{1,12}(\.\d{1,2})?$")


def money(kopecks: int | None) -> str:
    """123456 → «1 234,56 ₽»; whole roubles without kopecks (exact, integer arithmetic)."""
    kopecks = kopecks or 0
    sign = "−" if kopecks < 0 else ""
    whole, part = divmod(abs(kopecks), 100)
    grouped = f"{whole:,}".replace(",", NBSP)
    return f"{sign}{grouped}{',' + format(part, '02d') if part else ''}{NBSP}₽"


def parse_roubles(text: str) -> int | None:
    """«1 500,50» or «1500.5» → 150050 kopecks; None when it is not a positive amount."""
    cleaned = text.replace(NBSP, "").replace(" ", "").replace("₽", "").replace(",", ".")
    if not _ROUBLES.match(cleaned):
        return None
    kopecks = int(Decimal(cleaned) * 100)
    return kopecks if kopecks > 0 else None


def when(value: str | None) -> str:
    """An RFC 3339 time from the API → «01.12.2026 14:05» (Moscow time)."""
    if not value:
        return ""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(MOSCOW)
    return moment.strftime("%d.%m.%Y %H:%M")


def percent(bps: int) -> str:
    whole, part = divmod(bps, 100)
    return f"{whole}{NBSP}%" if part == 0 else f"{whole},{part:02d}".rstrip("0") + f"{NBSP}%"


PURCHASE_STATUS = {"PENDING": "Ожидает подтверждения", "CONFIRMED": "Подтверждена магазином",
                   "ACCRUED": "Кэшбэк зачислен", "REJECTED": "Отклонена", "EXPIRED": "Не подтверждена вовремя"}
REPORTED_STATUS = {"PENDING": "заказ оформлен, ждёт подтверждения", "CONFIRMED": "заказ подтверждён",
                   "REJECTED": "заказ отменён или возвращён"}
CLAIM_STATUS = {"OPEN": "На рассмотрении", "APPROVED": "Одобрена", "REJECTED": "Отклонена"}
CERTIFICATE_STATUS = {"ACTIVE": "Действует", "REDEEMED": "Использован"}
PAYMENT_STATUS = {"PROCESSING": "Проводится", "COMPLETED": "Зачислено на счёт", "FAILED": "Не прошёл"}
GOAL = {"MOBILE_SERVICES": "Оплата мобильной связи", "DEVICE_CERTIFICATE": "Сертификат на покупку телефона"}
TRANSFER_KIND = {"CASHBACK": "Кэшбэк", "REFERRAL_BONUS": "Бонус за друга",
                 "SERVICE_ACTIVATION": "Кэшбэк за услугу оператора", "MOBILE_PAYMENT": "Оплата связи",
                 "CERTIFICATE": "Сертификат"}
TRANSFER_STATE = {"POSTED": "", "PENDING": "резерв", "VOIDED": "отменено", "EXPIRED": "истекло"}

# What a problem's code means to a member; anything else shows the gateway's own detail.
PROBLEMS = {
    "CODE_INVALID": "Код не подходит. Проверьте его и попробуйте ещё раз.",
    "CODE_EXPIRED": "Срок действия кода истёк. Запросите новый код.",
    "CODE_LOCKED": "Слишком много неверных попыток. Запросите новый код позже.",
    "PHONE_INVALID": "Проверьте номер: нужен российский мобильный номер, например +7 916 123-45-67.",
    "PHONE_LOCKED": "Вход с этим номером временно заблокирован. Попробуйте позже.",
    "RESEND_COOLDOWN": "Новый код можно запросить чуть позже.",
    "RATE_LIMITED": "Слишком много попыток. Подождите немного и попробуйте снова.",
    "REFERRAL_CODE_UNKNOWN": "Такого кода друга нет. Проверьте его или оставьте поле пустым.",
    "SELF_REFERRAL": "Свой собственный код друга указать нельзя.",
    "ASSERTION_INVALID": "Оператор не подтвердил вход. Попробуйте ещё раз.",
    "ASSERTION_REPLAYED": "Это подтверждение входа уже использовано. Попробуйте ещё раз.",
    "EMAIL_INVALID": "Проверьте адрес электронной почты.",
    "INSUFFICIENT_FUNDS": "Недостаточно баллов.",
    "AMOUNT_INVALID": "Проверьте сумму.",
    "NOMINAL_INVALID": "Номинал сертификата — от 100 до 80 000 ₽.",
    "ADDRESS_NOT_ALLOWED": "Оплачивать баллами можно только связь оператора: для номеров других операторов "
                           "есть сертификаты на покупку телефона.",
    "RECIPIENT_NOT_FOUND": "Получатель не участвует в программе: передать сертификат можно только участнику.",
    "RECIPIENT_IS_HOLDER": "Сертификат уже ваш: укажите номер другого человека.",
    "CERTIFICATE_REDEEMED": "Этот сертификат уже использован.",
    "CERTIFICATE_NOT_FOUND": "Такого сертификата у вас нет.",
    "PARTNER_NOT_FOUND": "Такого магазина нет в каталоге.",
    "CLAIM_EXISTS": "Заявка по этому заказу уже есть.",
    "CLAIM_INVALID": "Проверьте данные заявки.",
    "PURCHASE_CONFLICT": "Этот заказ уже учтён у другого участника.",
    "USER_DISABLED": "Вы вышли из программы. Вернуться можно в настройках.",
    "VALIDATION_FAILED": "Проверьте введённые данные.",
    "BODY_TOO_LARGE": "Слишком длинный текст в форме.",
    "GATEWAY_UNREACHABLE": "Сервис временно недоступен. Попробуйте через минуту.",
}


def problem_text(code: str, detail: str) -> str:
    return PROBLEMS.get(code) or (f"Не получилось: {detail}" if detail else "Не получилось. Попробуйте ещё раз.")


def terms(rules: dict[str, Any] | None) -> list[str]:
    """A partner's rule set in plain words, one sentence per rule."""
    if not rules:
        return ["Условия кэшбэка уточняются."]
    tiers = rules.get("tiers") or []

    def rate(tier: dict[str, Any]) -> str:
        if tier.get("rate_type") == "FIXED":
            return f"{money(tier['fixed_kopecks'])} за покупку"
        return percent(tier["rate_bps"])

    if len(tiers) == 1:
        only = rate(tiers[0])
        said = [f"Кэшбэк — {only}." if only.endswith("покупку") else f"Кэшбэк — {only} от суммы покупки."]
    else:
        steps = [f"{rate(t)} — от {money(t['min_amount_kopecks'])}" if i else
                 f"{rate(t)} при покупке до {money(tiers[1]['min_amount_kopecks'])}" for i, t in enumerate(tiers)]
        said = ["Кэшбэк: " + ", ".join(steps) + "."]
    if rules.get("cap_kopecks"):
        said.append(f"Не больше {money(rules['cap_kopecks'])} за одну покупку.")
    if rules.get("min_purchase_kopecks"):
        said.append(f"За покупки дешевле {money(rules['min_purchase_kopecks'])} кэшбэка нет.")
    if rules.get("excluded_domains"):
        said.append(f"Покупки на {', '.join(rules['excluded_domains'])} не учитываются.")
    said.append("Заказы в мобильном приложении магазина тоже учитываются." if rules.get("app_orders_allowed")
                else "Заказы в мобильном приложении магазина кэшбэка не дают.")
    if rules.get("exclusive_loyalty"):
        said.append("Если в заказе использованы бонусы или мили самого магазина, кэшбэка не будет.")
    if rules.get("legal_entities_excluded"):
        said.append("Покупки юридических лиц кэшбэка не дают.")
    said.append(f"Кэшбэк меньше 1{NBSP}₽ не начисляется.")
    return said


def decision(d: dict[str, Any] | None) -> str:
    """Why a purchase earns what it earns («почему столько»)."""
    if not d:
        return "Решение по кэшбэку ещё не принято."
    amount, computed, cashback = money(d["amount_kopecks"]), money(d["computed_kopecks"]), money(d["cashback_kopecks"])
    return {
        "RATE_APPLIED": f"По условиям магазина покупка на {amount} даёт {cashback} кэшбэка.",
        "CAP_APPLIED": f"По ставке вышло бы {computed}, но за одну покупку начисляется не больше {cashback}.",
        "BELOW_MINIMUM": f"Покупка на {amount} дешевле минимальной суммы в условиях магазина, "
                         "поэтому кэшбэка нет.",
        "APP_ORDER": "Заказ сделан в мобильном приложении магазина, а у этого магазина такие заказы "
                     "кэшбэка не дают.",
        "LEGAL_ENTITY": "Покупки юридических лиц кэшбэка не дают.",
        "EXCLUDED_DESTINATION": "Покупка сделана на сайте, который не участвует в программе.",
        "OTHER_LOYALTY_USED": "В заказе использованы бонусы или мили магазина, а в этом случае кэшбэка нет.",
        "UNDER_ONE_ROUBLE": f"По ставке выходит {computed}, а кэшбэк меньше 1{NBSP}₽ не начисляется.",
        "UNATTRIBUTED": "Переход в магазин не был записан (например, его заблокировал блокировщик рекламы), "
                        "поэтому покупку можно получить только по заявке.",
        "FIXED_SERVICE_REWARD": f"Фиксированное вознаграждение {cashback} за подключение услуги оператора.",
    }.get(d.get("reason") or "", d.get("explanation") or "")

# What a finished form says on the page it leads to (`?done=<key>`).
DONE = {
    "signed-in": "Вы вошли в программу.",
    "paid": "Платёж принят: баллы уходят на счёт телефона.",
    "certificate": "Сертификат оформлен. Его код — в списке «Мои сертификаты».",
    "transferred": "Сертификат передан: теперь он у получателя.",
    "claim": "Заявка отправлена. Мы сообщим о решении.",
    "goal": "Цель накоплений сохранена.",
    "email": "Почта подтверждена.",
    "left": "Вы вышли из программы. Накопленные баллы остаются с вами.",
    "rejoined": "Вы снова в программе.",
}
