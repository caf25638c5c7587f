"""Schemathesis against the running stack's `/openapi.json`: every operation, positive and negative
data, every check (including `not_a_server_error`, `ignored_auth`, `use_after_free`,
`negative_data_rejection`), once as each of two signed-up users. Credentials are set per
operation by the security scheme it declares: the user's bearer token on user routes, the dev
`X-Api-Key` of stores, the USSD gateway or support staff on theirs."""

from __future__ import annotations

import random
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.e2e.conftest import sign_up

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 8
STATEFUL_EXAMPLES = 15
DEV_KEYS = {"store_key": "dev-store-key", "ussd_key": "dev-ussd-key", "support_key": "dev-support-key"}
# A schema-valid request may still be refused for facts no JSON schema can state: 422 for business
# refusals (not enough points, an Idempotency-Key reused with another body), and 400 only with one
# of these codes (checked by `schema_valid_requests_pass_validation` below).
ACCEPTED_FOR_VALID_DATA = ["2xx", "3xx", "400", "401", "403", "404", "409", "422", "429"]
# Schema-violating data is refused with schemathesis's usual statuses, or by the gateway's caps on the
# request (413 body, 414 path and query, 431 headers) before any validation.
REFUSED_INVALID_DATA = ["400", "401", "403", "404", "405", "406", "409", "413", "414", "415", "422", "428",
                        "429", "431", "5xx"]
FACTS_NO_SCHEMA_STATES = {
    "PHONE_INVALID",  # a Russian mobile number, by the numbering plan
    "EMAIL_INVALID",  # an address that can receive mail
    "PAGE_TOKEN_INVALID",  # only tokens the service issued
    "CERTIFICATE_CODE_MALFORMED",  # the code's check symbol
    "CLAIM_INVALID",  # an order date not in the future
}


@schemathesis.check
def schema_valid_requests_pass_validation(ctx, response, case) -> bool | None:
    """What the document calls valid passes the gateway's own validation (no VALIDATION_FAILED) and
    the services' shape checks: a 400 to schema-valid data names a fact the schema cannot state."""
    if case.meta is None or not case.meta.generation.mode.is_positive or response.status_code != 400:
        return None
    code = response.json().get("code")
    assert code in FACTS_NO_SCHEMA_STATES, f"schema-valid request refused with 400 {code}: {response.text[:300]}"
    return None


def fuzz_config(access_token: str, *, stateful: bool = False) -> schemathesis.Config:
    return schemathesis.Config.from_dict({
        "seed": 7,
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "phases": {"stateful": {"enabled": stateful}},
        "checks": {"enabled": True, "positive_data_acceptance": {"expected-statuses": ACCEPTED_FOR_VALID_DATA},
                   "negative_data_rejection": {"expected-statuses": REFUSED_INVALID_DATA}},
        "auth": {"auto-signup": False, "openapi": {
            "bearer": {"bearer": access_token},
            **{scheme: {"api_key": key} for scheme, key in DEV_KEYS.items()},
        }},
    })


@pytest.fixture(scope="session")
async def fuzz_users(stack) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=15) as http:
        return {name: await sign_up(http, f"+7903{random.randint(0, 9_999_999):07d}") for name in ("alice", "bob")}


@pytest.fixture(params=["alice", "bob"])
def api_schema(request, stack, fuzz_users):
    token = fuzz_users[request.param]["access_token"]
    return schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json", config=fuzz_config(token))


@pytest.fixture(autouse=True)
def _pytest_node_id_shim(request) -> None:
    """schemathesis 4.32's `from_fixture` renames the running item through `_nodeid`, which pytest
    9.2 no longer has (it keeps a structured `_id`); give the item the attribute it reads."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_holds_its_contract(case):
    case.call_and_validate()


def test_stateful_sequences_through_inferred_links(stack, fuzz_users):
    """Sequences of calls that feed one response into the next request (links schemathesis infers,
    e.g. a certificate id from the list into its transfer), with every check on every step."""
    from hypothesis.stateful import run_state_machine_as_test

    schema = schemathesis.openapi.from_url(f"{stack.gateway_url}/openapi.json",
                                           config=fuzz_config(fuzz_users["alice"]["access_token"], stateful=True))
    machine = schema.as_state_machine()
    run_state_machine_as_test(machine, settings=settings(
        max_examples=STATEFUL_EXAMPLES, stateful_step_count=6, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
