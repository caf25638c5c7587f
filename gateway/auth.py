"""Who is calling. End users: a bearer access token (EdDSA JWT) verified locally against the
keys identity publishes (cached; refetched when a token names an unknown key id). Stores, the
USSD gateway and support staff: their own credential in `X-Api-Key`, stored hashed and
compared in constant time. The user id only ever comes from the token.

Plain links (`GET /go/{partner_id}`) cannot send a header: there the same access token may come
in the members' website's HttpOnly cookie (`ACCESS_COOKIE`), which is honoured nowhere else, and
only when the browser says the request did not come from another site (Fetch Metadata)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from cashback.identity.v1 import identity_pb2, identity_pb2_grpc
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from gateway.config import Settings
from gateway.errors import ApiError
from services.common.credentials import match_key

log = logging.getLogger("cashback.gateway.auth")

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="bearer",
    description="Access token from /v1/auth/phone/verify, /v1/auth/operator or /v1/auth/refresh.")
# The website (web/) keeps the access token in this HttpOnly cookie; the gateway reads it for plain links only.
ACCESS_COOKIE = "cashback_access"
access_cookie_scheme = APIKeyCookie(
    name=ACCESS_COOKIE, auto_error=False, scheme_name="access_cookie",
    description="The members' website's session (the access token in an HttpOnly cookie); only for plain links "
                "(GET /go/{partner_id}), and refused when the browser says another site started the request.")
# Sec-Fetch-Site values of a request our own pages (or the address bar) started; absent: not a browser
# that sends Fetch Metadata, which another site cannot use to send our cookie either way.
_OWN_SITE = {None, "same-origin", "same-site", "none"}
store_key_scheme = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="store_key",
                                description="An operator store's credential.")
ussd_key_scheme = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="ussd_key",
                               description="The USSD gateway's credential.")
support_key_scheme = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="support_key",
                                  description="A support staff member's credential.")

_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cashback"'}


def _unauthenticated(code: str, detail: str) -> ApiError:
    return ApiError(401, code, detail, headers=_BEARER_CHALLENGE)


@dataclass(frozen=True)
class _Key:
    algorithm: str
    public_key: Any


class KeySet:
    """Identity's token signing keys, fetched lazily and refreshed for unknown key ids (at most
    once per `min_interval` seconds, so forged kids cannot hammer identity)."""

    def __init__(self, identity: identity_pb2_grpc.IdentityServiceStub, settings: Settings) -> None:
        self._identity = identity
        self._settings = settings
        self._keys: dict[str, _Key] = {}
        self._issuer = settings.token_issuer
        self._audience = settings.token_audience
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()

    async def _refresh(self) -> None:
        response = await self._identity.ListSigningKeys(identity_pb2.ListSigningKeysRequest(),
                                                        timeout=self._settings.rpc_deadline_seconds)
        keys = {}
        for key in response.keys:
            try:
                keys[key.key_id] = _Key(key.algorithm or "EdDSA", load_pem_public_key(key.public_key_pem.encode()))
            except ValueError:
                log.error("identity published an unreadable signing key %s", key.key_id)
        self._keys = keys
        self._issuer = response.issuer or self._settings.token_issuer
        self._audience = response.audience or self._settings.token_audience
        self._fetched_at = time.monotonic()
        log.info("signing keys loaded: %s", ", ".join(sorted(keys)) or "none")

    async def key(self, kid: str) -> _Key | None:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            recent = (self._fetched_at is not None
                      and time.monotonic() - self._fetched_at < self._settings.key_refresh_min_interval_seconds)
            if not recent:
                await self._refresh()
            return self._keys.get(kid)

    async def verify(self, token: str) -> str:
        """The user id (`sub`) of a valid access token; ApiError 401 otherwise."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthenticated("TOKEN_INVALID", "The access token is malformed.") from exc
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _unauthenticated("TOKEN_INVALID", "The access token names no signing key.")
        key = await self.key(kid)
        if key is None:
            raise _unauthenticated("TOKEN_INVALID", "The access token is signed by an unknown key.")
        try:
            claims = jwt.decode(token, key.public_key, algorithms=[key.algorithm], audience=self._audience,
                                issuer=self._issuer, options={"require": ["exp", "sub", "iss", "aud"]})
        except jwt.ExpiredSignatureError as exc:
            raise _unauthenticated("TOKEN_EXPIRED", "The access token has expired; refresh it.") from exc
        except jwt.PyJWTError as exc:
            raise _unauthenticated("TOKEN_INVALID", "The access token is not valid.") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _unauthenticated("TOKEN_INVALID", "The access token names no user.")
        return sub


async def current_user(request: Request,
                       credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]) -> str:
    """The signed-in user's id, from the bearer token only."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthenticated("TOKEN_MISSING", "Sign in: this route needs 'Authorization: Bearer <access token>'.")
    user_id = await request.app.state.keyset.verify(credentials.credentials)
    await request.app.state.limits.check_user(user_id)
    return user_id


async def current_link_user(
        request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        cookie: Annotated[str | None, Depends(access_cookie_scheme)]) -> str:
    """The signed-in user of a plain link: the bearer token, else the website's access cookie.
    Cross-site requests get no say with the cookie (a page elsewhere must not act for the user)."""
    if credentials is not None or not cookie:
        return await current_user(request, credentials)
    if request.headers.get("sec-fetch-site") not in _OWN_SITE:
        raise ApiError(403, "CROSS_SITE_REQUEST", "This link works from the cashback site only: open it there.")
    user_id = await request.app.state.keyset.verify(cookie)
    await request.app.state.limits.check_user(user_id)
    return user_id


def _api_key_principal(request: Request, presented: str | None, attribute: str, who: str) -> str:
    if not presented:
        raise ApiError(401, "API_KEY_MISSING", f"This route is for {who}: send the credential in X-Api-Key.")
    principal = match_key(presented, getattr(request.app.state.settings, attribute))
    if principal is None:
        raise ApiError(401, "API_KEY_INVALID", f"The X-Api-Key is not a valid credential for {who}.")
    return principal


async def current_store(request: Request, key: Annotated[str | None, Depends(store_key_scheme)]) -> str:
    return _api_key_principal(request, key, "store_keys", "operator stores")


async def current_ussd_gateway(request: Request, key: Annotated[str | None, Depends(ussd_key_scheme)]) -> str:
    return _api_key_principal(request, key, "ussd_keys", "the USSD gateway")


async def current_support(request: Request, key: Annotated[str | None, Depends(support_key_scheme)]) -> str:
    return _api_key_principal(request, key, "support_keys", "support staff")


UserId = Annotated[str, Depends(current_user)]
LinkUserId = Annotated[str, Depends(current_link_user)]
StoreId = Annotated[str, Depends(current_store)]
UssdGateway = Annotated[str, Depends(current_ussd_gateway)]
SupportStaff = Annotated[str, Depends(current_support)]
