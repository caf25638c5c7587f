"""python -m services.tracking [config]"""

from __future__ import annotations

import sys

from services.common.main import run_service
from services.tracking.app import build_runtime
from services.tracking.config import Settings

if __name__ == "__main__":
    sys.exit(run_service("tracking", Settings.from_env(), build_runtime, sys.argv[1:]))
