"""The gateway in front of the real identity service: sign-in, profile, and every way a bearer
token can be wrong."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.common.clock import FrozenClock
from tests.service.gateway_harness import gateway_settings, running_gateway
from tests.service.gateway_users import bearer, random_host, random_phone, read_code, sign_in
from tests.service.test_gateway import assert_problem


@pytest.fixture
async def identity(start_service):
    return await start_service("identity", address_codes_per_hour=0)


@pytest.fixture
async def client(identity):
    async with running_gateway(gateway_settings(identity_address=identity.address),
                               client_host=random_host()) as client:
        yield client


def _sign(claims: dict, kid: str, key: Ed25519PrivateKey | None = None) -> str:
    pem = (key or Ed25519PrivateKey.generate()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return jwt.encode(claims, pem, algorithm="EdDSA", headers={"kid": kid})


async def test_sign_up_by_sms_code_and_read_my_profile(client):
    phone = random_phone()
    session = await sign_in(client, phone)
    assert session["created"] is True and session["expires_in_seconds"] > 0
    me = await client.get("/v1/me", headers=bearer(session))
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["user_id"] == session["user"]["user_id"] and body["phone"] == phone
    assert body["spending_goal"] == "MOBILE_SERVICES" and body["status"] == "ACTIVE"
    assert len(body["referral_code"]) == 8 and body["create_time"].endswith(("Z", "+00:00"))


async def test_changing_the_spending_goal_and_leaving_and_rejoining(client):
    session = await sign_in(client)
    changed = await client.patch("/v1/me", json={"spending_goal": "DEVICE_CERTIFICATE"}, headers=bearer(session))
    assert changed.status_code == 200 and changed.json()["spending_goal"] == "DEVICE_CERTIFICATE"
    bogus = await client.patch("/v1/me", json={"spending_goal": "CASH"}, headers=bearer(session))
    assert_problem(bogus, 400, "VALIDATION_FAILED")
    left = await client.post("/v1/me/disable", headers=bearer(session))
    assert left.json()["status"] == "DISABLED"
    back = await client.post("/v1/me/enable", headers=bearer(session))
    assert back.json()["status"] == "ACTIVE"


async def test_a_wrong_code_is_401_with_identitys_reason(client):
    phone = random_phone()
    started = await client.post("/v1/auth/phone/codes", json={"phone": phone})
    code = await read_code(client, phone)
    wrong = "000000" if code != "000000" else "111111"
    response = await client.post("/v1/auth/phone/verify",
                                 json={"challenge_id": started.json()["challenge_id"], "code": wrong})
    assert_problem(response, 401, "CODE_INVALID")


async def test_an_invalid_phone_is_400_with_identitys_reason(client):
    response = await client.post("/v1/auth/phone/codes", json={"phone": "12345"})
    assert_problem(response, 400, "PHONE_INVALID")


async def test_resending_too_soon_is_429_with_retry_after(client):
    phone = random_phone()
    assert (await client.post("/v1/auth/phone/codes", json={"phone": phone})).status_code == 200
    again = await client.post("/v1/auth/phone/codes", json={"phone": phone})
    assert_problem(again, 429, "RESEND_COOLDOWN")
    assert int(again.headers["retry-after"]) >= 1


async def test_refresh_rotates_and_logout_revokes(client):
    session = await sign_in(client)
    rotated = await client.post("/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert rotated.status_code == 200, rotated.text
    fresh = rotated.json()
    assert (await client.get("/v1/me", headers=bearer(fresh))).status_code == 200
    out = await client.post("/v1/auth/logout", json={"refresh_token": fresh["refresh_token"]})
    assert out.status_code == 204
    again = await client.post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert again.status_code == 401 and again.json()["code"].startswith("REFRESH_TOKEN")


async def test_a_token_from_an_unknown_key_is_401(client):
    now = int(datetime.now(UTC).timestamp())
    token = _sign({"sub": str(uuid.uuid4()), "iss": "cashback-identity", "aud": "cashback", "iat": now,
                   "exp": now + 600}, kid="not-identitys")
    assert_problem(await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"}), 401, "TOKEN_INVALID")


async def test_a_token_naming_identitys_key_but_signed_by_another_is_401(client):
    session = await sign_in(client)
    header = jwt.get_unverified_header(session["access_token"])
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    forged = _sign({**claims, "sub": str(uuid.uuid4())}, kid=header["kid"])
    assert_problem(await client.get("/v1/me", headers={"Authorization": f"Bearer {forged}"}), 401, "TOKEN_INVALID")


async def test_a_tampered_token_is_401(client):
    session = await sign_in(client)
    tampered = session["access_token"].rsplit(".", 1)[0] + ".AAAA"
    assert_problem(await client.get("/v1/me", headers={"Authorization": f"Bearer {tampered}"}), 401, "TOKEN_INVALID")


async def test_an_expired_token_is_401_token_expired(start_service):
    past = FrozenClock(datetime.now(UTC) - timedelta(hours=2))
    identity = await start_service("identity", clock=past, address_codes_per_hour=0)
    async with running_gateway(gateway_settings(identity_address=identity.address),
                               client_host=random_host()) as client:
        session = await sign_in(client)
        response = await client.get("/v1/me", headers=bearer(session))
    assert_problem(response, 401, "TOKEN_EXPIRED")


async def test_a_store_credential_does_not_open_user_routes(client):
    response = await client.get("/v1/me", headers={"X-Api-Key": "dev-store-key"})
    assert_problem(response, 401, "TOKEN_MISSING")


async def test_money_routes_need_an_idempotency_key(client):
    session = await sign_in(client)
    missing = await client.post("/v1/me/mobile-payments", json={"amount_kopecks": 10000}, headers=bearer(session))
    assert_problem(missing, 400, "IDEMPOTENCY_KEY_MISSING")
    blank = await client.post("/v1/me/certificates", json={"nominal_kopecks": 10000},
                              headers={**bearer(session), "Idempotency-Key": ""})
    assert blank.status_code == 400 and blank.json()["code"].startswith("IDEMPOTENCY_KEY")


async def test_the_user_id_comes_from_the_token_never_from_the_body(client):
    session = await sign_in(client)
    response = await client.patch("/v1/me", json={"spending_goal": "DEVICE_CERTIFICATE", "user_id": "someone"},
                                  headers=bearer(session))
    assert_problem(response, 400, "VALIDATION_FAILED")


async def test_dev_outbox_reads_identitys_sink(client):
    phone = random_phone()
    await client.post("/v1/auth/phone/codes", json={"phone": phone})
    await read_code(client, phone)
    messages = (await client.get("/dev/outbox", params={"to": phone})).json()["messages"]
    assert messages[0]["to"] == phone and messages[0]["channel"] == "SMS"
