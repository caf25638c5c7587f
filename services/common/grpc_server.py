"""gRPC server bootstrap, written once: health, reflection, error mapping, request ids,
graceful shutdown. A service describes itself as a `Runtime`; tests start it on port 0 with
`start()`, `__main__` runs it with `serve()`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError

from services.common.config import ConfigError, check_no_dev_override
from services.common.credentials import AUTHORIZATION_KEY, ServiceCredentials
from services.common.errors import DomainError, ErrorKind
from services.common.logs import request_id_var

log = logging.getLogger("cashback.grpc")

STATUS_BY_KIND: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}
STATUS_DETAILS_KEY = "grpc-status-details-bin"
# Open to any caller: probes (load balancers, `python -m services.common.healthcheck`) and grpcurl.
_OPEN_METHODS = ("/grpc.health.v1.Health/", "/grpc.reflection.")
REQUEST_ID_KEY = "x-request-id"


def status_trailer(code: grpc.StatusCode, message: str, reason: str, domain: str,
                   metadata: dict[str, str]) -> tuple[tuple[str, bytes], ...]:
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=metadata))
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


@dataclass(frozen=True)
class RpcErrorInfo:
    """A call's failure as the caller sees it: the status, and the ErrorInfo reason and metadata."""

    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]


def failure_of(exc: Exception, method: str) -> RpcErrorInfo:
    """The one mapping of a use case's exception to what the caller gets (logged as it goes):
    a domain error → its status code and reason; the database out of reach → UNAVAILABLE (a
    transient condition, safe to retry); anything else → INTERNAL, with the traceback in the log."""
    if isinstance(exc, DomainError):
        code = STATUS_BY_KIND[exc.kind]
        log.info("%s -> %s %s: %s", method, code.name, exc.reason, exc.message)
        return RpcErrorInfo(code, exc.message, exc.reason, dict(exc.metadata))
    if isinstance(exc, (OperationalError, InterfaceError, SQLAlchemyTimeoutError, ConnectionError)):
        log.warning("%s: database unavailable: %s", method, exc)
        return RpcErrorInfo(grpc.StatusCode.UNAVAILABLE, "database unavailable", "DATABASE_UNAVAILABLE", {})
    log.error("%s failed", method, exc_info=exc)
    return RpcErrorInfo(grpc.StatusCode.INTERNAL, "internal error", "INTERNAL", {})


class CallInterceptor(grpc.aio.ServerInterceptor):
    """Every call of our services passes here: the caller's service credential is checked (see
    services/common/credentials.py; the health check and reflection are open), its request id is
    bound to the logs of the call, and exceptions become statuses with ErrorInfo (`failure_of`).
    Our services' RPCs are all unary; a streaming one would be refused rather than let through
    unchecked."""

    def __init__(self, service: str, credentials: ServiceCredentials) -> None:
        self._service = service
        self._domain = f"cashback.{service}"
        self._credentials = credentials

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_OPEN_METHODS):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        caller = self._credentials.caller(metadata.get(AUTHORIZATION_KEY))
        if caller is None or handler.unary_unary is None:
            return self._refusal(method, "a service credential is required (authorization: Bearer <token>)"
                                 if caller is None else "streaming calls are not served")
        if not self._credentials.permits(caller, self._service, method):
            return self._refusal(method, f"caller {caller} may not call {method}", denied=True)
        inner = handler.unary_unary
        domain = self._domain
        request_id = metadata.get(REQUEST_ID_KEY, "-")

        async def wrapper(request: Any, context: grpc.aio.ServicerContext) -> Any:
            token = request_id_var.set(str(request_id))
            try:
                return await inner(request, context)
            except (grpc.aio.AbortError, asyncio.CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001 - mapped by the one table below
                failure = failure_of(exc, method)
                await context.abort(failure.code, failure.message,
                                    trailing_metadata=status_trailer(failure.code, failure.message, failure.reason,
                                                                     domain, failure.metadata))
            finally:
                request_id_var.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            wrapper,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _refusal(self, method: str, message: str, *, denied: bool = False) -> grpc.RpcMethodHandler:
        log.warning("%s refused: %s", method, message)
        code, reason = ((grpc.StatusCode.PERMISSION_DENIED, "SERVICE_METHOD_NOT_PERMITTED") if denied
                        else (grpc.StatusCode.UNAUTHENTICATED, "SERVICE_CREDENTIAL_INVALID"))
        trailer = status_trailer(code, message, reason, self._domain, {})

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(code, message, trailing_metadata=trailer)

        return grpc.unary_unary_rpc_method_handler(refuse)


@dataclass
class Runtime:
    """What a service brings to the bootstrap."""

    name: str  # "ledger"
    service_names: list[str]  # full gRPC names, for health and reflection
    register: Callable[[grpc.aio.Server], None]
    background: list[Callable[[], Coroutine[Any, Any, None]]] = field(default_factory=list)
    close: Callable[[], Awaitable[None]] | None = None


@dataclass
class RunningService:
    runtime: Runtime
    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    tasks: list[asyncio.Task[None]]

    async def stop(self, grace: float = 5.0) -> None:
        """Health flips to NOT_SERVING, new calls are refused, in-flight calls get `grace`."""
        for name in ["", *self.runtime.service_names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace)
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.runtime.close is not None:
            await self.runtime.close()


async def _guard(job: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
    """A background loop that dies is logged and restarted, never silently lost."""
    while True:
        try:
            await job()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job %s crashed; restarting in 1 s", name)
            await asyncio.sleep(1)


async def start(runtime: Runtime, *, host: str = "127.0.0.1", port: int = 0,
                credentials: ServiceCredentials | None = None) -> RunningService:
    """`credentials`: whom the service takes calls from (default: from the environment)."""
    credentials = credentials or ServiceCredentials.from_env()  # outside dev, refuses to start without any
    server = grpc.aio.server(interceptors=[CallInterceptor(runtime.name, credentials)])
    runtime.register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*runtime.service_names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME],
        server,
    )
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"{runtime.name}: cannot listen on {host}:{port}")
    await server.start()
    for name in ["", *runtime.service_names]:
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    tasks = [asyncio.create_task(_guard(job, job.__qualname__)) for job in runtime.background]
    return RunningService(runtime, server, bound, health_servicer, tasks)


async def serve(build: Coroutine[Any, Any, Runtime], *, host: str, port: int, grace: float = 10.0) -> None:
    """Builds the runtime (its migrations, connections), runs it until SIGTERM or SIGINT, then
    shuts down gracefully. A missing service credential, or a per-service variable switching dev
    behaviour on in production, stops it before anything is built."""
    try:
        check_no_dev_override()
        credentials = ServiceCredentials.from_env()
    except ConfigError:
        build.close()
        raise
    runtime = await build
    running = await start(runtime, host=host, port=port, credentials=credentials)
    log.info("%s listening on %s:%d", runtime.name, host, running.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s shutting down (grace %.0f s)", runtime.name, grace)
    await running.stop(grace)
    log.info("%s stopped", runtime.name)
