"""The protos are the source of truth: buf lint is clean and every RPC has a request and a
response named after it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.common.config import ROOT


def test_buf_lint_is_clean():
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run([str(buf), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
