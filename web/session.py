"""A browser's session with the website. The tokens live in HttpOnly cookies, never where page
scripts could read them: the refresh token (`cashback_refresh`) and the short-lived access token
(`cashback_access`, also read by the gateway on the go-to-shop link). When the access token is
gone or refused, the refresh token rotates it once. Every form carries a CSRF token: an HMAC, under
the website's secret, of a random per-browser value kept in its own cookie (`cashback_csrf`); a
POST without the matching token changes nothing. All cookies are SameSite=Lax, and Secure
outside dev."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response

from gateway.auth import ACCESS_COOKIE
from web.api import Api, Problem
from web.config import Settings

REFRESH_COOKIE = "cashback_refresh"
CSRF_COOKIE = "cashback_csrf"
CSRF_FIELD = "csrf_token"
# The access cookie leaves the browser this long before the token expires, so that a page never
# sends a token about to be refused; the refresh cookie lives as long as identity's refresh tokens.
ACCESS_MARGIN_SECONDS = 60
REFRESH_MAX_AGE_SECONDS = 30 * 24 * 3600
MAX_FORM_BYTES = 64 * 1024


class NotSignedIn(Exception):
    """The page needs a member: the browser is sent to sign in, and back."""


class CsrfRejected(Exception):
    """A state-changing request without the form's CSRF token."""


class Session:
    def __init__(self, request: Request, settings: Settings, api: Api) -> None:
        self._settings = settings
        self._api = api
        self.client_address = request.client.host if request.client else ""
        self.access: str | None = request.cookies.get(ACCESS_COOKIE) or None
        self.refresh: str | None = request.cookies.get(REFRESH_COOKIE) or None
        self._csrf_seed = request.cookies.get(CSRF_COOKIE) or ""
        self._cookies: dict[str, tuple[str, int]] = {}  # name -> (value, max-age); max-age 0 deletes
        if len(self._csrf_seed) < 32:
            self._csrf_seed = secrets.token_urlsafe(32)
            self._cookies[CSRF_COOKIE] = (self._csrf_seed, REFRESH_MAX_AGE_SECONDS)

    @property
    def signed_in(self) -> bool:
        return bool(self.access or self.refresh)

    # --- tokens ---------------------------------------------------------------------------------

    def keep(self, tokens: dict[str, Any]) -> None:
        """Tokens from a sign-in or a refresh, kept in the cookies."""
        self.access, self.refresh = tokens["access_token"], tokens["refresh_token"]
        access_age = max(int(tokens.get("expires_in_seconds") or 0) - ACCESS_MARGIN_SECONDS, 1)
        self._cookies[ACCESS_COOKIE] = (self.access, access_age)
        self._cookies[REFRESH_COOKIE] = (self.refresh, REFRESH_MAX_AGE_SECONDS)

    def forget(self) -> None:
        self.access = self.refresh = None
        self._cookies[ACCESS_COOKIE] = ("", 0)
        self._cookies[REFRESH_COOKIE] = ("", 0)

    async def _renew(self) -> bool:
        if not self.refresh:
            return False
        try:
            tokens = await self._api.call("POST", "/v1/auth/refresh", json={"refresh_token": self.refresh},
                                          client_address=self.client_address)
        except Problem as problem:
            if problem.status == 401:
                self.forget()
                return False
            raise
        self.keep(tokens)
        return True

    async def ensure(self) -> None:
        """A usable access token, or NotSignedIn."""
        if not self.access and not await self._renew():
            raise NotSignedIn

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The gateway, as the signed-in member (one refresh and retry when the token is refused)."""
        await self.ensure()
        try:
            return await self._api.call(method, path, token=self.access, client_address=self.client_address,
                                        **kwargs)
        except Problem as problem:
            if problem.status != 401 or not problem.code.startswith("TOKEN_"):
                raise
            self.access = None
            if not await self._renew():
                raise NotSignedIn from problem
            return await self._api.call(method, path, token=self.access, client_address=self.client_address,
                                        **kwargs)

    async def public(self, method: str, path: str, **kwargs: Any) -> Any:
        """The gateway's public routes (catalogue, sign-in)."""
        return await self._api.call(method, path, client_address=self.client_address, **kwargs)

    # --- CSRF -----------------------------------------------------------------------------------

    @property
    def csrf_token(self) -> str:
        return hmac.new(self._settings.secret.encode(), self._csrf_seed.encode(), hashlib.sha256).hexdigest()

    async def form(self, request: Request) -> dict[str, str]:
        """The posted form (application/x-www-form-urlencoded), once its CSRF token is checked."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
            raise Problem(413, "BODY_TOO_LARGE", "The form is too large.")
        body = (await request.body())[:MAX_FORM_BYTES].decode("utf-8", errors="replace")
        fields = dict(parse_qsl(body, keep_blank_values=True))
        if not hmac.compare_digest(fields.get(CSRF_FIELD, ""), self.csrf_token):
            raise CsrfRejected
        return {k: v.strip() for k, v in fields.items() if k != CSRF_FIELD}

    # --- the response ---------------------------------------------------------------------------

    def apply(self, response: Response) -> Response:
        for name, (value, max_age) in self._cookies.items():
            if max_age == 0:
                response.delete_cookie(name, path="/", domain=self._settings.cookie_domain or None,
                                       secure=self._settings.cookie_secure, httponly=True, samesite="lax")
            else:
                response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                                    secure=self._settings.cookie_secure,
                                    domain=self._settings.cookie_domain or None)
        return response
