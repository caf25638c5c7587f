"""The one entry point of a service process: `python -m services.<name>` runs it (migrations,
connections, gRPC server, graceful stop on SIGTERM); `python -m services.<name> config` prints the
effective settings, read from the environment, with secrets masked."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from services.common.config import print_settings
from services.common.grpc_server import Runtime, serve
from services.common.logs import setup_logging


class ServiceSettings(Protocol):
    host: str
    port: int


def run_service(name: str, settings: ServiceSettings,
                build_runtime: Callable[[Any], Coroutine[Any, Any, Runtime]], argv: list[str]) -> int:
    if argv == ["config"]:
        print_settings(settings)
        return 0
    if argv:
        print(f"usage: python -m services.{name} [config]", file=sys.stderr)
        return 2
    setup_logging(name)
    asyncio.run(serve(build_runtime(settings), host=settings.host, port=settings.port))
    return 0
