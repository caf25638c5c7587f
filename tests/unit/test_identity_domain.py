"""Identity's pure rules: phone numbers, codes, referral codes, limits, texts, token crypto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from fakes.operator_sso import DEV_ISSUER, DEV_PRIVATE_KEY_PEM, DEV_PUBLIC_KEY_PEM, sign_assertion
from services.identity import domain, tokens
from services.identity.config import DEV_OPERATOR_SSO_ISSUER, DEV_OPERATOR_SSO_PUBLIC_KEY_PEM, Settings

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("raw", ["+79821234567", "89821234567", "8 (982) 123-45-67", "+7 982 123 45 67",
                                 "79821234567", " +7-982-123-45-67 "])
def test_russian_mobile_numbers_are_normalised_to_e164(raw):
    phone = domain.normalise_phone(raw)
    assert phone.e164 == "+79821234567" and phone.operator == "MTS"


def test_the_home_operator_comes_from_the_number_range():
    assert domain.normalise_phone("+79031234567").operator == "Beeline"
    assert domain.normalise_phone("+79261234567").operator == "MegaFon"


@pytest.mark.parametrize("raw", ["", "  ", "abc", "+74951234567", "+12025550123", "+380501234567", "+7982123456",
                                 "+798212345678", "1" * 40])
def test_anything_but_a_russian_mobile_number_is_invalid(raw):
    with pytest.raises(domain.PhoneInvalid) as caught:
        domain.normalise_phone(raw)
    assert caught.value.reason == "PHONE_INVALID"


def test_referral_alphabet_has_no_look_alikes_and_codes_use_only_it():
    assert not set("0O1IL") & set(domain.REFERRAL_ALPHABET)
    codes = {domain.new_referral_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(len(c) == 8 and domain.is_well_formed_referral_code(c) for c in codes)
    assert not domain.is_well_formed_referral_code("ABCDEFG0")
    assert domain.normalise_referral_code(" abcd2345 ") == "ABCD2345"


def test_codes_are_six_random_digits():
    codes = [domain.new_code() for _ in range(200)]
    assert all(len(c) == 6 and c.isdigit() for c in codes)
    assert len(set(codes)) > 150


def test_code_hash_is_keyed_and_bound_to_its_challenge():
    h = domain.hash_code("pepper", "challenge-1", "123456")
    assert "123456" not in h and len(h) == 64
    assert h != domain.hash_code("other-pepper", "challenge-1", "123456")
    assert h != domain.hash_code("pepper", "challenge-2", "123456")
    assert domain.code_matches("pepper", "challenge-1", " 123456 ", h)
    assert not domain.code_matches("pepper", "challenge-1", "123457", h)


def test_a_code_is_checked_for_use_then_attempts_then_expiry():
    live = NOW + timedelta(minutes=5)
    domain.check_challenge(domain.ChallengeState(live, 4, False), NOW, 5)
    with pytest.raises(domain.CodeInvalid):
        domain.check_challenge(domain.ChallengeState(live, 0, True), NOW, 5)
    with pytest.raises(domain.CodeLocked):
        domain.check_challenge(domain.ChallengeState(live, 5, False), NOW, 5)
    with pytest.raises(domain.CodeExpired):
        domain.check_challenge(domain.ChallengeState(NOW, 0, False), NOW, 5)


def test_resend_is_refused_during_the_cooldown_and_while_locked():
    cooldown = timedelta(seconds=60)
    domain.check_resend(None, None, NOW, cooldown)
    domain.check_resend(NOW - cooldown, None, NOW, cooldown)
    with pytest.raises(domain.ResendCooldown) as caught:
        domain.check_resend(NOW - timedelta(seconds=20), None, NOW, cooldown)
    assert caught.value.metadata["retry_after_seconds"] == "40"
    with pytest.raises(domain.PhoneLocked):
        domain.check_resend(None, NOW + timedelta(seconds=1), NOW, cooldown)


def test_limit_windows_are_fixed_and_say_when_they_end():
    limit = domain.Limit("phone-hour", 5, 3600)
    at = datetime(2026, 3, 1, 12, 59, 30, tzinfo=UTC)
    assert limit.window_start(at) == int(datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp())
    assert limit.retry_after(at) == 30


def test_amounts_are_written_in_roubles():
    assert domain.format_roubles(15000) == "150.00 ₽"
    assert domain.format_roubles(5) == "0.05 ₽"
    assert domain.format_roubles(123456) == "1234.56 ₽"


def test_templates_render_in_russian_by_default_and_english_on_request():
    params = {"amount_kopecks": "15000", "partner_name": "Ozon"}
    assert domain.render("cashback_credited", params) == "Кэшбэк 150.00 ₽ за покупку в Ozon начислен."
    assert "150.00 ₽" in domain.render("cashback_credited", {**params, "lang": "en"})
    for template, p in [("referral_bonus", {"amount_kopecks": "3000"}),
                        ("certificate_issued", {"nominal_kopecks": "10000"}),
                        ("mobile_payment_completed", {"amount_kopecks": "100"})]:
        assert "₽" in domain.render(template, p)


def test_unknown_templates_and_bad_params_are_refused():
    with pytest.raises(domain.TemplateUnknown):
        domain.render("nope", {})
    with pytest.raises(domain.NotificationParamsInvalid):
        domain.render("referral_bonus", {"amount_kopecks": "thirty"})
    with pytest.raises(domain.NotificationParamsInvalid):
        domain.render("cashback_credited", {"amount_kopecks": "100"})


def test_emails_are_checked_for_syntax_only():
    assert domain.normalise_email(" user@Example.COM ") == "user@example.com"
    with pytest.raises(domain.EmailInvalid):
        domain.normalise_email("user@")


def test_sealed_texts_open_only_with_the_same_secret():
    sealed = tokens.seal("pepper", "Код 123456")
    assert "123456" not in sealed
    assert tokens.unseal("pepper", sealed) == "Код 123456"
    with pytest.raises(Exception):  # noqa: B017 - cryptography's InvalidTag
        tokens.unseal("other", sealed)


def test_access_tokens_carry_the_agreed_claims_and_key_id():
    pair = tokens.new_key_pair(NOW)
    token = tokens.issue_access_token(pair, "user-1", NOW, 900, issuer="cashback-identity", audience="cashback")
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": pair.kid, "typ": "JWT"}
    claims = jwt.decode(token, pair.public_key_pem, algorithms=["EdDSA"], audience="cashback",
                        issuer="cashback-identity", options={"verify_exp": False, "verify_iat": False})
    assert (claims["sub"], claims["exp"] - claims["iat"]) == ("user-1", 900)


def test_refresh_tokens_are_random_and_stored_as_hashes():
    a, b = tokens.new_refresh_token(), tokens.new_refresh_token()
    assert a != b and len(a) >= 43
    assert tokens.hash_refresh_token(a) != a and len(tokens.hash_refresh_token(a)) == 64


def test_the_dev_sso_key_pair_matches_what_identity_trusts_in_dev():
    assert DEV_PUBLIC_KEY_PEM == DEV_OPERATOR_SSO_PUBLIC_KEY_PEM and DEV_ISSUER == DEV_OPERATOR_SSO_ISSUER
    assert Settings(database_url="x", env="dev").sso_public_key_pem == DEV_PUBLIC_KEY_PEM
    assert Settings(database_url="x", env="prod").sso_public_key_pem == ""
    assert DEV_PRIVATE_KEY_PEM.startswith("-----BEGIN PRIVATE KEY-----")


def test_operator_assertions_are_checked_against_the_given_clock():
    def verify(assertion: str, now: datetime = NOW) -> str:
        return tokens.verify_operator_assertion(assertion, DEV_PUBLIC_KEY_PEM, issuer=DEV_ISSUER,
                                                audience="cashback", now=now).phone

    assert verify(sign_assertion("+79821234567", now=NOW)) == "+79821234567"
    with pytest.raises(domain.AssertionInvalid):
        verify(sign_assertion("+79821234567", now=NOW - timedelta(minutes=6)))
    with pytest.raises(domain.AssertionInvalid):
        verify(sign_assertion("+79821234567", now=NOW, ttl_seconds=3600))
    with pytest.raises(domain.AssertionInvalid):
        verify(sign_assertion("+79821234567", now=NOW + timedelta(minutes=5)))
    with pytest.raises(domain.AssertionInvalid):
        tokens.verify_operator_assertion(sign_assertion("+79821234567", now=NOW), "", issuer=DEV_ISSUER,
                                         audience="cashback", now=NOW)


def test_the_signing_key_is_the_newest_published_long_enough_and_old_keys_retire_after_their_tokens():
    k1 = tokens.PublishedKey("k1", 1, NOW - timedelta(days=30))
    k2 = tokens.PublishedKey("k2", 2, NOW)
    assert tokens.signing_kid([k1], NOW, 60) == "k1"
    assert tokens.signing_kid([tokens.PublishedKey("k0", 1, NOW)], NOW, 60) == "k0"  # a fresh install signs at once
    assert tokens.signing_kid([k1, k2], NOW + timedelta(seconds=59), 60) == "k1"
    assert tokens.signing_kid([k1, k2], NOW + timedelta(seconds=60), 60) == "k2"
    assert tokens.rotation_due([k1], NOW, 30 * 86400) and not tokens.rotation_due([k1, k2], NOW, 30 * 86400)
    assert not tokens.rotation_due([k1], NOW, 0)
    retire = {"publish_seconds": 60, "token_ttl_seconds": 900, "grace_seconds": 90}
    assert tokens.retirable_kids([k1, k2], NOW + timedelta(seconds=60 + 900 + 89), **retire) == []
    assert tokens.retirable_kids([k1, k2], NOW + timedelta(seconds=60 + 900 + 90), **retire) == ["k1"]


def test_known_refusals_answer_until_their_moment_and_stay_bounded():
    known = domain.KnownRefusals(max_entries=2)
    known.check("phone:+79821234567", NOW)
    known.remember("phone:+79821234567", NOW + timedelta(seconds=60), domain.ResendCooldown, "recent", NOW)
    with pytest.raises(domain.ResendCooldown) as caught:
        known.check("phone:+79821234567", NOW + timedelta(seconds=20))
    assert caught.value.metadata["retry_after_seconds"] == "40"
    known.check("phone:+79821234567", NOW + timedelta(seconds=60))
    known.remember("sms-minute:x:0", NOW + timedelta(seconds=5), domain.RateLimited, "full", NOW, limit="sms-minute")
    with pytest.raises(domain.RateLimited) as caught:
        known.check("sms-minute:x:0", NOW)
    assert caught.value.metadata == {"retry_after_seconds": "5", "limit": "sms-minute"}
    for n in range(5):
        known.remember(f"k{n}", NOW + timedelta(seconds=5), domain.RateLimited, "full", NOW)
    assert len(known) <= 2
