"""Identity use cases. Each takes one unit of work; the domain decides, the repository persists.

Failures that must leave a trace (a wrong code counts, a reused refresh token revokes its family)
are decided inside the transaction, committed, and raised after it."""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError

from services.common.clock import Clock
from services.common.db import Database
from services.common.errors import DomainError
from services.common.outbox import enqueue
from services.common.pagination import decode_cursor, keyset_page, page_size
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


def source_key(target_key: str, client_address: str) -> str:
    """The code-target row of one client address's tries at a number (fits the 64-character key)."""
    return f"{target_key}@{(client_address or 'unknown')[:45]}"


# Beyond the replicas' key refresh interval: clock skew and in-flight requests.
KEY_GRACE_SECONDS = 60


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


def _digest(value: str, length: int = 32) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:length]


class Identity:
    def __init__(self, db: Database, clock: Clock, settings: Settings, counters: WindowCounters,
                 on_enqueued: Callable[[], None] = lambda: None) -> None:
        self._db = db
        self._clock = clock
        self._s = settings
        self._counters = counters
        self._on_enqueued = on_enqueued
        self._key_cache: tuple[datetime, tokens.KeyPair] | None = None
        self._known = domain.KnownRefusals()

    # --- signing keys ---------------------------------------------------------------------

    async def ensure_signing_key(self) -> tokens.KeyPair:
        """The key that signs now; a fresh install makes its first key (replicas racing make one)."""
        self._key_cache = None
        return await self._key()

    async def add_signing_key(self, after_generation: int | None = None) -> str:
        """Adds (and publishes) the next key; it starts signing once published for
        `signing_key_publish_seconds`. `after_generation`: add only if the newest key is still that
        one (replicas rotating at once make one key). Answers the new kid, or "" if another won."""
        now = self._clock.now()
        pair = tokens.new_key_pair(now)
        try:
            async with self._db.transaction() as session:
                repo = IdentityRepository(session)
                generation = (await repo.last_key_generation() if after_generation is None else after_generation) + 1
                repo.add(_signing_key_row(pair, generation, now))
        except IntegrityError:
            return ""
        log.info("added access-token signing key %s (generation %d)", pair.kid, generation)
        self._key_cache = None
        return pair.kid

    async def retire_signing_key(self, kid: str) -> None:
        """Stops publishing a key at once (e.g. a leaked key): tokens it signed stop verifying.
        The only active key cannot be retired (rotate first)."""
        now = self._clock.now()
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            active = await repo.active_signing_keys()
            if kid not in {k.kid for k in active}:
                raise domain.SigningKeyUnknown(f"no active signing key {kid}")
            if len(active) == 1:
                raise domain.LastSigningKey("the only active key cannot be retired: add a new one first")
            await repo.retire_signing_keys([kid], now)
        log.warning("signing key %s retired by an administrator", kid)
        self._key_cache = None

    async def rotate_signing_keys(self) -> None:
        """The rotation job (every replica runs it): a new key when the newest has lived its
        lifetime; keys retired once no unexpired token can carry them."""
        s = self._s
        now = self._clock.now()
        async with self._db.sessions() as session:
            published = [_published(r) for r in await IdentityRepository(session).active_signing_keys()]
        if tokens.rotation_due(published, now, s.signing_key_lifetime_seconds):
            await self.add_signing_key(max((k.generation for k in published), default=0))
        retire = tokens.retirable_kids(published, now, publish_seconds=s.signing_key_publish_seconds,
                                       token_ttl_seconds=s.access_token_ttl_seconds,
                                       grace_seconds=s.signing_key_check_seconds + KEY_GRACE_SECONDS)
        if retire:
            async with self._db.transaction() as session:
                await IdentityRepository(session).retire_signing_keys(retire, now)
            log.info("retired signing keys %s: every token they signed has expired", ", ".join(retire))
            self._key_cache = None

    async def signing_keys(self) -> list[PublicKey]:
        async with self._db.sessions() as session:
            rows = await IdentityRepository(session).active_signing_keys()
        return [PublicKey(r.kid, r.algorithm, r.public_key_pem) for r in rows]

    async def _key(self) -> tokens.KeyPair:
        """The signing key, re-read from the database every `signing_key_check_seconds` (so that
        every replica follows a rotation)."""
        now = self._clock.now()
        cache = self._key_cache
        if cache is not None and cache[0] <= now < cache[0] + timedelta(seconds=self._s.signing_key_check_seconds):
            return cache[1]
        async with self._db.sessions() as session:
            rows = await IdentityRepository(session).active_signing_keys()
        if not rows:
            await self.add_signing_key(0)
            async with self._db.sessions() as session:
                rows = await IdentityRepository(session).active_signing_keys()
        kid = tokens.signing_kid([_published(r) for r in rows], now, self._s.signing_key_publish_seconds)
        row = next(r for r in rows if r.kid == kid)
        pair = tokens.KeyPair(row.kid, row.private_key_pem, row.public_key_pem)
        self._key_cache = (now, pair)
        return pair

    # --- phone sign-in --------------------------------------------------------------------

    async def start_phone_challenge(self, raw_phone: str, client_address: str) -> ChallengeStarted:
        phone = domain.normalise_phone(raw_phone)
        s = self._s
        return await self._start_challenge(f"phone:{phone.e164}", Purpose.PHONE, phone.e164, None, [
            (Limit("address-hour", s.address_codes_per_hour, 3600), client_address),
            (Limit("phone-hour", s.phone_codes_per_hour, 3600), phone.e164),
            (Limit("phone-day", s.phone_codes_per_day, 86400), phone.e164),
            (Limit("sms-minute", s.sms_per_minute, 60), "all"),
        ])

    async def verify_phone_challenge(self, challenge_id: str, code: str, referral_code: str,
                                     client_address: str = "") -> SignIn:
        now = self._clock.now()
        key = await self._key()
        failure: DomainError | None = None
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            challenge, target = await self._lock_challenge(repo, challenge_id, Purpose.PHONE, None)
            source = await repo.lock_target(source_key(target.key, client_address))
            failure = self._try_code(target, challenge, code, now, source=source)
            if failure is None:
                user = await repo.user_by_phone(challenge.destination)
                created = user is None
                if user is None:
                    referrer_id = await self._referrer_at_sign_up(repo, referral_code, challenge.destination)
                    user = await self._create_user(repo, challenge.destination, referrer_id, now)
                else:
                    await self._referral_at_sign_in(repo, referral_code, user)
                challenge.consumed_at = now
                target.failures = source.failures = 0
                issued = self._issue_tokens(repo, key, user.id, now)
        if failure is not None:
            raise failure
        if created:
            log.info("user %s signed up (referred: %s)", user.id, bool(user.referrer_user_id))
        return SignIn(issued, user, created)

    async def sign_in_with_operator(self, assertion: str) -> SignIn:
        now = self._clock.now()
        s = self._s
        key = await self._key()
        verified = tokens.verify_operator_assertion(
            assertion, s.sso_public_key_pem, issuer=s.operator_sso_issuer, audience=s.operator_sso_audience, now=now)
        try:
            phone = domain.normalise_phone(verified.phone)
        except domain.PhoneInvalid as exc:
            raise domain.AssertionInvalid("operator assertion carries no Russian mobile number") from exc
        async with self._db.transaction() as session:
            repo = IdentityRepository(session)
            # One assertion, one sign-in: a captured assertion replayed within its lifetime is refused.
            if not await repo.spend_assertion(_digest(f"{s.operator_sso_issuer}:{verified.jti}", 64),
                                              verified.expires_at):
                raise domain.AssertionReplayed("this operator assertion was already used")
            await repo.lock_target(f"phone:{phone.e164}")  # serialises with code sign-ups of the number
            user = await repo.user_by_phone(phone.e164)
            created = user is None
            if user is None:
                user = await self._create_user(repo, phone.e164, None, now)
            # The operator itself vouches for the subscriber (also for numbers ported in).
            if not user.is_operator_subscriber:
                user.is_operator_subscriber = True
                user.updated_at = now
            issued = self._issue_tokens(repo, key, user.id, now)
        return SignIn(issued, user, created)

    # --- tokens ---------------------------------------------------------------------------

    async def refresh_tokens(self, refresh_token: str) -> Tokens:
        now = self._clock.now()
        key = await self._key()
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
                issued = self._issue_tokens(repo, key, row.user_id, now, family_id=row.family_id)
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

    def _issue_tokens(self, repo: IdentityRepository, key: tokens.KeyPair, user_id: str, now: datetime,
                      family_id: str | None = None) -> Tokens:
        """`key` comes from `_key()`, read BEFORE the caller's transaction: on SQLite a second
        connection inside it would wait for the first's write lock."""
        s = self._s
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

    async def _referral_at_sign_in(self, repo: IdentityRepository, raw_code: str, user: User) -> None:
        """A code given by an existing user: fine if it names their own referrer (a retried
        sign-up), a clear error otherwise (the SMS code stays unspent, so they can retry without)."""
        code = domain.normalise_referral_code(raw_code)
        if not code:
            return
        referrer = await repo.user_by_referral_code(code) if domain.is_well_formed_referral_code(code) else None
        if referrer is None:
            raise domain.ReferralCodeUnknown("no user has this referral code")
        if referrer.id == user.referrer_user_id:
            return
        if referrer.id == user.id:
            raise domain.SelfReferral("one cannot refer oneself")
        if user.referrer_user_id:
            raise domain.ReferrerAlreadySet("this user already has a referrer")
        raise domain.ReferralOnlyAtSignUp("a referral code is taken only at sign-up")

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
        await self.get_user(user_id)
        s = self._s
        return await self._start_challenge(f"email:{user_id}", Purpose.EMAIL, email, user_id, [
            (Limit("email-user-hour", s.email_codes_per_hour, 3600), user_id),
        ])

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
            self._remember_lock(target, now)
            raise failure
        return user

    # --- codes ----------------------------------------------------------------------------

    async def _start_challenge(self, target_key: str, purpose: Purpose, destination: str, user_id: str | None,
                               limits: list[tuple[Limit, str]]) -> ChallengeStarted:
        """Cooldown and lock first (a resend refused there costs no budget), then every limit in
        order; a code is counted only when it is sent. Refusals that will hold for a while are
        remembered, so that a flood is mostly answered without the database."""
        now = self._clock.now()
        cooldown = timedelta(seconds=self._s.resend_cooldown_seconds)
        counted = [(limit, limit.key(value, now)) for limit, value in limits if limit.limit > 0 and value]
        self._known.check(target_key, now)
        for _, key in counted:
            self._known.check(key, now)
        spent: list[str] = []
        try:
            async with self._db.transaction() as session:
                repo = IdentityRepository(session)
                target = await repo.lock_target(target_key)
                block = domain.resend_block(target.last_sent_at, target.locked_until, now, cooldown)
                if block is not None:
                    until, error, message = block
                    self._known.remember(target_key, until, error, message, now)
                    raise error(message, retry_after_seconds=domain.seconds_until(until, now))
                await self._spend(repo, now, counted, spent)
                started = await self._new_challenge(repo, target, purpose, destination, user_id, now)
        except BaseException:
            # Redis counted codes that were not sent (the database's counts rolled back by themselves).
            await self._counters.give_back(spent)
            raise
        self._known.remember(target_key, now + cooldown, domain.ResendCooldown, "a code was sent recently", now)
        self._on_enqueued()
        return started

    async def _spend(self, repo: IdentityRepository, now: datetime, counted: list[tuple[Limit, str]],
                     spent: list[str]) -> None:
        """Counts one more code against each limit, in order; the first one exceeded refuses.
        Keys counted in Redis are appended to `spent` (to be given back if no code goes out)."""
        for limit, key in counted:
            count = await self._counters.hit(key, limit.window_seconds)
            if count is None:
                count = await repo.hit_counter(key, limit.window_end(now))
            else:
                spent.append(key)
            if count > limit.limit:
                log.warning("rate limit %s reached (%d per %d s)", limit.scope, limit.limit, limit.window_seconds)
                message = "too many codes requested: try again later"
                self._known.remember(key, limit.window_end(now), domain.RateLimited, message, now, limit=limit.scope)
                raise domain.RateLimited(message, retry_after_seconds=limit.retry_after(now), limit=limit.scope)

    def _remember_lock(self, target: CodeTarget, now: datetime) -> None:
        if target.locked_until is not None and now < target.locked_until:
            self._known.remember(target.key, target.locked_until, domain.PhoneLocked,
                                 "too many wrong codes: try again later", now)

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

    def _try_code(self, target: CodeTarget, challenge: Challenge, code: str, now: datetime, *,
                  source: CodeTarget | None = None) -> DomainError | None:
        """None when the code is right; otherwise the error, with the wrong try counted.

        `source`: the phone's wrong codes from this client address. Too many lock that source out
        of the number, not the number; every source's wrong codes also count against the number's
        guess budget, past which each of its codes gets one try only (see docs/identity.md)."""
        s = self._s
        lockable = source or target
        if lockable.locked_until is not None and now < lockable.locked_until:
            return domain.CodeLocked("too many wrong codes: try again later",
                                     retry_after_seconds=domain.seconds_until(lockable.locked_until, now))
        try:
            domain.check_challenge(
                domain.ChallengeState(challenge.expires_at, challenge.attempts, challenge.consumed_at is not None),
                now, s.max_code_attempts)
        except domain.CodeLocked as exc:
            # Retry after: when a new code may be requested.
            block = domain.resend_block(target.last_sent_at, target.locked_until, now,
                                        timedelta(seconds=s.resend_cooldown_seconds))
            retry_after = domain.seconds_until(block[0], now) if block else 1
            return domain.CodeLocked(exc.message, retry_after_seconds=retry_after)
        except DomainError as exc:
            return exc
        if domain.code_matches(s.code_pepper, challenge.id, code or "", challenge.code_hash):
            return None
        challenge.attempts += 1
        lockable.failures += 1
        if s.phone_max_failures > 0 and lockable.failures >= s.phone_max_failures:
            lockable.locked_until = now + timedelta(seconds=s.phone_lock_seconds)
            lockable.failures = 0
            log.warning("code %s locked for %d s after repeated wrong codes", "source" if source else "target",
                        s.phone_lock_seconds)
        if source is not None:
            self._spend_guess(target, challenge, now)
        return domain.CodeInvalid("the code is wrong or was already used",
                                  attempts_left=str(max(0, s.max_code_attempts - challenge.attempts)))

    def _spend_guess(self, target: CodeTarget, challenge: Challenge, now: datetime) -> None:
        """Counts a wrong code against the number's guess budget (all sources). Past it, and until
        `strict_until`, a wrong try ends the code: guessing goes at the pace of the SMS limits, while
        the owner, who types the right code, still signs in."""
        s = self._s
        if target.strict_until is not None and now >= target.strict_until:
            target.strict_until, target.failures = None, 0
        target.failures += 1
        if s.phone_guess_budget > 0 and target.failures >= s.phone_guess_budget and target.strict_until is None:
            target.strict_until = now + timedelta(seconds=s.phone_guess_window_seconds)
            log.warning("guess budget of a number spent: one try per code for %d s", s.phone_guess_window_seconds)
        if target.strict_until is not None and now < target.strict_until:
            challenge.attempts = max(challenge.attempts, s.max_code_attempts)

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
        return keyset_page(rows, limit)

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

    async def purge_expired(self, batch: int = 1000) -> dict[str, int]:
        """The clean-up job (safe on every replica at once): expired rate counters and spent
        assertions; challenges expired, code targets idle and outbox rows sent longer ago than
        `record_retention_seconds` (never less than a code's lifetime). Batches of `batch` rows,
        each in its own short transaction."""
        now = self._clock.now()
        s = self._s
        before = now - timedelta(seconds=max(s.record_retention_seconds, s.code_ttl_seconds, 0))
        jobs: dict[str, Callable[[IdentityRepository], Awaitable[int]]] = {
            "rate_counters": lambda repo: repo.purge_counters(now, batch),
            "used_assertions": lambda repo: repo.purge_used_assertions(now, batch),
            "challenges": lambda repo: repo.purge_challenges(before, batch),
            "code_targets": lambda repo: repo.purge_idle_targets(before, now, batch),
            "outbox": lambda repo: repo.purge_sent_outbox(OutboxMessage, before, batch),
        }
        deleted = {}
        for name, job in jobs.items():
            total = 0
            while True:
                async with self._db.transaction() as session:
                    count = await job(IdentityRepository(session))
                total += count
                if count < batch:
                    break
            deleted[name] = total
        if any(deleted.values()):
            log.info("clean-up deleted %s", deleted)
        return deleted


def _primary(rows: list[Notification]) -> str:
    """The notification id callers see: the SMS row's (every user has a phone)."""
    return min(rows, key=lambda r: (r.channel != Channel.SMS.value, r.created_at, r.id)).id


def _signing_key_row(pair: tokens.KeyPair, generation: int, now: datetime) -> SigningKey:
    return SigningKey(kid=pair.kid, generation=generation, algorithm=tokens.ALGORITHM,
                      private_key_pem=pair.private_key_pem, public_key_pem=pair.public_key_pem, created_at=now)


def _published(row: SigningKey) -> tokens.PublishedKey:
    return tokens.PublishedKey(row.kid, row.generation, row.created_at)
