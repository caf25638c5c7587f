"""Identity over real gRPC with a real database (and real Redis on the PostgreSQL backend).
Time is a FrozenClock shared with the service; codes are read from the dev outbox."""

from __future__ import annotations

import asyncio
import email
import email.policy
import random
import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import jwt
import pytest
from cashback.identity.v1 import identity_pb2 as pb
from cashback.identity.v1 import identity_pb2_grpc

from fakes.operator_sso import sign_assertion
from services.common.clock import FrozenClock
from services.common.grpc_client import error_info, open_channel
from services.identity.tokens import new_key_pair


class Client:
    def __init__(self, service, stub, clock: FrozenClock) -> None:
        self.service = service
        self.stub = stub
        self.clock = clock


async def _client(start_service, clock: FrozenClock | None = None, **overrides) -> Client:
    clock = clock or FrozenClock()
    overrides.setdefault("redis_prefix", f"test-identity:{uuid.uuid4().hex}:")
    service = await start_service("identity", clock=clock, **overrides)
    channel = open_channel(service.address)
    return Client(service, identity_pb2_grpc.IdentityServiceStub(channel), clock)


@pytest.fixture
async def identity(start_service) -> Client:
    return await _client(start_service)


def mts_number() -> str:
    """A random number in an MTS range (+7 982 ...)."""
    return f"+7982{random.randrange(10**7):07d}"


async def rpc_error(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def outbox(stub, to: str, count: int = 1) -> list[pb.DevMessage]:
    """Bounded polling: the relay delivers to the dev sink in the background."""
    for _ in range(200):
        messages = (await stub.ListDevOutbox(pb.ListDevOutboxRequest(to=to))).messages
        if len(messages) >= count:
            return list(messages)
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} messages reached {to}")


async def latest_code(stub, to: str, count: int = 1) -> str:
    messages = await outbox(stub, to, count)
    match = re.search(r"\b(\d{6})\b", messages[0].text)
    assert match, messages[0].text
    return match.group(1)


async def start(stub, phone: str, address: str = "203.0.113.7") -> pb.StartPhoneChallengeResponse:
    return await stub.StartPhoneChallenge(pb.StartPhoneChallengeRequest(phone=phone, client_address=address))


async def sign_up(c: Client, phone: str | None = None, referral_code: str = "") -> pb.VerifyPhoneChallengeResponse:
    phone = phone or mts_number()
    sent = len((await c.stub.ListDevOutbox(pb.ListDevOutboxRequest(to=phone))).messages)
    challenge = await start(c.stub, phone)
    code = await latest_code(c.stub, phone, sent + 1)
    return await c.stub.VerifyPhoneChallenge(pb.VerifyPhoneChallengeRequest(
        challenge_id=challenge.challenge_id, code=code, referral_code=referral_code))


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# --- phone sign-in --------------------------------------------------------------------------


async def test_sign_up_by_sms_code_creates_an_active_user_and_sign_in_finds_it(identity):
    phone = "8 (982) " + "123-45-67"
    first = await sign_up(identity, phone)
    assert first.created
    user = first.user
    assert user.phone == "+79821234567" and user.operator == "MTS" and user.is_operator_subscriber
    assert user.status == pb.USER_STATUS_ACTIVE and user.spending_goal == pb.SPENDING_GOAL_MOBILE_SERVICES
    assert re.fullmatch(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{8}", user.referral_code)
    identity.clock.advance(timedelta(seconds=61))
    again = await sign_up(identity, "+79821234567")
    assert not again.created and again.user.user_id == user.user_id


async def test_other_operators_numbers_join_but_are_not_subscribers(identity):
    result = await sign_up(identity, f"+7903{random.randrange(10**7):07d}")  # Beeline range
    assert result.user.operator == "Beeline" and not result.user.is_operator_subscriber


@pytest.mark.parametrize("phone", ["+74951234567", "+12025550123", "12345", "", "not a phone"])
async def test_non_russian_mobile_numbers_are_refused(identity, phone):
    err = await rpc_error(start(identity.stub, phone))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(err).reason == "PHONE_INVALID"


async def test_the_code_goes_out_by_sms_to_the_normalised_number(identity):
    phone = mts_number()
    await start(identity.stub, phone)
    messages = await outbox(identity.stub, phone)
    assert messages[0].channel == pb.CHANNEL_SMS and messages[0].to == phone
    assert re.search(r"\b\d{6}\b", messages[0].text)


async def test_a_wrong_code_and_an_unknown_challenge_give_the_same_answer(identity):
    phone = mts_number()
    challenge = await start(identity.stub, phone)
    code = await latest_code(identity.stub, phone)
    bad = await rpc_error(identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=wrong(code))))
    unknown = await rpc_error(identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=str(uuid.uuid4()), code=code)))
    for err in (bad, unknown):
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "CODE_INVALID"


async def test_an_expired_code_is_refused(identity):
    phone = mts_number()
    challenge = await start(identity.stub, phone)
    code = await latest_code(identity.stub, phone)
    identity.clock.advance(timedelta(seconds=600))
    err = await rpc_error(identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "CODE_EXPIRED"


async def test_a_code_works_only_once(identity):
    phone = mts_number()
    challenge = await start(identity.stub, phone)
    code = await latest_code(identity.stub, phone)
    request = pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code)
    await identity.stub.VerifyPhoneChallenge(request)
    err = await rpc_error(identity.stub.VerifyPhoneChallenge(request))
    assert error_info(err).reason == "CODE_INVALID"


async def test_five_wrong_tries_lock_the_code(identity):
    phone = mts_number()
    challenge = await start(identity.stub, phone)
    code = await latest_code(identity.stub, phone)
    for left in range(4, -1, -1):
        err = await rpc_error(identity.stub.VerifyPhoneChallenge(
            pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=wrong(code))))
        assert error_info(err).reason == "CODE_INVALID" and error_info(err).metadata["attempts_left"] == str(left)
    err = await rpc_error(identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_info(err).reason == "CODE_LOCKED"


async def test_resend_during_the_cooldown_is_refused_and_a_new_code_replaces_the_old(identity):
    phone = mts_number()
    first = await start(identity.stub, phone)
    assert (first.expires_in_seconds, first.resend_in_seconds) == (600, 60)
    old_code = await latest_code(identity.stub, phone)
    identity.clock.advance(timedelta(seconds=45))
    err = await rpc_error(start(identity.stub, phone))
    info = error_info(err)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and info.reason == "RESEND_COOLDOWN"
    assert info.metadata["retry_after_seconds"] == "15"
    identity.clock.advance(timedelta(seconds=15))
    second = await start(identity.stub, phone)
    new_code = await latest_code(identity.stub, phone, 2)
    err = await rpc_error(identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=first.challenge_id, code=old_code)))
    assert error_info(err).reason == "CODE_EXPIRED"
    ok = await identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=second.challenge_id, code=new_code))
    assert ok.created


async def verify(c: Client, challenge_id: str, code: str, address: str) -> pb.VerifyPhoneChallengeResponse:
    return await c.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge_id, code=code, client_address=address))


async def test_wrong_codes_lock_out_their_source_across_codes_but_never_the_number(start_service):
    c = await _client(start_service, phone_max_failures=3, phone_lock_seconds=900, phone_guess_budget=0)
    phone, stranger, owner = mts_number(), "198.51.100.66", "203.0.113.7"
    first = await start(c.stub, phone)
    code = await latest_code(c.stub, phone)
    for _ in range(2):
        await rpc_error(verify(c, first.challenge_id, wrong(code), stranger))
    c.clock.advance(timedelta(seconds=60))
    second = await start(c.stub, phone)  # a new code does not reset the stranger's count
    code = await latest_code(c.stub, phone, 2)
    await rpc_error(verify(c, second.challenge_id, wrong(code), stranger))
    err = await rpc_error(verify(c, second.challenge_id, code, stranger))
    assert error_info(err).reason == "CODE_LOCKED" and error_info(err).metadata["retry_after_seconds"] == "900"
    # The owner, elsewhere, is not locked out: a code can be sent and it signs in.
    assert (await verify(c, second.challenge_id, code, owner)).created
    c.clock.advance(timedelta(seconds=60))
    third = await start(c.stub, phone)
    assert third.challenge_id


async def test_past_the_numbers_guess_budget_each_code_gets_one_try_and_the_owner_still_signs_in(start_service):
    c = await _client(start_service, phone_max_failures=10, phone_guess_budget=4, phone_guess_window_seconds=3600)
    phone = mts_number()
    first = await start(c.stub, phone)
    code = await latest_code(c.stub, phone)
    for n in range(4):  # four addresses, one wrong code each: the budget is spent
        await rpc_error(verify(c, first.challenge_id, wrong(code), f"198.51.100.{n}"))
    err = await rpc_error(verify(c, first.challenge_id, code, "203.0.113.7"))
    assert error_info(err).reason == "CODE_LOCKED"  # the 4th wrong try ended this code
    c.clock.advance(timedelta(seconds=60))
    second = await start(c.stub, phone)
    code = await latest_code(c.stub, phone, 2)
    await rpc_error(verify(c, second.challenge_id, wrong(code), "198.51.100.9"))
    err = await rpc_error(verify(c, second.challenge_id, code, "198.51.100.9"))
    assert error_info(err).reason == "CODE_LOCKED"  # one try per code now
    c.clock.advance(timedelta(seconds=60))
    third = await start(c.stub, phone)
    code = await latest_code(c.stub, phone, 3)
    assert (await verify(c, third.challenge_id, code, "203.0.113.7")).created  # the owner's first try


async def test_codes_per_phone_per_hour_are_limited(start_service):
    c = await _client(start_service, phone_codes_per_hour=2)
    phone = mts_number()
    for _ in range(2):
        await start(c.stub, phone)
        c.clock.advance(timedelta(seconds=60))
    err = await rpc_error(start(c.stub, phone))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and error_info(err).reason == "RATE_LIMITED"
    assert int(error_info(err).metadata["retry_after_seconds"]) > 0
    c.clock.advance(timedelta(hours=1))
    await start(c.stub, phone)


@pytest.mark.parametrize("redis", ["real", "off"])
async def test_code_requests_from_a_script_send_no_more_sms_than_the_budget(start_service, real_redis_url, redis):
    budget = 40
    c = await _client(start_service, redis_url=real_redis_url if redis == "real" else "off", sms_per_minute=budget,
                      address_codes_per_hour=10)
    numbers = [f"+7982{n:07d}" for n in range(1_000_000, 1_000_200)]
    addresses = [f"198.51.100.{n}" for n in range(10)]
    requests = [(numbers[i % len(numbers)], addresses[i % len(addresses)]) for i in range(600)]
    sent = 0
    for chunk in range(0, len(requests), 50):
        outcomes = await asyncio.gather(*(start(c.stub, p, a) for p, a in requests[chunk:chunk + 50]),
                                        return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, grpc.aio.AioRpcError):
                assert error_info(outcome).reason in {"RATE_LIMITED", "RESEND_COOLDOWN"}
            else:
                assert not isinstance(outcome, BaseException), outcome
                sent += 1
    print(f"{len(requests)} code requests ({redis} Redis): {sent} SMS sent, budget {budget}/min")
    assert 0 < sent <= budget
    delivered = await outbox(c.stub, "", sent)
    assert len(delivered) == sent


# --- referral -------------------------------------------------------------------------------


async def test_a_friends_code_at_sign_up_makes_the_friend_the_referrer(identity):
    friend = (await sign_up(identity)).user
    newcomer = await sign_up(identity, referral_code=friend.referral_code.lower())
    assert newcomer.created
    referrer = await identity.stub.GetReferrer(pb.GetReferrerRequest(user_id=newcomer.user.user_id))
    assert referrer.referrer_user_id == friend.user_id
    nobody = await identity.stub.GetReferrer(pb.GetReferrerRequest(user_id=friend.user_id))
    assert nobody.referrer_user_id == ""


async def test_an_unknown_referral_code_is_refused_without_spending_the_sms_code(identity):
    phone = mts_number()
    challenge = await start(identity.stub, phone)
    code = await latest_code(identity.stub, phone)
    err = await rpc_error(identity.stub.VerifyPhoneChallenge(pb.VerifyPhoneChallengeRequest(
        challenge_id=challenge.challenge_id, code=code, referral_code="ZZZZZZZZ")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(err).reason == "REFERRAL_CODE_UNKNOWN"
    ok = await identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code))
    assert ok.created
    referrer = await identity.stub.GetReferrer(pb.GetReferrerRequest(user_id=ok.user.user_id))
    assert referrer.referrer_user_id == ""


async def test_a_referral_code_is_taken_only_at_sign_up_and_a_second_referrer_is_refused(identity):
    friend = (await sign_up(identity)).user
    other = (await sign_up(identity)).user
    existing = await sign_up(identity)
    referred = await sign_up(identity, referral_code=friend.referral_code)
    identity.clock.advance(timedelta(seconds=60))

    async def sign_in(phone: str, referral_code: str) -> pb.VerifyPhoneChallengeResponse:
        sent = len((await identity.stub.ListDevOutbox(pb.ListDevOutboxRequest(to=phone))).messages)
        challenge = await start(identity.stub, phone)
        code = await latest_code(identity.stub, phone, sent + 1)
        request = pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code,
                                                 referral_code=referral_code)
        try:
            return await identity.stub.VerifyPhoneChallenge(request)
        finally:
            identity.clock.advance(timedelta(seconds=60))

    for phone, code, reason in [
        (existing.user.phone, friend.referral_code, "REFERRAL_ONLY_AT_SIGN_UP"),
        (referred.user.phone, other.referral_code, "REFERRER_ALREADY_SET"),
        (friend.phone, friend.referral_code, "SELF_REFERRAL"),
    ]:
        err = await rpc_error(sign_in(phone, code))
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION or reason == "SELF_REFERRAL"
        assert error_info(err).reason == reason
    # The friend's own code again (a retried sign-up) is fine, and changes nothing.
    again = await sign_in(referred.user.phone, friend.referral_code)
    assert not again.created
    for user, referrer in [(existing.user, ""), (referred.user, friend.user_id)]:
        answer = await identity.stub.GetReferrer(pb.GetReferrerRequest(user_id=user.user_id))
        assert answer.referrer_user_id == referrer


# --- tokens ---------------------------------------------------------------------------------


def decode_access(token: str, keys: pb.ListSigningKeysResponse) -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in keys.keys if k.key_id == kid)
    # The service's clock is frozen: check times against the token itself, not the machine's clock.
    return jwt.decode(token, key.public_key_pem, algorithms=[key.algorithm], audience=keys.audience,
                      issuer=keys.issuer, options={"verify_exp": False, "verify_iat": False})


async def test_access_token_is_an_eddsa_jwt_verifiable_with_the_published_key(identity):
    result = await sign_up(identity)
    keys = await identity.stub.ListSigningKeys(pb.ListSigningKeysRequest())
    assert keys.issuer == "cashback-identity" and keys.audience == "cashback"
    assert [k.algorithm for k in keys.keys] == ["EdDSA"]
    claims = decode_access(result.tokens.access_token, keys)
    assert claims["sub"] == result.user.user_id
    assert claims["iat"] == int(identity.clock.now().timestamp()) and claims["exp"] - claims["iat"] == 900
    assert result.tokens.expires_in_seconds == 900
    stranger = new_key_pair(identity.clock.now())
    forged = jwt.encode({**claims}, stranger.private_key_pem, algorithm="EdDSA", headers={"kid": keys.keys[0].key_id})
    with pytest.raises(jwt.InvalidSignatureError):
        decode_access(forged, keys)


async def test_the_signing_key_lives_in_the_database_so_restarts_and_replicas_share_it(start_service):
    first = await _client(start_service)
    replica = await _client(start_service, database_url=first.service.settings.database_url)
    a = await first.stub.ListSigningKeys(pb.ListSigningKeysRequest())
    b = await replica.stub.ListSigningKeys(pb.ListSigningKeysRequest())
    assert [k.key_id for k in a.keys] == [k.key_id for k in b.keys] and len(a.keys) == 1
    token = (await sign_up(replica)).tokens.access_token
    decode_access(token, a)


async def test_a_refresh_token_rotates_and_its_reuse_revokes_the_family(identity):
    tokens = (await sign_up(identity)).tokens
    rotated = (await identity.stub.RefreshTokens(pb.RefreshTokensRequest(refresh_token=tokens.refresh_token))).tokens
    assert rotated.refresh_token != tokens.refresh_token and rotated.access_token
    err = await rpc_error(identity.stub.RefreshTokens(pb.RefreshTokensRequest(refresh_token=tokens.refresh_token)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "REFRESH_TOKEN_REUSED"
    err = await rpc_error(identity.stub.RefreshTokens(pb.RefreshTokensRequest(refresh_token=rotated.refresh_token)))
    assert error_info(err).reason == "REFRESH_TOKEN_INVALID"


async def test_logout_revokes_and_is_idempotent(identity):
    tokens = (await sign_up(identity)).tokens
    for _ in range(2):
        await identity.stub.Logout(pb.LogoutRequest(refresh_token=tokens.refresh_token))
    await identity.stub.Logout(pb.LogoutRequest(refresh_token="never-issued"))
    err = await rpc_error(identity.stub.RefreshTokens(pb.RefreshTokensRequest(refresh_token=tokens.refresh_token)))
    assert error_info(err).reason == "REFRESH_TOKEN_INVALID"


async def test_an_expired_refresh_token_is_refused(identity):
    tokens = (await sign_up(identity)).tokens
    identity.clock.advance(timedelta(days=31))
    err = await rpc_error(identity.stub.RefreshTokens(pb.RefreshTokensRequest(refresh_token=tokens.refresh_token)))
    assert error_info(err).reason == "REFRESH_TOKEN_INVALID"


# --- operator sign-in -----------------------------------------------------------------------


async def test_operator_subscribers_sign_in_with_a_signed_assertion(identity):
    phone = mts_number()
    assertion = sign_assertion(phone, now=identity.clock.now())
    result = await identity.stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=assertion))
    assert result.created and result.user.phone == phone and result.user.is_operator_subscriber
    again = await identity.stub.SignInWithOperator(
        pb.SignInWithOperatorRequest(assertion=sign_assertion(phone, now=identity.clock.now())))
    assert not again.created and again.user.user_id == result.user.user_id


async def test_assertions_signed_by_another_key_expired_or_for_another_audience_are_refused(identity):
    now = identity.clock.now()
    phone = mts_number()
    stranger = new_key_pair(now)
    bad = [
        sign_assertion(phone, now=now, private_key_pem=stranger.private_key_pem),
        sign_assertion(phone, now=now - timedelta(minutes=10)),
        sign_assertion(phone, now=now, audience="someone-else"),
        sign_assertion(phone, now=now, issuer="someone-else"),
        sign_assertion("+12025550123", now=now),
        "not-a-jwt",
    ]
    for assertion in bad:
        err = await rpc_error(identity.stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=assertion)))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "ASSERTION_INVALID"


# --- users ----------------------------------------------------------------------------------


async def test_users_can_be_read_by_id_and_by_phone(identity):
    user = (await sign_up(identity)).user
    assert (await identity.stub.GetUser(pb.GetUserRequest(user_id=user.user_id))).user == user
    national = "8" + user.phone[2:]
    assert (await identity.stub.GetUserByPhone(pb.GetUserByPhoneRequest(phone=national))).user == user
    for call in (identity.stub.GetUser(pb.GetUserRequest(user_id=str(uuid.uuid4()))),
                 identity.stub.GetUserByPhone(pb.GetUserByPhoneRequest(phone=mts_number()))):
        err = await rpc_error(call)
        assert err.code() == grpc.StatusCode.NOT_FOUND and error_info(err).reason == "USER_NOT_FOUND"


async def test_the_spending_goal_can_be_changed(identity):
    user = (await sign_up(identity)).user
    changed = await identity.stub.UpdateSpendingGoal(pb.UpdateSpendingGoalRequest(
        user_id=user.user_id, spending_goal=pb.SPENDING_GOAL_DEVICE_CERTIFICATE))
    assert changed.user.spending_goal == pb.SPENDING_GOAL_DEVICE_CERTIFICATE
    err = await rpc_error(identity.stub.UpdateSpendingGoal(pb.UpdateSpendingGoalRequest(user_id=user.user_id)))
    assert error_info(err).reason == "SPENDING_GOAL_INVALID"


async def test_disable_and_enable_are_idempotent(identity):
    user = (await sign_up(identity)).user
    for _ in range(2):
        disabled = await identity.stub.DisableUser(pb.DisableUserRequest(user_id=user.user_id))
        assert disabled.user.status == pb.USER_STATUS_DISABLED
    got = await identity.stub.GetUser(pb.GetUserRequest(user_id=user.user_id))
    assert got.user.status == pb.USER_STATUS_DISABLED
    for _ in range(2):
        enabled = await identity.stub.EnableUser(pb.EnableUserRequest(user_id=user.user_id))
        assert enabled.user.status == pb.USER_STATUS_ACTIVE
    err = await rpc_error(identity.stub.DisableUser(pb.DisableUserRequest(user_id=str(uuid.uuid4()))))
    assert err.code() == grpc.StatusCode.NOT_FOUND


# --- e-mail ---------------------------------------------------------------------------------


async def test_an_email_is_added_with_a_code_sent_to_it(identity):
    user = (await sign_up(identity)).user
    err = await rpc_error(identity.stub.StartEmailChallenge(
        pb.StartEmailChallengeRequest(user_id=user.user_id, email="not-an-address")))
    assert error_info(err).reason == "EMAIL_INVALID"
    challenge = await identity.stub.StartEmailChallenge(
        pb.StartEmailChallengeRequest(user_id=user.user_id, email="Anna@Example.com"))
    messages = await outbox(identity.stub, "Anna@example.com")
    assert messages[0].channel == pb.CHANNEL_EMAIL
    code = re.search(r"\b(\d{6})\b", messages[0].text).group(1)
    other = (await sign_up(identity)).user
    err = await rpc_error(identity.stub.VerifyEmailChallenge(pb.VerifyEmailChallengeRequest(
        user_id=other.user_id, challenge_id=challenge.challenge_id, code=code)))
    assert error_info(err).reason == "CODE_INVALID"
    confirmed = await identity.stub.VerifyEmailChallenge(pb.VerifyEmailChallengeRequest(
        user_id=user.user_id, challenge_id=challenge.challenge_id, code=code))
    assert confirmed.user.email == "Anna@example.com"


# --- notifications --------------------------------------------------------------------------


async def test_a_notification_is_delivered_once_per_idempotency_key(identity):
    user = (await sign_up(identity)).user
    request = pb.SendNotificationRequest(
        idempotency_key=f"cashback-credited:{uuid.uuid4()}", user_id=user.user_id, template="cashback_credited",
        params={"amount_kopecks": "15000", "partner_name": "AliExpress"})
    first = await identity.stub.SendNotification(request)
    again = await identity.stub.SendNotification(request)
    assert not first.already_existed and again.already_existed
    assert again.notification_id == first.notification_id
    messages = await outbox(identity.stub, user.phone, 2)  # the sign-up code, then the notification
    assert messages[0].text == "Кэшбэк 150.00 ₽ за покупку в AliExpress начислен."
    for _ in range(200):
        listed = (await identity.stub.ListNotifications(pb.ListNotificationsRequest(user_id=user.user_id)))
        if listed.notifications and listed.notifications[0].HasField("deliver_time"):
            break
        await asyncio.sleep(0.02)
    assert [n.notification_id for n in listed.notifications] == [first.notification_id]
    assert listed.notifications[0].channel == pb.CHANNEL_SMS and listed.notifications[0].HasField("deliver_time")
    assert len((await identity.stub.ListDevOutbox(pb.ListDevOutboxRequest(to=user.phone))).messages) == 2


async def test_concurrent_sends_with_one_key_make_one_notification(identity):
    user = (await sign_up(identity)).user
    request = pb.SendNotificationRequest(idempotency_key=f"referral:{uuid.uuid4()}", user_id=user.user_id,
                                         template="referral_bonus", params={"amount_kopecks": "3000", "lang": "en"})
    answers = await asyncio.gather(*(identity.stub.SendNotification(request) for _ in range(10)))
    assert len({a.notification_id for a in answers}) == 1
    assert sum(not a.already_existed for a in answers) == 1
    messages = await outbox(identity.stub, user.phone, 2)
    assert messages[0].text == "You received 30.00 ₽ for inviting a friend."


async def test_a_user_with_a_confirmed_email_is_notified_by_sms_and_email(identity):
    user = (await sign_up(identity)).user
    challenge = await identity.stub.StartEmailChallenge(
        pb.StartEmailChallengeRequest(user_id=user.user_id, email="ivan@example.org"))
    code = await latest_code(identity.stub, "ivan@example.org")
    await identity.stub.VerifyEmailChallenge(pb.VerifyEmailChallengeRequest(
        user_id=user.user_id, challenge_id=challenge.challenge_id, code=code))
    await identity.stub.SendNotification(pb.SendNotificationRequest(
        idempotency_key=f"certificate-issued:{uuid.uuid4()}", user_id=user.user_id, template="certificate_issued",
        params={"nominal_kopecks": "500000"}))
    mail = await outbox(identity.stub, "ivan@example.org", 2)
    assert "5000.00 ₽" in mail[0].text
    listed = await identity.stub.ListNotifications(pb.ListNotificationsRequest(user_id=user.user_id))
    assert sorted(n.channel for n in listed.notifications) == [pb.CHANNEL_SMS, pb.CHANNEL_EMAIL]


async def test_unknown_templates_and_users_are_refused(identity):
    user = (await sign_up(identity)).user
    err = await rpc_error(identity.stub.SendNotification(pb.SendNotificationRequest(
        idempotency_key="k1", user_id=user.user_id, template="lottery_won")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and error_info(err).reason == "TEMPLATE_UNKNOWN"
    err = await rpc_error(identity.stub.SendNotification(pb.SendNotificationRequest(
        idempotency_key="k2", user_id=str(uuid.uuid4()), template="referral_bonus",
        params={"amount_kopecks": "3000"})))
    assert err.code() == grpc.StatusCode.NOT_FOUND and error_info(err).reason == "USER_NOT_FOUND"


async def test_notifications_are_listed_newest_first_page_by_page(identity):
    user = (await sign_up(identity)).user
    ids = []
    for n in range(5):
        identity.clock.advance(timedelta(seconds=1))
        sent = await identity.stub.SendNotification(pb.SendNotificationRequest(
            idempotency_key=f"mobile-payment:{uuid.uuid4()}", user_id=user.user_id,
            template="mobile_payment_completed", params={"amount_kopecks": str(100 * (n + 1))}))
        ids.append(sent.notification_id)
    seen, token = [], ""
    while True:
        page = await identity.stub.ListNotifications(
            pb.ListNotificationsRequest(user_id=user.user_id, page_size=2, page_token=token))
        seen += [n.notification_id for n in page.notifications]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]


# Production is configured in full or does not start: a pepper and an SSO key of its own, an SMS provider.
PRODUCTION = {"env": "prod", "code_pepper": "prod-pepper", "sms_url": "http://127.0.0.1:9/sms",
              "operator_sso_public_key_pem": new_key_pair(datetime.now(UTC)).public_key_pem}


async def test_the_dev_outbox_exists_only_in_dev(start_service):
    c = await _client(start_service, **PRODUCTION)
    err = await rpc_error(c.stub.ListDevOutbox(pb.ListDevOutboxRequest()))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and error_info(err).reason == "DEV_ONLY"


# --- real adapters: an HTTP SMS provider and an SMTP server, both local -------------------------


class FakeSmsProvider:
    """A local HTTP SMS provider: records what it accepts; answers 503 to the first `fail_first`."""

    def __init__(self, fail_first: int = 0) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        provider = self
        self.received: list[tuple[str, dict]] = []
        self.fail_first = fail_first

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if provider.fail_first > 0:
                    provider.fail_first -= 1
                    self.send_response(503)
                else:
                    provider.received.append((self.headers.get("Idempotency-Key", ""), body))
                    self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/messages"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeSmtpServer:
    """Just enough SMTP (RFC 5321 without extensions) to receive messages."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.port = 0
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 fake-smtp ready\r\n")
        while line := await reader.readline():
            verb = line.decode(errors="replace").strip().upper()
            if verb.startswith("DATA"):
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                self.messages.append(data.decode())
                writer.write(b"250 queued\r\n")
            elif verb.startswith("QUIT"):
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_sms_goes_through_the_http_provider_with_retries_and_email_through_smtp(start_service):
    provider = FakeSmsProvider(fail_first=1)
    smtp = FakeSmtpServer()
    await smtp.start()
    try:
        c = await _client(start_service, sms_url=provider.url, smtp_host="127.0.0.1", smtp_port=smtp.port)
        phone = mts_number()
        challenge = await start(c.stub, phone)
        for _ in range(200):  # the first attempt fails (503); its retry waits for the clock
            if provider.fail_first == 0:
                break
            await asyncio.sleep(0.02)
        c.clock.advance(timedelta(seconds=1))
        code = await latest_code(c.stub, phone)
        assert provider.received == [(f"code:{challenge.challenge_id}",
                                      {"to": phone, "text": (await outbox(c.stub, phone))[0].text,
                                       "sender": "Cashback"})]
        user = (await c.stub.VerifyPhoneChallenge(
            pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code))).user
        await c.stub.StartEmailChallenge(pb.StartEmailChallengeRequest(user_id=user.user_id, email="olga@example.net"))
        email_code = await latest_code(c.stub, "olga@example.net")
        for _ in range(200):
            if smtp.messages:
                break
            await asyncio.sleep(0.02)
        assert len(smtp.messages) == 1
        mail = email.message_from_string(smtp.messages[0].removesuffix("\r\n.\r\n"), policy=email.policy.default)
        assert mail["To"] == "olga@example.net" and email_code in mail.get_content()
    finally:
        provider.close()
        await smtp.close()


# --- round 2: single-use assertions, key rotation, clean-up, limits everywhere ---------------------


async def test_an_operator_assertion_signs_in_once(identity):
    assertion = sign_assertion(mts_number(), now=identity.clock.now())
    await identity.stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=assertion))
    replays = await asyncio.gather(
        *(identity.stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=assertion)) for _ in range(5)),
        return_exceptions=True)
    for err in replays:
        assert isinstance(err, grpc.aio.AioRpcError), err
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "ASSERTION_REPLAYED"
    without_jti = sign_assertion(mts_number(), now=identity.clock.now(), jti=None)
    err = await rpc_error(identity.stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=without_jti)))
    assert error_info(err).reason == "ASSERTION_INVALID"


async def test_concurrent_uses_of_one_assertion_sign_in_once(identity):
    assertion = sign_assertion(mts_number(), now=identity.clock.now())
    answers = await asyncio.gather(
        *(identity.stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=assertion)) for _ in range(8)),
        return_exceptions=True)
    assert sum(not isinstance(a, BaseException) for a in answers) == 1
    assert all(error_info(a).reason == "ASSERTION_REPLAYED" for a in answers if isinstance(a, BaseException))


async def keys_until(stub, predicate) -> pb.ListSigningKeysResponse:
    for _ in range(500):
        keys = await stub.ListSigningKeys(pb.ListSigningKeysRequest())
        if predicate(keys):
            return keys
        await asyncio.sleep(0.02)
    raise AssertionError(f"signing keys never matched: {keys}")


async def test_signing_keys_rotate_with_an_overlap_and_old_tokens_keep_verifying(start_service):
    day = 24 * 3600
    c = await _client(start_service, signing_key_lifetime_seconds=day, signing_key_publish_seconds=60,
                      signing_key_check_seconds=0.02)
    old_token = (await sign_up(c)).tokens.access_token
    (old,) = (await c.stub.ListSigningKeys(pb.ListSigningKeysRequest())).keys
    c.clock.advance(timedelta(seconds=day))
    keys = await keys_until(c.stub, lambda k: len(k.keys) == 2)
    new = next(k for k in keys.keys if k.key_id != old.key_id)
    decode_access(old_token, keys)  # the old key is still published
    # Published but not signing yet: verifiers caching the key set get a minute to see it.
    assert jwt.get_unverified_header((await sign_up(c)).tokens.access_token)["kid"] == old.key_id
    c.clock.advance(timedelta(seconds=61))
    fresh = (await sign_up(c)).tokens.access_token
    assert jwt.get_unverified_header(fresh)["kid"] == new.key_id
    decode_access(fresh, keys)
    decode_access(old_token, await c.stub.ListSigningKeys(pb.ListSigningKeysRequest()))
    # Once every token the old key signed has expired (15 min + grace), it is no longer published.
    c.clock.advance(timedelta(seconds=900 + 120))
    keys = await keys_until(c.stub, lambda k: len(k.keys) == 1)
    assert keys.keys[0].key_id == new.key_id
    with pytest.raises(StopIteration):
        decode_access(old_token, keys)


async def test_replicas_rotating_at_once_make_one_new_key(start_service):
    first = await _client(start_service, signing_key_lifetime_seconds=3600, signing_key_check_seconds=0.01)
    clock = first.clock
    replicas = [await _client(start_service, clock, database_url=first.service.settings.database_url,
                              signing_key_lifetime_seconds=3600, signing_key_check_seconds=0.01) for _ in range(2)]
    clock.advance(timedelta(seconds=3600))
    await keys_until(first.stub, lambda k: len(k.keys) == 2)
    await asyncio.sleep(0.3)  # more rotation checks on all three replicas: still two keys
    for c in [first, *replicas]:
        assert len((await c.stub.ListSigningKeys(pb.ListSigningKeysRequest())).keys) == 2


async def admin(database_url: str, *args: str) -> tuple[int, str, str]:
    import os
    import sys

    env = {**os.environ, "IDENTITY_DATABASE_URL": database_url, "PYTHONPATH": ".:gen"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.identity", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


async def test_the_admin_command_rotates_and_retires_keys(start_service):
    from services.common.clock import SystemClock

    service = await start_service("identity", clock=SystemClock(), signing_key_publish_seconds=0,
                                  signing_key_check_seconds=0)
    stub = identity_pb2_grpc.IdentityServiceStub(open_channel(service.address))
    url = service.settings.database_url
    (old,) = (await stub.ListSigningKeys(pb.ListSigningKeysRequest())).keys
    code, out, err = await admin(url, "rotate-key")
    assert code == 0, err
    new_kid = out.strip()
    keys = await stub.ListSigningKeys(pb.ListSigningKeysRequest())
    assert {k.key_id for k in keys.keys} == {old.key_id, new_kid}
    assertion = sign_assertion(mts_number())
    token = (await stub.SignInWithOperator(pb.SignInWithOperatorRequest(assertion=assertion))).tokens.access_token
    assert jwt.get_unverified_header(token)["kid"] == new_kid
    code, out, _ = await admin(url, "list-keys")
    assert code == 0 and old.key_id in out and new_kid in out
    assert (await admin(url, "retire-key", old.key_id))[0] == 0
    assert [k.key_id for k in (await stub.ListSigningKeys(pb.ListSigningKeysRequest())).keys] == [new_kid]
    code, _, err = await admin(url, "retire-key", new_kid)
    assert code == 1 and "LAST_SIGNING_KEY" in err
    assert (await admin(url, "no-such-command"))[0] == 2


async def test_the_clean_up_job_deletes_expired_records(start_service):
    from sqlalchemy import func, select

    from services.common.db import Database
    from services.identity.models import Challenge, CodeTarget, OutboxMessage, UsedAssertion

    c = await _client(start_service, cleanup_interval_seconds=0.02, record_retention_seconds=3600)
    user = (await sign_up(c)).user
    await c.stub.SignInWithOperator(pb.SignInWithOperatorRequest(
        assertion=sign_assertion(mts_number(), now=c.clock.now())))
    await outbox(c.stub, user.phone)
    db = Database(c.service.settings.database_url)

    async def counts() -> dict[str, int]:
        async with db.sessions() as session:
            return {model.__tablename__: await session.scalar(select(func.count()).select_from(model))
                    for model in (Challenge, CodeTarget, OutboxMessage, UsedAssertion)}

    try:
        for _ in range(500):  # the code's outbox row gets sent
            async with db.sessions() as session:
                if await session.scalar(select(func.count()).select_from(OutboxMessage)
                                        .where(OutboxMessage.sent_at.is_not(None))):
                    break
            await asyncio.sleep(0.02)
        assert all(await counts())
        c.clock.advance(timedelta(hours=2))
        for _ in range(500):
            if not any((now := await counts()).values()):
                break
            await asyncio.sleep(0.02)
        assert now == dict.fromkeys(now, 0)
        # The user and their sign-in are untouched; the phone starts afresh.
        assert (await c.stub.GetUser(pb.GetUserRequest(user_id=user.user_id))).user == user
        await sign_up(c, user.phone)
    finally:
        await db.dispose()


async def test_an_email_never_signs_anyone_in(identity):
    user = (await sign_up(identity)).user
    challenge = await identity.stub.StartEmailChallenge(
        pb.StartEmailChallengeRequest(user_id=user.user_id, email="maria@example.com"))
    code = await latest_code(identity.stub, "maria@example.com")
    err = await rpc_error(identity.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code)))
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and error_info(err).reason == "CODE_INVALID"
    err = await rpc_error(start(identity.stub, "maria@example.com"))
    assert error_info(err).reason == "PHONE_INVALID"
    confirmed = await identity.stub.VerifyEmailChallenge(pb.VerifyEmailChallengeRequest(
        user_id=user.user_id, challenge_id=challenge.challenge_id, code=code))
    assert confirmed.user.email == "maria@example.com"
    assert list(pb.VerifyEmailChallengeResponse.DESCRIPTOR.fields_by_name) == ["user"]  # no tokens


async def test_every_code_limit_answers_resource_exhausted_with_retry_after(start_service):
    c = await _client(start_service, email_codes_per_hour=1, address_codes_per_hour=1, phone_codes_per_day=1)
    user = (await sign_up(c)).user  # spends the address's one code an hour and the phone's one a day
    refusals = []
    refusals.append(await rpc_error(start(c.stub, mts_number())))  # address
    c.clock.advance(timedelta(seconds=60))
    refusals.append(await rpc_error(start(c.stub, user.phone, "192.0.2.1")))  # phone per day
    await c.stub.StartEmailChallenge(pb.StartEmailChallengeRequest(user_id=user.user_id, email="a@example.com"))
    refusals.append(await rpc_error(c.stub.StartEmailChallenge(  # e-mail cooldown
        pb.StartEmailChallengeRequest(user_id=user.user_id, email="a@example.com"))))
    c.clock.advance(timedelta(seconds=60))
    refusals.append(await rpc_error(c.stub.StartEmailChallenge(  # e-mail codes per hour
        pb.StartEmailChallengeRequest(user_id=user.user_id, email="a@example.com"))))
    reasons = []
    for err in refusals:
        info = error_info(err)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and int(info.metadata["retry_after_seconds"]) > 0
        reasons.append(info.metadata.get("limit", info.reason))
    assert reasons == ["address-hour", "phone-day", "RESEND_COOLDOWN", "email-user-hour"]
    # A locked code says when a new one may be asked for.
    phone = mts_number()
    challenge = await start(c.stub, phone, "192.0.2.2")
    code = await latest_code(c.stub, phone)
    for _ in range(5):
        await rpc_error(c.stub.VerifyPhoneChallenge(
            pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=wrong(code))))
    c.clock.advance(timedelta(seconds=20))
    err = await rpc_error(c.stub.VerifyPhoneChallenge(
        pb.VerifyPhoneChallengeRequest(challenge_id=challenge.challenge_id, code=code)))
    assert error_info(err).reason == "CODE_LOCKED" and error_info(err).metadata["retry_after_seconds"] == "40"
