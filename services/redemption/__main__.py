"""python -m services.redemption [config]"""

from __future__ import annotations

import sys

from services.common.main import run_service
from services.redemption.app import build_runtime
from services.redemption.config import Settings

if __name__ == "__main__":
    sys.exit(run_service("redemption", Settings.from_env(), build_runtime, sys.argv[1:]))
