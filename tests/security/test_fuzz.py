"""7. Fuzzing for a fixed budget (Hypothesis, part of `make test`): no input to the gateway's request
validation or to the postback parsers makes a server error. Bodies are signed with the dev secrets
where a network signs, so the parsers themselves see the input, not just the signature check."""

from __future__ import annotations

import asyncio
import json
import uuid
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.conftest import sign_direct, sign_up
from tests.security.conftest import STORE_KEY, bearer, beeline_number

pytestmark = pytest.mark.e2e

BUDGET = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=False) | st.text(max_size=40))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                         max_size=4), max_leaves=12)
DIRECT_FIELDS = ["order_id", "part_id", "click_id", "status", "amount_kopecks", "currency", "channel",
                 "customer_type", "destination_domain", "other_loyalty_used", "event_time"]
NETWORK_FIELDS = ["order_id", "status", "order_sum", "payment_sum", "currency", "subid", "position_id", "time"]
LIKELY = (st.sampled_from(["pending", "approved", "declined", "RUB", "USD", "web", "app", "individual",
                           "legal_entity", "2026-01-01T00:00:00Z", "1234.50", "-1", "1e400", "0x10", "NaN"])
          | SCALARS)


def json_bodies(fields: list[str]) -> st.SearchStrategy[object]:
    """Objects with the route's own field names (so validation runs deep) or anything at all."""
    return st.dictionaries(st.sampled_from(fields), LIKELY | JSON, max_size=len(fields)) | JSON


ROUTES = [  # (method, path, field names, credentials: "user" | "store" | "ussd" | None)
    ("POST", "/v1/auth/phone/codes", ["phone"], None),
    ("POST", "/v1/auth/phone/verify", ["challenge_id", "code", "referral_code"], None),
    ("POST", "/v1/me/mobile-payments", ["amount_kopecks"], "user"),
    ("POST", "/v1/me/certificates", ["nominal_kopecks"], "user"),
    ("POST", "/v1/me/claims", ["partner_id", "order_id", "order_date", "amount_kopecks", "comment"], "user"),
    ("PATCH", "/v1/me", ["spending_goal"], "user"),
    ("POST", "/v1/stores/certificate-redemptions", ["certificate_code", "sale_id", "device_price_kopecks"], "store"),
    ("POST", "/v1/ussd", ["msisdn", "request"], "ussd"),
]


def fuzz_in_thread(base_url: str, body) -> asyncio.Future:
    """Hypothesis drives a synchronous client in a thread; the stack runs as processes."""
    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=15) as client:
            body(client)
    return asyncio.to_thread(run)


def assert_no_server_error(reply: httpx.Response, sent: object) -> None:
    assert reply.status_code < 500, (sent, reply.status_code, reply.text)


def fuzz_route(client: httpx.Client, method: str, path: str, fields: list[str], credentials: dict[str, str]) -> None:
    @BUDGET
    @given(body=json_bodies(fields), raw=st.booleans())
    def one_route(body: object, raw: bool) -> None:
        headers = {**credentials, "Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
        content = (json.dumps(body) if not raw else repr(body)).encode("utf-8", "surrogatepass")
        assert_no_server_error(client.request(method, path, content=content, headers=headers), (path, body))

    one_route()


async def test_no_request_body_or_query_makes_the_gateway_fail(http, stack):
    signed = await sign_up(http, beeline_number())
    credentials = {"user": bearer(signed), "store": STORE_KEY, "ussd": {"X-Api-Key": "dev-ussd-key"}, None: {}}

    def fuzz(client: httpx.Client) -> None:
        for method, path, fields, who in ROUTES:
            fuzz_route(client, method, path, fields, credentials[who])

        @BUDGET
        @given(params=st.dictionaries(st.sampled_from(["q", "category", "page_size", "page_token", "amount_kopecks",
                                                       "channel", "status"]), st.text(max_size=60), max_size=4),
               partner=st.text(min_size=1, max_size=40))
        def queries(params: dict[str, str], partner: str) -> None:
            for path in ("/v1/partners", f"/v1/partners/{quote(partner, safe='')}/quote", "/v1/me/purchases",
                         "/v1/me/statement"):
                assert_no_server_error(client.get(path, params=params, headers=credentials["user"]), (path, params))

        queries()

    await fuzz_in_thread(stack.gateway_url, fuzz)


async def test_no_postback_makes_a_server_error(stack):
    def fuzz(client: httpx.Client) -> None:
        @BUDGET
        @given(body=json_bodies(DIRECT_FIELDS), signed=st.booleans())
        def direct(body: object, signed: bool) -> None:
            raw = json.dumps(body).encode("utf-8", "surrogatepass")
            headers = {"Content-Type": "application/json",
                       "X-Cashback-Signature": sign_direct(raw) if signed else "t=1,v1=00"}
            assert_no_server_error(client.post("/v1/postbacks/direct", content=raw, headers=headers), body)

        @BUDGET
        @given(params=st.dictionaries(st.sampled_from(NETWORK_FIELDS), LIKELY.map(str), max_size=len(NETWORK_FIELDS)),
               as_form=st.booleans())
        def network(params: dict[str, str], as_form: bool) -> None:
            params = {**params, "secret": "dev-admitad-secret"}
            reply = (client.post("/v1/postbacks/admitad", data=params) if as_form
                     else client.get("/v1/postbacks/admitad", params=params))
            assert_no_server_error(reply, params)

        direct()
        network()

    await fuzz_in_thread(stack.gateway_url, fuzz)
