"""7. Edges of input: a page token from anywhere is a 400 PAGE_TOKEN_INVALID, never a 500; a newline
in a path cannot forge a log line."""

from __future__ import annotations

import asyncio
import base64
import json
import pathlib
import uuid

import pytest

from tests.e2e.conftest import sign_up
from tests.security.conftest import bearer, beeline_number

pytestmark = pytest.mark.e2e


def token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


EPOCH = "1970-01-01T00:00:00+00:00"
# Offsets (the catalogue pages by offset) far past any integer column, or negative.
BAD_OFFSETS = [token({"t": EPOCH, "i": str(10**30)}), token({"t": EPOCH, "i": str(2**63)}),
               token({"t": EPOCH, "i": "-5"})]
# Not a token of any service's.
BAD_TOKENS = [
    token({"t": 17, "i": []}),
    token(["t", "i"]),
    token("just a string"),
    token({"t": "2026-01-01T00:00:00", "i": "x"}),  # no time zone
    token({"t": "0001-01-01T00:00:00+23:59", "i": "x"}),  # before the first representable instant in UTC
    token({"t": "9999-12-31T23:59:59-23:59", "i": "x"}),  # after the last
    token({"t": EPOCH, "i": "x" * 500}),
    "%%%not-base64%%%",
    "eyJ0Ij" + "A" * 600,
]
USER_PAGES = ["/v1/me/statement", "/v1/me/purchases", "/v1/me/certificates", "/v1/me/mobile-payments",
              "/v1/me/claims", "/v1/me/notifications"]


async def test_a_page_token_from_anywhere_is_page_token_invalid_never_a_server_error(http, stack):
    signed = await sign_up(http, beeline_number())
    pages = [(path, bearer(signed)) for path in USER_PAGES]
    pages += [("/v1/partners", {}), ("/v1/support/claims", {"X-Api-Key": "dev-support-key"})]
    for path, headers in pages:
        for bad in BAD_TOKENS + (BAD_OFFSETS if path == "/v1/partners" else []):
            reply = await http.get(path, params={"page_token": bad}, headers=headers)
            assert reply.status_code == 400, (path, bad, reply.status_code, reply.text)
            assert reply.json()["code"] == "PAGE_TOKEN_INVALID", (path, bad, reply.text)


async def test_a_newline_in_a_path_or_header_cannot_forge_a_log_line(http, stack):
    marker = uuid.uuid4().hex
    forged = f"2026-01-01 00:00:00,000 INFO gateway [{marker}] cashback.gateway.access: GET /v1/admin -> 200"
    reply = await http.get(f"/v1/partners/x%0A{forged.replace(' ', '%20')}")
    assert reply.status_code < 500, reply.text
    reply = await http.get("/v1/partners", params={"q": f"shoes\n{forged}\r\x1b[2K"})
    assert reply.status_code < 500, reply.text
    log = pathlib.Path(stack.log_dir, "gateway.log")
    lines = (await asyncio.to_thread(log.read_text, errors="replace")).splitlines()
    logged = [line for line in lines if marker in line]
    assert logged, "the request was logged"
    assert not any(line.startswith("2026-01-01 00:00:00,000") for line in logged), logged
    assert all("\\n2026-01-01" in line for line in logged), logged
