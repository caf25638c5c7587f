"""The one table from gRPC status codes to HTTP, and the problems built from callee errors."""

from __future__ import annotations

import json

import grpc
import pytest

from gateway.errors import HTTP_BY_GRPC, http_status, rpc_error_response
from services.common.grpc_server import status_trailer


def rpc_error(code: grpc.StatusCode, message: str, reason: str | None = None, **metadata: str) -> grpc.aio.AioRpcError:
    trailing = grpc.aio.Metadata()
    if reason is not None:
        for key, value in status_trailer(code, message, reason, "cashback.test", metadata):
            trailing.add(key, value)
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing, details=message)


@pytest.mark.parametrize(("code", "status"), [
    (grpc.StatusCode.INVALID_ARGUMENT, 400), (grpc.StatusCode.OUT_OF_RANGE, 400),
    (grpc.StatusCode.FAILED_PRECONDITION, 422), (grpc.StatusCode.UNAUTHENTICATED, 401),
    (grpc.StatusCode.PERMISSION_DENIED, 403), (grpc.StatusCode.NOT_FOUND, 404),
    (grpc.StatusCode.ALREADY_EXISTS, 409), (grpc.StatusCode.ABORTED, 409),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, 429), (grpc.StatusCode.UNAVAILABLE, 503),
    (grpc.StatusCode.DEADLINE_EXCEEDED, 504), (grpc.StatusCode.INTERNAL, 500), (grpc.StatusCode.UNKNOWN, 500),
    (grpc.StatusCode.DATA_LOSS, 500), (grpc.StatusCode.UNIMPLEMENTED, 500), (grpc.StatusCode.CANCELLED, 500),
])
def test_each_grpc_code_has_one_http_status(code, status):
    assert http_status(code) == status


def test_every_code_a_domain_error_can_carry_is_mapped_explicitly():
    from services.common.grpc_server import STATUS_BY_KIND

    assert set(STATUS_BY_KIND.values()) <= set(HTTP_BY_GRPC)


def test_an_idempotency_key_reused_with_another_body_is_422_whatever_the_code():
    assert http_status(grpc.StatusCode.ALREADY_EXISTS, "IDEMPOTENCY_KEY_REUSED") == 422


def test_business_refusal_becomes_a_problem_with_the_callees_reason_as_code():
    response = rpc_error_response(rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "not enough points",
                                            "INSUFFICIENT_FUNDS"))
    body = json.loads(response.body)
    assert response.status_code == 422 and response.media_type == "application/problem+json"
    assert body["code"] == "INSUFFICIENT_FUNDS" and body["detail"] == "not enough points"
    assert body["type"].endswith("/insufficient-funds") and body["status"] == 422


def test_rate_limited_carries_retry_after_from_error_info():
    response = rpc_error_response(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "wait", "RESEND_COOLDOWN",
                                            retry_after_seconds="42"))
    assert response.status_code == 429 and response.headers["retry-after"] == "42"
    assert json.loads(response.body)["code"] == "RESEND_COOLDOWN"


def test_rate_limited_without_a_hint_still_says_when_to_retry():
    response = rpc_error_response(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", "RATE_LIMITED"))
    assert response.headers["retry-after"] == "1"


def test_transport_failures_do_not_leak_grpc_internals():
    response = rpc_error_response(rpc_error(grpc.StatusCode.UNAVAILABLE,
                                            "failed to connect to all addresses; ipv4:127.0.0.1:1: Connection refused"))
    body = json.loads(response.body)
    assert response.status_code == 503 and body["code"] == "UNAVAILABLE" and "127.0.0.1" not in body["detail"]


def test_an_unavailable_upstream_says_when_to_retry():
    down = rpc_error_response(rpc_error(grpc.StatusCode.UNAVAILABLE, "Connection refused"))
    hinted = rpc_error_response(rpc_error(grpc.StatusCode.UNAVAILABLE, "database unavailable",
                                          "DATABASE_UNAVAILABLE", retry_after_seconds="7"))
    timeout = rpc_error_response(rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert down.status_code == 503 and int(down.headers["retry-after"]) >= 1
    assert hinted.status_code == 503 and hinted.headers["retry-after"] == "7"
    assert json.loads(hinted.body)["code"] == "DATABASE_UNAVAILABLE"
    assert timeout.status_code == 504 and "retry-after" not in timeout.headers


def test_an_internal_error_of_a_service_is_a_generic_500():
    response = rpc_error_response(rpc_error(grpc.StatusCode.INTERNAL, "KeyError: 'x' at line 3", "INTERNAL"))
    body = json.loads(response.body)
    assert response.status_code == 500 and body["code"] == "INTERNAL" and "KeyError" not in body["detail"]


def test_unauthenticated_from_a_service_challenges_for_a_bearer_token():
    response = rpc_error_response(rpc_error(grpc.StatusCode.UNAUTHENTICATED, "wrong code", "CODE_INVALID"))
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
