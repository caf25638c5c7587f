"""Token cryptography, with no I/O: Ed25519 signing keys, access JWTs, opaque refresh tokens and
the operator SSO's assertions. Times come from the caller (the injected clock)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.identity.domain import AssertionInvalid

ALGORITHM = "EdDSA"
ASSERTION_LEEWAY_SECONDS = 30
# An assertion is a one-time proof of a moment's sign-in, not a long-lived credential.
MAX_ASSERTION_LIFETIME_SECONDS = 600


@dataclass(frozen=True)
class KeyPair:
    kid: str
    private_key_pem: str
    public_key_pem: str


def new_key_pair(now: datetime) -> KeyPair:
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return KeyPair(kid=f"{now:%Y%m%d}-{secrets.token_hex(6)}", private_key_pem=private_pem,
                   public_key_pem=public_pem)


@dataclass(frozen=True)
class PublishedKey:
    """What rotation needs to know of a stored key."""

    kid: str
    generation: int
    created_at: datetime


def signing_kid(keys: list[PublishedKey], now: datetime, publish_seconds: int) -> str:
    """The key that signs now: the newest one published for at least `publish_seconds` (so that
    verifiers caching the key set have seen it), or the oldest one while none has been (a fresh
    install: its first key signs at once)."""
    ordered = sorted(keys, key=lambda k: k.generation)
    ready = [k for k in ordered if k.created_at + timedelta(seconds=publish_seconds) <= now]
    return (ready[-1] if ready else ordered[0]).kid


def rotation_due(keys: list[PublishedKey], now: datetime, lifetime_seconds: int) -> bool:
    """Whether the newest key has lived its lifetime (lifetime 0: never, rotation is manual)."""
    if not keys:
        return True
    newest = max(keys, key=lambda k: k.generation)
    return lifetime_seconds > 0 and newest.created_at + timedelta(seconds=lifetime_seconds) <= now


def retirable_kids(keys: list[PublishedKey], now: datetime, *, publish_seconds: int, token_ttl_seconds: int,
                   grace_seconds: float) -> list[str]:
    """Keys no token still valid can have been signed with: a newer key took over signing (was
    published `publish_seconds` after its creation) longer ago than a token lives plus `grace_seconds`
    (replicas' key refresh and clock skew)."""
    ordered = sorted(keys, key=lambda k: k.generation)
    retire = []
    for key, successor in zip(ordered, ordered[1:], strict=False):
        took_over = successor.created_at + timedelta(seconds=publish_seconds)
        if took_over + timedelta(seconds=token_ttl_seconds + grace_seconds) <= now:
            retire.append(key.kid)
    return retire


def issue_access_token(key: KeyPair, user_id: str, now: datetime, ttl_seconds: int, *, issuer: str,
                       audience: str) -> str:
    iat = int(now.timestamp())
    claims = {"sub": user_id, "iss": issuer, "aud": audience, "iat": iat, "exp": iat + ttl_seconds,
              "jti": secrets.token_hex(8)}
    return jwt.encode(claims, key.private_key_pem, algorithm=ALGORITHM, headers={"kid": key.kid})


def new_refresh_token() -> str:
    return secrets.token_urlsafe(32)


def hash_refresh_token(token: str) -> str:
    """Refresh tokens carry 256 random bits: a plain SHA-256 suffices to store them."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class OperatorAssertion:
    phone: str
    # Names the assertion, so that it signs in once; recorded until `expires_at`.
    jti: str
    expires_at: datetime


def verify_operator_assertion(assertion: str, public_key_pem: str, *, issuer: str, audience: str,
                              now: datetime) -> OperatorAssertion:
    """What an operator SSO assertion vouches for; AssertionInvalid otherwise. Whether it was
    already used is the caller's question (it needs storage)."""
    if not public_key_pem:
        raise AssertionInvalid("operator sign-in is not configured")
    try:
        claims = jwt.decode(
            assertion, public_key_pem, algorithms=[ALGORITHM], audience=audience, issuer=issuer,
            # Expiry is checked below against the injected clock, not the machine's.
            options={"require": ["exp", "iat", "iss", "aud", "jti", "phone_number"], "verify_exp": False,
                     "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise AssertionInvalid(f"operator assertion rejected: {exc}") from exc
    ts = now.timestamp()
    exp, iat = claims.get("exp"), claims.get("iat")
    if not isinstance(exp, int | float) or not isinstance(iat, int | float):
        raise AssertionInvalid("operator assertion has malformed times")
    if exp + ASSERTION_LEEWAY_SECONDS <= ts:
        raise AssertionInvalid("operator assertion has expired")
    if iat - ASSERTION_LEEWAY_SECONDS > ts or exp - iat > MAX_ASSERTION_LIFETIME_SECONDS:
        raise AssertionInvalid("operator assertion has an implausible lifetime")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf - ASSERTION_LEEWAY_SECONDS > ts:
        raise AssertionInvalid("operator assertion is not valid yet")
    phone = claims.get("phone_number")
    if not isinstance(phone, str) or not phone:
        raise AssertionInvalid("operator assertion has no phone number")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 200:
        raise AssertionInvalid("operator assertion has no usable jti")
    return OperatorAssertion(phone, jti, datetime.fromtimestamp(exp + ASSERTION_LEEWAY_SECONDS, UTC))


def _seal_key(secret: str) -> bytes:
    return hashlib.sha256(b"cashback-identity-outbox-seal:" + secret.encode()).digest()


def seal(secret: str, text: str) -> str:
    """Encrypts a code-bearing text for the outbox, so that codes rest nowhere in the clear."""
    nonce = secrets.token_bytes(12)
    return (nonce + AESGCM(_seal_key(secret)).encrypt(nonce, text.encode(), None)).hex()


def unseal(secret: str, sealed: str) -> str:
    raw = bytes.fromhex(sealed)
    return AESGCM(_seal_key(secret)).decrypt(raw[:12], raw[12:], None).decode()
