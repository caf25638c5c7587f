"""Redemption rules without I/O."""

from __future__ import annotations

import itertools

import pytest

from services.redemption import domain


@pytest.mark.parametrize("roubles", [100, 101, 5000, 80_000])
def test_nominal_within_100_and_80000_whole_roubles_is_accepted(roubles):
    domain.check_nominal(roubles * 100)


@pytest.mark.parametrize("kopecks", [99 * 100, 80_001 * 100, 10_050, 0, -10_000, 8_000_001])
def test_nominal_outside_the_range_or_with_kopecks_is_refused(kopecks):
    with pytest.raises(domain.NominalInvalid) as caught:
        domain.check_nominal(kopecks)
    assert caught.value.reason == "NOMINAL_INVALID"


@pytest.mark.parametrize("kopecks", [0, 99, -100])
def test_payment_below_one_rouble_is_refused(kopecks):
    with pytest.raises(domain.AmountInvalid):
        domain.check_payment_amount(kopecks)


def test_payment_of_one_rouble_and_odd_kopecks_is_accepted():
    domain.check_payment_amount(100)
    domain.check_payment_amount(12_345)


def test_missing_or_overlong_idempotency_key_is_refused():
    with pytest.raises(domain.IdempotencyKeyMissing):
        domain.check_user_and_key("u", "")
    with pytest.raises(domain.IdempotencyKeyInvalid):
        domain.check_user_and_key("u", "k" * 161)
    with pytest.raises(domain.UserIdRequired):
        domain.check_user_and_key("", "k")


def test_same_key_with_another_amount_is_a_reused_key():
    domain.check_same_request(500, 500, "payment")
    with pytest.raises(domain.IdempotencyKeyReused) as caught:
        domain.check_same_request(500, 600, "payment")
    assert caught.value.reason == "IDEMPOTENCY_KEY_REUSED"


def test_certificate_code_has_at_least_80_bits_and_no_look_alikes():
    import math

    assert domain.CODE_RANDOM_SYMBOLS * math.log2(len(domain.CODE_ALPHABET)) >= 80
    assert not set("01OIL") & set(domain.CODE_ALPHABET)
    codes = {domain.new_certificate_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in itertools.islice(codes, 100):
        assert domain.normalize_code(code) == code


def test_certificate_code_is_grouped_for_reading_and_accepted_as_typed():
    code = domain.new_certificate_code()
    shown = domain.format_code(code)
    assert [len(g) for g in shown.split("-")] == [4, 4, 4, 4, 4]
    assert domain.normalize_code(shown.lower()) == code
    assert domain.normalize_code(shown.replace("-", " ")) == code


def test_every_single_mistyped_symbol_is_refused():
    code = domain.new_certificate_code()
    for position, symbol in itertools.product(range(len(code)), domain.CODE_ALPHABET):
        if code[position] == symbol:
            continue
        typo = code[:position] + symbol + code[position + 1:]
        with pytest.raises(domain.CertificateCodeMalformed):
            domain.normalize_code(typo)


def test_swapped_neighbours_are_refused():
    code = domain.new_certificate_code()
    for i in range(len(code) - 1):
        if code[i] != code[i + 1]:
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2:]
            with pytest.raises(domain.CertificateCodeMalformed):
                domain.normalize_code(swapped)


@pytest.mark.parametrize("raw", ["", "ABCD", "O" * 20, "1234-5678-9ABC-DEFG-HJKM-N"])
def test_malformed_codes_are_refused(raw):
    with pytest.raises(domain.CertificateCodeMalformed):
        domain.normalize_code(raw)


@pytest.mark.parametrize(("nominal", "price", "covered", "to_pay", "forfeited"), [
    (10_000, 50_000, 10_000, 40_000, 0),  # price above nominal: the whole nominal is used
    (10_000, 10_000, 9_900, 100, 100),  # price equals nominal: the buyer still pays 1 rouble
    (50_000, 20_000, 19_900, 100, 30_100),  # nominal above price: the rest is forfeited
    (10_000, 10_100, 10_000, 100, 0),
    (10_000, 101, 1, 100, 9_999),
])
def test_certificate_covers_up_to_the_price_but_the_buyer_pays_at_least_one_rouble(
        nominal, price, covered, to_pay, forfeited):
    result = domain.coverage(nominal, price)
    assert (result.covered_kopecks, result.to_pay_kopecks, result.forfeited_kopecks) == (covered, to_pay, forfeited)
    assert result.to_pay_kopecks >= 100
    assert result.covered_kopecks + result.to_pay_kopecks == price


def test_device_price_of_one_rouble_or_less_is_refused():
    with pytest.raises(domain.DevicePriceInvalid):
        domain.check_sale("store-1", "sale-1", 100)


def test_ussd_balance_fits_one_screen_in_russian():
    text = domain.ussd_balance_text(15_000, 15_000)
    assert text == "Баланс кешбэка: 150,00 баллов. Доступно: 150,00"
    assert len(domain.ussd_balance_text(10**13, 10**13)) <= domain.USSD_MAX_CHARS
    assert len(domain.ussd_balance_text(123_456_789_012, 3)) <= domain.USSD_MAX_CHARS
    for text in (domain.USSD_UNKNOWN_NUMBER, domain.USSD_UNKNOWN_REQUEST, domain.USSD_UNAVAILABLE):
        assert len(text) <= domain.USSD_MAX_CHARS


@pytest.mark.parametrize(("kopecks", "word"), [
    (100, "балл"), (200, "балла"), (500, "баллов"), (1100, "баллов"), (2100, "балл"), (15_050, "балла"), (0, "баллов"),
])
def test_points_word_agrees_with_the_number(kopecks, word):
    assert domain.points_word(kopecks) == word


def test_points_are_formatted_with_thousands_and_a_decimal_comma():
    assert domain.format_points(123_456_78) == "123 456,78"
    assert domain.format_points(5) == "0,05"


@pytest.mark.parametrize(("msisdn", "phone"), [
    ("79161234567", "+79161234567"), (" +79161234567 ", "+79161234567"), ("89161234567", "89161234567")])
def test_ussd_msisdn_becomes_a_phone_identity_can_read(msisdn, phone):
    assert domain.ussd_phone(msisdn) == phone
