"""Identity use cases. Each takes one unit of work; the domain decides, the repository persists.

Failures that must leave a trace (a wrong code counts, a reused refresh token revokes its family)
are decided inside the transaction, committed, and raised after it."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import DomainError
from services.common.outbox import enqueue
from services.common.pagination import decode_cursor, encode_cursor, page_size
from services.common.redis_store import WindowCounters
from services.identity import domain, tokens
from services.identity.config import Settings
from services.identity.delivery import EMAIL_TOPIC, SMS_TOPIC
from services.identity.domain import Channel, Limit, Purpose, SpendingGoal, UserStatus
from services.identity.models import (
    Challenge,
    CodeTarget,
    DevMessage,
    Notification,
    OutboxMessage,
    RefreshToken,
    SigningKey,
    User,
)
from services.identity.repository import IdentityRepository

log = logging.getLogger("cashback.identity")

DEV_OUTBOX_LIMIT = 100


@dataclass(frozen=True)
class Tokens:
    access_token: str
    refresh_token: str
    expires_in_seconds: int


@dataclass(frozen=True)
class SignIn:
    tokens: Tokens
    user: User
    created: bool


@dataclass(frozen=True)
class ChallengeStarted:
    challenge_id: str
    expires_in_seconds: int
    resend_in_seconds: int


@dataclass(frozen=True)
class PublicKey:
    kid: str
    algorithm: str
    public_key_pem: str


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Identity:
    def __init__(self, db: Database, clock: Clock, settings: Settings, counters: WindowCounters,
                 on_enqueued: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._clock = clock
        self._s = settings
        self._counters = counters
        self._on_enqueued = on_enqueued
        self._signing_key: tokens.KeyPair | None = None

    # --- signing keys ---------------------------------------------------------------------

    async def ensure_signing_key(self) -> tokens.KeyPair:
        """The newest active key, made on first start. Shared by replicas through the database."""
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            keys = await repo.active_signing_keys()
            if keys:
                newest = keys[0]
                pair = tokens.KeyPair(newest.kid, newest.private_key_pem, newest.public_key_pem)
            else:
                now = self._clock.now()
                pair = tokens.new_key_pair(now)
                repo.add(_signing_key_row(pair, now))
                log.info("generated access-token signing key %s", pair.kid)
        self._signing_key = pair
        return pair

    async def signing_keys(self) -> list[PublicKey]:
        async with self._db.sessions() as session:
            rows = await IdentityRepository(session).active_signing_keys()
        return [PublicKey(r.kid, r.algorithm, r.public_key_pem) for r in rows]

    async def _key(self) -> tokens.KeyPair:
        return self._signing_key or await self.ensure_signing_key()

    # --- phone sign-in --------------------------------------------------------------------

    async def start_phone_challenge(self, raw_phone: str, client_address: str) -> ChallengeStarted:
        phone = domain.normalise_phone(raw_phone)
        now = self._clock.now()
        s = self._s
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            target = await repo.lock_target(f"phone:{phone.e164}")
            domain.check_resend(target.last_sent_at, target.locked_until, now,
                                timedelta(seconds=s.resend_cooldown_seconds))
            await self._spend(repo, now, [
                (Limit("address-hour", s.address_codes_per_hour, 3600), client_address),
                (Limit("phone-hour", s.phone_codes_per_hour, 3600), phone.e164),
                (Limit("phone-day", s.phone_codes_per_day, 86400), phone.e164),
                (Limit("sms-minute", s.sms_per_minute, 60), "all"),
            ])
            started = await self._new_challenge(repo, target, Purpose.PHONE, phone.e164, None, now)
        self._on_enqueued()
        return started

    async def verify_phone_challenge(self, challenge_id: str, code: str, referral_code: str) -> SignIn:
        now = self._clock.now()
        failure: DomainError | None = None
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            challenge, target = await self._lock_challenge(repo, challenge_id, Purpose.PHONE, None)
            failure = self._try_code(target, challenge, code, now)
            if failure is None:
                user = await repo.user_by_phone(challenge.destination)
                created = user is None
                if user is None:
                    referrer_id = await self._referrer_at_sign_up(repo, referral_code, challenge.destination)
                    user = await self._create_user(repo, challenge.destination, referrer_id, now)
                challenge.consumed_at = now
                target.failures = 0
                issued = await self._issue_tokens(repo, user.id, now)
        if failure is not None:
            raise failure
        if created:
            log.info("user %s signed up (referred: %s)", user.id, bool(user.referrer_user_id))
        return SignIn(issued, user, created)

    async def sign_in_with_operator(self, assertion: str) -> SignIn:
        now = self._clock.now()
        s = self._s
        raw_phone = tokens.verify_operator_assertion(
            assertion, s.sso_public_key_pem, issuer=s.operator_sso_issuer, audience=s.operator_sso_audience, now=now)
        try:
            phone = domain.normalise_phone(raw_phone)
        except domain.PhoneInvalid as exc:
            raise domain.AssertionInvalid("operator assertion carries no Russian mobile number") from exc
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            await repo.lock_target(f"phone:{phone.e164}")  # serialises with code sign-ups of the number
            user = await repo.user_by_phone(phone.e164)
            created = user is None
            if user is None:
                user = await self._create_user(repo, phone.e164, None, now)
            # The operator itself vouches for the subscriber (also for numbers ported in).
            if not user.is_operator_subscriber:
                user.is_operator_subscriber = True
                user.updated_at = now
            issued = await self._issue_tokens(repo, user.id, now)
        return SignIn(issued, user, created)

    # --- tokens ---------------------------------------------------------------------------

    async def refresh_tokens(self, refresh_token: str) -> Tokens:
        now = self._clock.now()
        failure: DomainError | None = None
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            row = await repo.refresh_token_by_hash(tokens.hash_refresh_token(refresh_token)) if refresh_token else None
            if row is None or row.revoked_at is not None:
                raise domain.RefreshTokenInvalid("refresh token is not valid")
            if row.used_at is not None:
                await repo.revoke_family(row.family_id, now)
                failure = domain.RefreshTokenReused("refresh token was already used: signed out everywhere")
            elif now >= row.expires_at:
                raise domain.RefreshTokenInvalid("refresh token has expired")
            else:
                row.used_at = now
                issued = await self._issue_tokens(repo, row.user_id, now, family_id=row.family_id)
        if failure is not None:
            log.warning("refresh token reuse: family %s of user %s revoked", row.family_id, row.user_id)
            raise failure
        return issued

    async def logout(self, refresh_token: str) -> None:
        if not refresh_token:
            return
        now = self._clock.now()
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            row = await repo.refresh_token_by_hash(tokens.hash_refresh_token(refresh_token))
            if row is not None:
                await repo.revoke_family(row.family_id, now)

    async def _issue_tokens(self, repo: IdentityRepository, user_id: str, now: datetime,
                            family_id: str | None = None) -> Tokens:
        s = self._s
        key = await self._key()
        access = tokens.issue_access_token(key, user_id, now, s.access_token_ttl_seconds,
                                           issuer=s.token_issuer, audience=s.token_audience)
        refresh = tokens.new_refresh_token()
        repo.add(RefreshToken(
            id=str(uuid.uuid4()), family_id=family_id or str(uuid.uuid4()), user_id=user_id,
            token_hash=tokens.hash_refresh_token(refresh), created_at=now,
            expires_at=now + timedelta(seconds=s.refresh_token_ttl_seconds)))
        return Tokens(access, refresh, s.access_token_ttl_seconds)

    # --- users ----------------------------------------------------------------------------

    async def get_user(self, user_id: str) -> User:
        async with self._db.sessions() as session:
            user = await IdentityRepository(session).user(user_id) if user_id else None
        if user is None:
            raise domain.UserNotFound(f"no user {user_id}")
        return user

    async def get_user_by_phone(self, raw_phone: str) -> User:
        phone = domain.normalise_phone(raw_phone)
        async with self._db.sessions() as session:
            user = await IdentityRepository(session).user_by_phone(phone.e164)
        if user is None:
            raise domain.UserNotFound("no user with that phone")
        return user

    async def get_referrer(self, user_id: str) -> str:
        return (await self.get_user(user_id)).referrer_user_id or ""

    async def update_spending_goal(self, user_id: str, goal: SpendingGoal | None) -> User:
        if goal is None:
            raise domain.SpendingGoalInvalid("spending_goal must be MOBILE_SERVICES or DEVICE_CERTIFICATE")
        return await self._change_user(user_id, spending_goal=goal.value)

    async def disable_user(self, user_id: str) -> User:
        return await self._change_user(user_id, status=UserStatus.DISABLED.value)

    async def enable_user(self, user_id: str) -> User:
        return await self._change_user(user_id, status=UserStatus.ACTIVE.value)

    async def _change_user(self, user_id: str, **values: str) -> User:
        async with self._db.transaction() as session:
            user = await IdentityRepository(session).user(user_id, lock=True) if user_id else None
            if user is None:
                raise domain.UserNotFound(f"no user {user_id}")
            changed = {k: v for k, v in values.items() if getattr(user, k) != v}
            for name, value in changed.items():
                setattr(user, name, value)
            if changed:
                user.updated_at = self._clock.now()
                log.info("user %s: %s", user_id, changed)
        return user

    async def _create_user(self, repo: IdentityRepository, e164: str, referrer_id: str | None,
                           now: datetime) -> User:
        phone = domain.normalise_phone(e164)
        code = domain.new_referral_code()
        for _ in range(10):
            if not await repo.referral_code_taken(code):
                break
            code = domain.new_referral_code()
        user = User(
            id=str(uuid.uuid4()), phone=phone.e164, email=None, operator=phone.operator,
            is_operator_subscriber=phone.operator == self._s.operator_name, referral_code=code,
            referrer_user_id=referrer_id, spending_goal=SpendingGoal.MOBILE_SERVICES.value,
            status=UserStatus.ACTIVE.value, created_at=now, updated_at=now)
        repo.add(user)
        await repo.session.flush()
        return user

    async def _referrer_at_sign_up(self, repo: IdentityRepository, raw_code: str, phone: str) -> str | None:
        """A friend's referral code is taken only at sign-up; a code that is not a user's is refused
        (before the SMS code is spent, so the person can retry without it)."""
        code = domain.normalise_referral_code(raw_code)
        if not code:
            return None
        referrer = await repo.user_by_referral_code(code) if domain.is_well_formed_referral_code(code) else None
        if referrer is None:
            raise domain.ReferralCodeUnknown("no user has this referral code")
        if referrer.phone == phone:
            raise domain.SelfReferral("one cannot refer oneself")
        return referrer.id

    # --- e-mail ---------------------------------------------------------------------------

    async def start_email_challenge(self, user_id: str, raw_email: str) -> ChallengeStarted:
        email = domain.normalise_email(raw_email)
        now = self._clock.now()
        s = self._s
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            if not user_id or await repo.user(user_id) is None:
                raise domain.UserNotFound(f"no user {user_id}")
            target = await repo.lock_target(f"email:{user_id}")
            domain.check_resend(target.last_sent_at, target.locked_until, now,
                                timedelta(seconds=s.resend_cooldown_seconds))
            await self._spend(repo, now, [(Limit("email-user-hour", s.email_codes_per_hour, 3600), user_id)])
            started = await self._new_challenge(repo, target, Purpose.EMAIL, email, user_id, now)
        self._on_enqueued()
        return started

    async def verify_email_challenge(self, user_id: str, challenge_id: str, code: str) -> User:
        now = self._clock.now()
        failure: DomainError | None = None
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            challenge, target = await self._lock_challenge(repo, challenge_id, Purpose.EMAIL, user_id)
            failure = self._try_code(target, challenge, code, now)
            if failure is None:
                user = await repo.user(user_id, lock=True)
                if user is None:
                    raise domain.UserNotFound(f"no user {user_id}")
                user.email = challenge.destination
                user.updated_at = now
                challenge.consumed_at = now
                target.failures = 0
        if failure is not None:
            raise failure
        return user

    # --- codes ----------------------------------------------------------------------------

    async def _spend(self, repo: IdentityRepository, now: datetime, checks: list[tuple[Limit, str]]) -> None:
        """Counts one more code against each limit, in order; the first one exceeded refuses."""
        for limit, value in checks:
            if limit.limit <= 0 or not value:
                continue
            window = limit.window_start(now)
            key = f"{limit.scope}:{_digest(value)}:{window}"
            count = await self._counters.hit(key, limit.window_seconds)
            if count is None:
                expires = datetime.fromtimestamp(window + limit.window_seconds, UTC)
                count = await repo.hit_counter(key, expires)
            if count > limit.limit:
                log.warning("rate limit %s reached (%d per %d s)", limit.scope, limit.limit, limit.window_seconds)
                raise domain.RateLimited("too many codes requested: try again later",
                                         retry_after_seconds=limit.retry_after(now), limit=limit.scope)

    async def _new_challenge(self, repo: IdentityRepository, target: CodeTarget, purpose: Purpose,
                             destination: str, user_id: str | None, now: datetime) -> ChallengeStarted:
        s = self._s
        code = domain.new_code()
        challenge_id = str(uuid.uuid4())
        await repo.supersede_challenges(target.key, now)
        repo.add(Challenge(
            id=challenge_id, purpose=purpose.value, target_key=target.key, destination=destination,
            user_id=user_id, code_hash=domain.hash_code(s.code_pepper, challenge_id, code), created_at=now,
            expires_at=now + timedelta(seconds=s.code_ttl_seconds), attempts=0))
        target.last_sent_at = now
        enqueue(repo.session, OutboxMessage, topic=SMS_TOPIC if purpose is Purpose.PHONE else EMAIL_TOPIC,
                key=f"code:{challenge_id}", now=now,
                payload={"to": destination, "sealed_text": tokens.seal(s.code_pepper, domain.code_text(purpose, code)),
                         "subject": "Код подтверждения / Confirmation code"})
        return ChallengeStarted(challenge_id, s.code_ttl_seconds, s.resend_cooldown_seconds)

    async def _lock_challenge(self, repo: IdentityRepository, challenge_id: str, purpose: Purpose,
                              user_id: str | None) -> tuple[Challenge, CodeTarget]:
        challenge = await repo.challenge(challenge_id) if challenge_id else None
        if (challenge is None or challenge.purpose != purpose.value
                or (user_id is not None and challenge.user_id != user_id)):
            raise domain.CodeInvalid("the code is wrong or was already used")
        target = await repo.lock_target(challenge.target_key)
        locked = await repo.challenge(challenge_id, lock=True)
        assert locked is not None
        return locked, target

    def _try_code(self, target: CodeTarget, challenge: Challenge, code: str, now: datetime) -> DomainError | None:
        """None when the code is right; otherwise the error, with the wrong try counted."""
        s = self._s
        if target.locked_until is not None and now < target.locked_until:
            return domain.CodeLocked("too many wrong codes: try again later",
                                     retry_after_seconds=domain.seconds_until(target.locked_until, now))
        try:
            domain.check_challenge(
                domain.ChallengeState(challenge.expires_at, challenge.attempts, challenge.consumed_at is not None),
                now, s.max_code_attempts)
        except DomainError as exc:
            return exc
        if domain.code_matches(s.code_pepper, challenge.id, code or "", challenge.code_hash):
            return None
        challenge.attempts += 1
        target.failures += 1
        if s.phone_max_failures > 0 and target.failures >= s.phone_max_failures:
            target.locked_until = now + timedelta(seconds=s.phone_lock_seconds)
            target.failures = 0
            log.warning("code target locked for %d s after repeated wrong codes", s.phone_lock_seconds)
        return domain.CodeInvalid("the code is wrong or was already used",
                                  attempts_left=str(max(0, s.max_code_attempts - challenge.attempts)))

    # --- notifications --------------------------------------------------------------------

    async def send_notification(self, idempotency_key: str, user_id: str, template: str,
                                params: dict[str, str]) -> tuple[str, bool]:
        if not idempotency_key or len(idempotency_key) > 200:
            raise domain.IdempotencyKeyRequired("idempotency_key of 1 to 200 characters is required")
        text = domain.render(template, params)
        try:
            async with self._db.transaction() as session:
                repo = IdentityRepository(session)
                existing = await repo.notifications_by_key(idempotency_key)
                if existing:
                    return _primary(existing), True
                user = await repo.user(user_id) if user_id else None
                if user is None:
                    raise domain.UserNotFound(f"no user {user_id}")
                now = self._clock.now()
                rows = [(Channel.SMS, user.phone)] + ([(Channel.EMAIL, user.email)] if user.email else [])
                notification_id = ""
                for channel, recipient in rows:
                    row = Notification(id=str(uuid.uuid4()), idempotency_key=idempotency_key, user_id=user.id,
                                       template=template, channel=channel.value, recipient=recipient, text=text,
                                       created_at=now)
                    repo.add(row)
                    notification_id = notification_id or row.id
                    enqueue(session, OutboxMessage, topic=SMS_TOPIC if channel is Channel.SMS else EMAIL_TOPIC,
                            key=f"notification:{row.id}", now=now,
                            payload={"to": recipient, "text": text, "notification_id": row.id,
                                     "subject": "Кэшбэк / Cashback"})
        except IntegrityError:
            # A concurrent call with the same key won the race: answer as a replay.
            async with self._db.sessions() as session:
                existing = await IdentityRepository(session).notifications_by_key(idempotency_key)
            if not existing:
                raise
            return _primary(existing), True
        self._on_enqueued()
        return notification_id, False

    async def list_notifications(self, user_id: str, size: int, token: str) -> tuple[list[Notification], str]:
        limit = page_size(size)
        before = decode_cursor(token)
        async with self._db.sessions() as session:
            rows = await IdentityRepository(session).notifications(user_id, limit + 1, before)
        next_token = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else ""
        return rows[:limit], next_token

    async def dev_outbox(self, to: str) -> list[DevMessage]:
        if not self._s.is_dev:
            raise domain.DevOnly("the dev outbox exists only in dev")
        recipient = (to or "").strip()
        if recipient and "@" not in recipient:
            try:
                recipient = domain.normalise_phone(recipient).e164
            except domain.PhoneInvalid:
                pass
        async with self._db.sessions() as session:
            return await IdentityRepository(session).dev_messages(recipient, DEV_OUTBOX_LIMIT)

    async def purge_expired_counters(self) -> int:
        async with self._db.transaction() as session:
            return await IdentityRepository(session).purge_counters(self._clock.now())


def _primary(rows: list[Notification]) -> str:
    """The notification id callers see: the SMS row's (every user has a phone)."""
    return min(rows, key=lambda r: (r.channel != Channel.SMS.value, r.created_at, r.id)).id


def _signing_key_row(pair: tokens.KeyPair, now: datetime) -> SigningKey:
    return SigningKey(kid=pair.kid, algorithm=tokens.ALGORITHM, private_key_pem=pair.private_key_pem,
                      public_key_pem=pair.public_key_pem, created_at=now)
