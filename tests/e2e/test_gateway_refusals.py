"""Each client reaches only what is its own, through the gateway of the shared stack: another user's
certificates, payments and claims stay invisible and untouchable; a store's credential opens no
user route; a user's token opens no store or support route; a forged token opens nothing. Every
refusal is a problem with a code, never a 500. (An expired token signed by identity's own key is
in tests/service/test_gateway_identity.py, where the clock can be set.) And the request id a client
sends is in the gateway's and the services' log lines of that request."""

from __future__ import annotations

import asyncio
import pathlib
import random
import uuid
from datetime import date

import httpx
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.grpc_client import open_channel
from tests.e2e.conftest import sign_up

pytestmark = pytest.mark.e2e

PROBLEM = "application/problem+json"


def assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["code"] == code, response.text
    assert "Traceback" not in response.text


def phone() -> str:
    return f"+7982{random.randint(0, 9_999_999):07d}"  # the operator's (MTS): its bill can be paid


async def fund(stack, user_id: str, amount: int) -> None:
    ledger = next(p for p in stack.stack.procs if p.name == "ledger")
    channel = open_channel(f"127.0.0.1:{ledger.port}")
    try:
        await ledger_pb2_grpc.LedgerServiceStub(channel).CreateTransfer(ledger_pb2.CreateTransferRequest(
            transfer=ledger_pb2.Transfer(
                transfer_id=f"cashback:{uuid.uuid4()}", kind=ledger_pb2.TRANSFER_KIND_CASHBACK, amount_kopecks=amount,
                debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
                credit_account=ledger_pb2.AccountRef(user_id=user_id))))
    finally:
        await channel.close()


async def test_a_user_never_reaches_another_users_certificates_payments_or_claims(http, stack):
    alice, bob = await sign_up(http, phone()), await sign_up(http, phone())
    as_alice = {"Authorization": f"Bearer {alice['access_token']}"}
    as_bob = {"Authorization": f"Bearer {bob['access_token']}"}
    await fund(stack, alice["user"]["user_id"], 100_000)

    alice_key = str(uuid.uuid4())
    certificate = await http.post("/v1/me/certificates", json={"nominal_kopecks": 10_000},
                                  headers={**as_alice, "Idempotency-Key": alice_key})
    assert certificate.status_code == 201, certificate.text
    payment = await http.post("/v1/me/mobile-payments", json={"amount_kopecks": 5_000},
                              headers={**as_alice, "Idempotency-Key": str(uuid.uuid4())})
    assert payment.status_code == 201, payment.text
    claim = await http.post("/v1/me/claims", headers=as_alice, json={
        "partner_id": "aliexpress", "order_id": f"AE-{uuid.uuid4().hex[:8]}",
        "order_date": date.today().isoformat(), "amount_kopecks": 100_000})
    assert claim.status_code == 201, claim.text
    certificate_id = certificate.json()["certificate_id"]

    # Bob names Alice's certificate: as if it did not exist.
    handed = await http.post(f"/v1/me/certificates/{certificate_id}/transfer", json={"to_phone": bob["user"]["phone"]},
                             headers=as_bob)
    assert_refused(handed, 404, "CERTIFICATE_NOT_FOUND")
    # Bob replays Alice's Idempotency-Key: not her stored answer, but his own order (refused: no points).
    replay = await http.post("/v1/me/certificates", json={"nominal_kopecks": 10_000},
                             headers={**as_bob, "Idempotency-Key": alice_key})
    assert replay.status_code == 422 and replay.json()["code"] == "INSUFFICIENT_FUNDS", replay.text
    for path, field in (("/v1/me/certificates", "certificates"), ("/v1/me/mobile-payments", "payments"),
                        ("/v1/me/claims", "claims"), ("/v1/me/statement", "entries")):
        mine = await http.get(path, headers=as_bob)
        assert mine.status_code == 200 and mine.json()[field] == [], (path, mine.text)
    # Alice still sees hers, untouched.
    hers = (await http.get("/v1/me/certificates", headers=as_alice)).json()["certificates"]
    assert [(c["certificate_id"], c["status"]) for c in hers] == [(certificate_id, "ACTIVE")]
    # A user's token is no support credential: Bob cannot decide Alice's claim.
    decided = await http.post(f"/v1/support/claims/{claim.json()['claim_id']}/approve", headers=as_bob)
    assert_refused(decided, 401, "API_KEY_MISSING")


@pytest.mark.parametrize("path", ["/v1/me", "/v1/me/balance", "/v1/me/certificates", "/v1/me/claims"])
async def test_a_store_credential_opens_no_user_route(http, path):
    as_store_header = await http.get(path, headers={"X-Api-Key": "dev-store-key"})
    as_store_bearer = await http.get(path, headers={"Authorization": "Bearer dev-store-key"})
    assert_refused(as_store_header, 401, "TOKEN_MISSING")
    assert_refused(as_store_bearer, 401, "TOKEN_INVALID")


async def test_a_user_token_opens_no_store_ussd_or_support_route(http):
    user = await sign_up(http, phone())
    token = user["access_token"]
    sale = {"certificate_code": "7KQM-2XWD-9HPT-4RNC-ZB3Z", "sale_id": "S-1", "device_price_kopecks": 100_000}
    calls = [("POST", "/v1/stores/certificate-redemptions", sale),
             ("POST", "/v1/ussd", {"msisdn": user["user"]["phone"], "request": "*100*1#"}),
             ("GET", "/v1/support/claims", None),
             ("POST", f"/v1/support/claims/{uuid.uuid4()}/reject", {"reason": "no"})]
    for method, path, body in calls:
        bearer = await http.request(method, path, json=body, headers={"Authorization": f"Bearer {token}"})
        as_key = await http.request(method, path, json=body, headers={"X-Api-Key": token})
        assert_refused(bearer, 401, "API_KEY_MISSING")
        assert_refused(as_key, 401, "API_KEY_INVALID")
    # One client's credential is not another's: the store's key on the support and USSD routes.
    assert_refused(await http.get("/v1/support/claims", headers={"X-Api-Key": "dev-store-key"}), 401,
                   "API_KEY_INVALID")
    assert_refused(await http.post("/v1/ussd", json=calls[1][2], headers={"X-Api-Key": "dev-store-key"}), 401,
                   "API_KEY_INVALID")


async def test_a_tampered_token_is_refused_not_trusted(http):
    user = await sign_up(http, phone())
    header, payload, signature = user["access_token"].split(".")
    other = await sign_up(http, phone())
    _, other_payload, _ = other["access_token"].split(".")
    swapped = f"{header}.{other_payload}.{signature}"  # Bob's claims under Alice's signature
    truncated = f"{header}.{payload}.{signature[:-4]}"
    for token in (swapped, truncated, f"{header}.{payload}.", "Bearer"):
        reply = await http.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert_refused(reply, 401, "TOKEN_INVALID")


async def test_the_request_id_is_in_the_gateway_and_service_log_lines_of_that_request(http, stack):
    user = await sign_up(http, phone())
    request_id = f"e2e-{uuid.uuid4().hex}"
    refused = await http.post("/v1/me/certificates", json={"nominal_kopecks": 10_000}, headers={
        "Authorization": f"Bearer {user['access_token']}", "Idempotency-Key": str(uuid.uuid4()),
        "X-Request-Id": request_id})
    assert refused.status_code == 422 and refused.json()["request_id"] == request_id, refused.text
    assert refused.headers["x-request-id"] == request_id

    def lines(name: str) -> list[str]:
        path = pathlib.Path(stack.log_dir) / f"{name}.log"
        return [line for line in path.read_text(errors="replace").splitlines() if f"[{request_id}]" in line]

    for _ in range(100):  # the processes write their logs asynchronously: bounded polling
        if lines("gateway") and lines("redemption"):
            break
        await asyncio.sleep(0.1)
    assert any("POST /v1/me/certificates -> 422" in line for line in lines("gateway")), lines("gateway")
    assert any("INSUFFICIENT_FUNDS" in line for line in lines("redemption")), lines("redemption")
