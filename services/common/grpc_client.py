"""Outgoing gRPC: one channel per upstream, a deadline on every call, the request id passed on,
and domain errors read back from `ErrorInfo`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from services.common.credentials import AUTHORIZATION_KEY, service_token
from services.common.grpc_server import REQUEST_ID_KEY, STATUS_DETAILS_KEY, RpcErrorInfo, status_trailer
from services.common.logs import request_id_var

DEFAULT_DEADLINE_SECONDS = 5.0
MAX_RECONNECT_BACKOFF_MS = 2000
_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class _CallDefaults(grpc.aio.UnaryUnaryClientInterceptor):
    """A deadline on every call, the request id passed on, the service credential presented."""

    def __init__(self, default_timeout: float, token: str) -> None:
        self._default_timeout = default_timeout
        self._authorization = (AUTHORIZATION_KEY, f"Bearer {token}") if token else None

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        metadata = list(client_call_details.metadata or [])
        if self._authorization is not None and not any(k == AUTHORIZATION_KEY for k, _ in metadata):
            metadata.append(self._authorization)
        request_id = request_id_var.get()
        if request_id != "-" and not any(k == REQUEST_ID_KEY for k, _ in metadata):
            metadata.append((REQUEST_ID_KEY, request_id))
        details = grpc.aio.ClientCallDetails(
            method=client_call_details.method,
            timeout=client_call_details.timeout or self._default_timeout,
            metadata=grpc.aio.Metadata(*metadata),
            credentials=client_call_details.credentials,
            wait_for_ready=client_call_details.wait_for_ready,
        )
        return await continuation(details, request)


def open_channel(address: str, *, default_timeout: float = DEFAULT_DEADLINE_SECONDS,
                 token: str | None = None, caller: str | None = None) -> grpc.aio.Channel:
    """A channel to one of our services; its calls present `token` (default: the service token of
    this process, `caller`: `services.common.credentials.service_token`). While the service is
    down, calls fail at once (UNAVAILABLE) and the channel tries to reconnect at most every
    MAX_RECONNECT_BACKOFF_MS (gRPC's default grows to 120 s): a restarted service is used again
    within a couple of seconds."""
    return grpc.aio.insecure_channel(
        address,
        interceptors=[_CallDefaults(default_timeout, service_token(caller) if token is None else token)],
        options=[("grpc.keepalive_time_ms", 30_000), ("grpc.enable_retries", 1),
                 ("grpc.initial_reconnect_backoff_ms", 500),
                 ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS)],
    )


def error_info(exc: grpc.aio.AioRpcError) -> RpcErrorInfo:
    """The stable reason and metadata a service put in `ErrorInfo`, or the code's name."""
    reason, metadata = exc.code().name, {}
    for key, value in exc.trailing_metadata() or ():
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    reason, metadata = info.reason, dict(info.metadata)
    return RpcErrorInfo(exc.code(), exc.details() or "", reason, metadata)


def failure_as_error(code: int, message: str, reason: str, metadata: Mapping[str, str],
                     domain: str) -> grpc.aio.AioRpcError:
    """The failure a batch call reports for one of its items (an `RpcFailure`), as the error the
    unary call would have raised: `error_info` and every caller's error handling read it alike."""
    status = _CODE_BY_NUMBER.get(code, grpc.StatusCode.UNKNOWN)
    trailer = status_trailer(status, message, reason, domain, dict(metadata))
    return grpc.aio.AioRpcError(status, grpc.aio.Metadata(), grpc.aio.Metadata(*trailer), details=message)
