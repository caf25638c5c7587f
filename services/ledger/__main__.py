"""python -m services.ledger [config]"""

from __future__ import annotations

import sys

from services.common.main import run_service
from services.ledger.app import build_runtime
from services.ledger.config import Settings

if __name__ == "__main__":
    sys.exit(run_service("ledger", Settings.from_env(), build_runtime, sys.argv[1:]))
