"""DEV ONLY: a stand-in for the operator's SSO. It signs sign-in assertions with a fixed, published
Ed25519 key whose public half identity trusts when `env == "dev"` and no real key is configured.
This key is public knowledge (it is in the repository): never configure it outside dev.

    from fakes.operator_sso import sign_assertion
    assertion = sign_assertion("+79821234567")
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime

import jwt

DEV_PRIVATE_KEY_PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MC4CAQAwBQYDK2VwBCIEIGcYGc5s4lN/bc1KRVx2w062wqtyzA6v6iLBiBbcKZFv\n"
    "-----END PRIVATE KEY-----\n"
)
DEV_PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAmUgC+bSuDcFHO6WI3f1o0aJwJ8sxCto9m0ismrQVF2w=\n"
    "-----END PUBLIC KEY-----\n"
)
DEV_ISSUER = "operator-sso-dev"
DEV_AUDIENCE = "cashback"


def sign_assertion(phone: str, *, now: datetime | None = None, ttl_seconds: int = 300,
                   issuer: str = DEV_ISSUER, audience: str = DEV_AUDIENCE,
                   private_key_pem: str = DEV_PRIVATE_KEY_PEM, **extra_claims: object) -> str:
    """An EdDSA JWT saying: the operator authenticated the subscriber of `phone` just now."""
    iat = int(now.timestamp()) if now is not None else int(time.time())
    claims = {"iss": issuer, "aud": audience, "sub": phone, "phone_number": phone, "iat": iat,
              "exp": iat + ttl_seconds, "jti": str(uuid.uuid4()), **extra_claims}
    return jwt.encode(claims, private_key_pem, algorithm="EdDSA", headers={"kid": "operator-sso-dev"})


if __name__ == "__main__":
    import sys

    print(sign_assertion(sys.argv[1] if len(sys.argv) > 1 else "+79821234567"))
