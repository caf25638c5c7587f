"""python -m gateway [config]"""

from __future__ import annotations

import sys

import uvicorn

from gateway.app import create_app
from gateway.config import Settings
from services.common.config import check_no_dev_override, print_settings
from services.common.credentials import service_token
from services.common.logs import setup_logging


def main() -> None:
    settings = Settings.from_env()
    if sys.argv[1:] == ["config"]:
        print_settings(settings)
        return
    # Outside dev: no per-service dev switch, and the gateway's own service token, or no start.
    check_no_dev_override()
    service_token("gateway")
    # uvicorn handles SIGTERM/SIGINT: stops accepting, lets in-flight requests finish, runs the lifespan's exit.
    # httptools: the C HTTP parser (h11 is pure Python); the stock asyncio loop, under which grpc.aio is supported.
    # Forwarded headers are read by the gateway itself, from the proxies named in GATEWAY_TRUSTED_PROXIES only
    # (uvicorn's own handling trusts anything on the loopback).
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                timeout_graceful_shutdown=10, proxy_headers=False, access_log=False, http="httptools",
                loop="asyncio")


if __name__ == "__main__":
    if sys.argv[1:] != ["config"]:
        setup_logging("gateway")
    main()
