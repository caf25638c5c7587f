"""The gateway in-process, in front of real services: what all routes share (errors, auth,
health, request ids, limits, the OpenAPI document)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.app import create_app
from tests.service.gateway_harness import gateway_settings, running_gateway

PROBLEM = "application/problem+json"


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["title"] and body["detail"] and body["type"].startswith("https://")
    assert "Traceback" not in response.text
    return body


def foreign_token(kid: str = "someone-elses-key", **claims) -> str:
    key = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    now = int(datetime.now(UTC).timestamp())
    payload = {"sub": str(uuid.uuid4()), "iss": "cashback-identity", "aud": "cashback", "iat": now,
               "exp": now + 600, **claims}
    return jwt.encode(payload, key, algorithm="EdDSA", headers={"kid": kid})


async def test_healthz_answers_while_every_upstream_is_down():
    async with running_gateway(gateway_settings()) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_readyz_is_503_naming_the_upstreams_that_do_not_serve(start_service):
    ledger = await start_service("ledger")
    async with running_gateway(gateway_settings(ledger_address=ledger.address)) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["not_serving"] == ["identity", "redemption", "tracking"]


async def test_unknown_route_is_a_problem_not_an_html_page():
    async with running_gateway(gateway_settings()) as client:
        response = await client.get("/v1/nowhere")
    assert_problem(response, 404, "NOT_FOUND")


async def test_request_id_is_echoed_and_made_up_when_absent():
    async with running_gateway(gateway_settings()) as client:
        given = await client.get("/healthz", headers={"X-Request-Id": "req-42"})
        made = await client.get("/healthz")
        nasty = await client.get("/healthz", headers={"X-Request-Id": "a b\tc" * 100})
    assert given.headers["x-request-id"] == "req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", nasty.headers["x-request-id"])


async def test_user_route_without_a_token_is_401_with_a_bearer_challenge():
    async with running_gateway(gateway_settings()) as client:
        response = await client.get("/v1/me/balance")
    assert_problem(response, 401, "TOKEN_MISSING")
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256")])
async def test_malformed_or_keyless_token_is_401(token):
    async with running_gateway(gateway_settings()) as client:
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert_problem(response, 401, "TOKEN_INVALID")


async def test_token_check_needing_identity_while_it_is_down_is_503_not_401():
    async with running_gateway(gateway_settings()) as client:
        response = await client.get("/v1/me", headers={"Authorization": f"Bearer {foreign_token()}"})
    assert_problem(response, 503, "UNAVAILABLE")


async def test_store_route_refuses_a_missing_a_wrong_and_another_clients_key():
    body = {"certificate_code": "7KQM-2XWD-9HPT-4RNC-ZB3Z", "sale_id": "S-1", "device_price_kopecks": 100000}
    async with running_gateway(gateway_settings()) as client:
        missing = await client.post("/v1/stores/certificate-redemptions", json=body)
        wrong = await client.post("/v1/stores/certificate-redemptions", json=body, headers={"X-Api-Key": "guess"})
        ussd = await client.post("/v1/stores/certificate-redemptions", json=body,
                                 headers={"X-Api-Key": "dev-ussd-key"})
        bearer = await client.post("/v1/stores/certificate-redemptions", json=body,
                                   headers={"Authorization": f"Bearer {foreign_token()}"})
    assert_problem(missing, 401, "API_KEY_MISSING")
    assert_problem(wrong, 401, "API_KEY_INVALID")
    assert_problem(ussd, 401, "API_KEY_INVALID")
    assert_problem(bearer, 401, "API_KEY_MISSING")


async def test_support_and_ussd_routes_take_only_their_own_keys():
    async with running_gateway(gateway_settings()) as client:
        store_on_support = await client.get("/v1/support/claims", headers={"X-Api-Key": "dev-store-key"})
        support_on_ussd = await client.post("/v1/ussd", json={"msisdn": "+79161234567", "request": "*100*1#"},
                                            headers={"X-Api-Key": "dev-support-key"})
    assert_problem(store_on_support, 401, "API_KEY_INVALID")
    assert_problem(support_on_ussd, 401, "API_KEY_INVALID")


async def test_dev_keys_are_not_accepted_outside_dev(monkeypatch):
    from gateway.config import Settings

    monkeypatch.setenv("CASHBACK_ENV", "prod")
    monkeypatch.setenv("CASHBACK_SERVICE_TOKEN", "gateway-token")  # required outside dev
    for name in ("GATEWAY_STORE_KEYS", "GATEWAY_USSD_KEYS", "GATEWAY_SUPPORT_KEYS"):
        monkeypatch.delenv(name, raising=False)
    prod = Settings.from_env()
    assert prod.store_keys == () and prod.ussd_keys == () and prod.support_keys == ()
    async with running_gateway(gateway_settings(env="prod", store_keys=(), ussd_keys=(), support_keys=())) as client:
        response = await client.post("/v1/ussd", json={"msisdn": "+79161234567", "request": "*100*1#"},
                                     headers={"X-Api-Key": "dev-ussd-key"})
    assert_problem(response, 401, "API_KEY_INVALID")


async def test_a_valid_store_key_with_a_bad_body_is_a_validation_problem():
    async with running_gateway(gateway_settings()) as client:
        response = await client.post("/v1/stores/certificate-redemptions", headers={"X-Api-Key": "dev-store-key"},
                                     json={"certificate_code": "X", "sale_id": "S", "device_price_kopecks": "lots"})
    body = assert_problem(response, 400, "VALIDATION_FAILED")
    assert any(e["location"] == "body.device_price_kopecks" for e in body["errors"])


async def test_a_valid_store_key_reaches_redemption_and_its_absence_is_503():
    async with running_gateway(gateway_settings()) as client:
        response = await client.post("/v1/stores/certificate-redemptions", headers={"X-Api-Key": "dev-store-key"},
                                     json={"certificate_code": "7KQM-2XWD-9HPT-4RNC-ZB3Z", "sale_id": "S-1",
                                           "device_price_kopecks": 100000})
    assert_problem(response, 503, "UNAVAILABLE")


async def test_postback_with_tracking_down_is_503_so_the_network_retries():
    async with running_gateway(gateway_settings()) as client:
        response = await client.get("/v1/postbacks/admitad?order_id=1&status=approved")
    assert_problem(response, 503, "UNAVAILABLE")


async def test_body_over_the_cap_is_413_declared_or_streamed():
    async with running_gateway(gateway_settings(max_body_bytes=1024)) as client:
        declared = await client.post("/v1/postbacks/direct", content=b"x" * 4096)

        async def chunks():
            for _ in range(8):
                yield b"y" * 512

        streamed = await client.post("/v1/postbacks/direct", content=chunks())
    assert_problem(declared, 413, "BODY_TOO_LARGE")
    assert_problem(streamed, 413, "BODY_TOO_LARGE")


async def test_dev_outbox_exists_only_in_dev():
    async with running_gateway(gateway_settings(env="prod")) as client:
        response = await client.get("/dev/outbox?to=%2B79161234567")
        document = (await client.get("/openapi.json")).json()
    assert_problem(response, 404, "NOT_FOUND")
    assert "/dev/outbox" not in document["paths"]


async def test_unexpected_failure_is_a_500_with_a_correlation_id_and_no_stack_trace(caplog):
    app = create_app(gateway_settings())

    async def explode() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/explode", explode)
    async with running_gateway(app.state.settings, app=app) as client:
        response = await client.get("/explode", headers={"X-Request-Id": "corr-7"})
    body = assert_problem(response, 500, "INTERNAL")
    assert "corr-7" in body["detail"] and "secret internals" not in response.text
    assert any("corr-7" in record.getMessage() for record in caplog.records)


async def test_rate_limit_per_address_answers_429_with_retry_after(real_redis_url):
    settings = gateway_settings(redis_url=real_redis_url, rate_limit_per_address=3)
    host = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    async with running_gateway(settings, client_host=host) as client:
        # A one-minute window may roll over once: 2 × limit + 1 requests must meet the limit.
        statuses = [(await client.get("/v1/me")) for _ in range(7)]
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert_problem(limited[0], 429, "RATE_LIMITED")
    assert 1 <= int(limited[0].headers["retry-after"]) <= 60


CONTRACT = {
    ("post", "/v1/auth/phone/codes"), ("post", "/v1/auth/phone/verify"), ("post", "/v1/auth/operator"),
    ("post", "/v1/auth/refresh"), ("post", "/v1/auth/logout"), ("get", "/v1/me"), ("patch", "/v1/me"),
    ("post", "/v1/me/email/codes"), ("post", "/v1/me/email/verify"), ("post", "/v1/me/disable"),
    ("post", "/v1/me/enable"), ("get", "/v1/me/balance"), ("get", "/v1/me/statement"),
    ("get", "/v1/me/purchases"), ("get", "/v1/me/notifications"), ("get", "/v1/categories"),
    ("get", "/v1/partners"), ("get", "/v1/partners/{partner_id}"), ("get", "/v1/partners/{partner_id}/quote"),
    ("post", "/v1/partners/{partner_id}/clicks"), ("get", "/go/{partner_id}"),
    ("post", "/v1/me/mobile-payments"), ("get", "/v1/me/mobile-payments"), ("post", "/v1/me/certificates"),
    ("get", "/v1/me/certificates"), ("post", "/v1/me/certificates/{certificate_id}/transfer"),
    ("post", "/v1/me/claims"), ("get", "/v1/me/claims"), ("get", "/v1/postbacks/{network}"),
    ("post", "/v1/postbacks/{network}"), ("post", "/v1/stores/certificate-redemptions"), ("post", "/v1/ussd"),
    ("get", "/v1/support/claims"), ("post", "/v1/support/claims/{claim_id}/approve"),
    ("post", "/v1/support/claims/{claim_id}/reject"), ("get", "/dev/outbox"), ("get", "/healthz"),
    ("get", "/readyz"),
}


async def test_openapi_documents_every_route_of_the_contract_with_security_and_problems():
    async with running_gateway(gateway_settings()) as client:
        document = (await client.get("/openapi.json")).json()
        docs = await client.get("/docs")
        assets = [await client.get(path) for path in re.findall(r'(?:src|href)="(/[^"]+)"', docs.text)]
    assert docs.status_code == 200
    # Swagger UI's script and style come from the gateway itself: /docs renders without internet.
    assert len(assets) >= 2 and all(a.status_code == 200 and a.content for a in assets), assets
    assert "://" not in docs.text
    documented = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert CONTRACT <= documented, CONTRACT - documented
    assert set(document["components"]["securitySchemes"]) == {"bearer", "access_cookie", "store_key", "ussd_key",
                                                              "support_key"}
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            if path.startswith("/v1/me"):
                assert op["security"] == [{"bearer": []}], (method, path)
                assert "401" in op["responses"]
            if path.startswith("/go/"):  # a plain link: the website's cookie too
                assert op["security"] == [{"bearer": []}, {"access_cookie": []}], (method, path)
                assert "401" in op["responses"] and "403" in op["responses"]
            if op.get("parameters") or op.get("requestBody"):
                problem = op["responses"]["400"]["content"]["application/problem+json"]["schema"]
                assert problem["$ref"].endswith("/Problem"), (method, path)
            assert "422" not in op["responses"] or "HTTPValidationError" not in str(op["responses"]["422"])
    schemes = {"/v1/stores": "store_key", "/v1/ussd": "ussd_key", "/v1/support": "support_key"}
    components = document["components"]["schemas"]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            for prefix, scheme in schemes.items():
                if path.startswith(prefix):
                    assert op["security"] == [{scheme: []}], (method, path)
            assert op["operationId"] == op["operationId"].lower() and op["summary"], (method, path)
            assert any(status.startswith("2") or status.startswith("3") for status in op["responses"]), (method, path)
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is not None:  # every request body shows an example
                assert "413" in op["responses"], (method, path)
                schema = components[body["schema"]["$ref"].rsplit("/", 1)[-1]] if "$ref" in body["schema"] else {}
                assert body.get("example") or any(
                    "examples" in prop for prop in schema.get("properties", {}).values()), (method, path)
    money = document["paths"]["/v1/me/mobile-payments"]["post"]
    key = next(p for p in money["parameters"] if p["name"] == "Idempotency-Key")
    assert key["in"] == "header" and key["required"] is True
    balance = document["components"]["schemas"]["BalanceResponse"]["properties"]
    assert balance["balance_kopecks"]["type"] == "integer"



async def test_an_upstream_that_never_answers_is_504_within_the_deadline():
    import socket

    with socket.socket() as silent:  # accepts connections (backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        async with running_gateway(gateway_settings(tracking_address=address, rpc_deadline_seconds=0.5)) as client:
            response = await client.get("/v1/categories")
    assert_problem(response, 504, "DEADLINE_EXCEEDED")
