"""python -m services.redemption"""

from __future__ import annotations

import asyncio

from services.common.grpc_server import serve
from services.common.logs import setup_logging
from services.redemption.app import build_runtime
from services.redemption.config import Settings


async def main() -> None:
    settings = Settings.from_env()
    await serve(build_runtime(settings), host=settings.host, port=settings.port)


if __name__ == "__main__":
    setup_logging("redemption")
    asyncio.run(main())
