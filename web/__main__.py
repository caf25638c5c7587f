"""python -m web [config]"""

from __future__ import annotations

import sys

import uvicorn

from services.common.config import print_settings
from services.common.logs import setup_logging
from web.app import create_app
from web.config import Settings


def main() -> None:
    settings = Settings.from_env()
    if sys.argv[1:] == ["config"]:
        print_settings(settings)
        return
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                timeout_graceful_shutdown=10, proxy_headers=True, access_log=False, http="httptools",
                loop="asyncio")


if __name__ == "__main__":
    if sys.argv[1:] != ["config"]:
        setup_logging("web")
    main()
