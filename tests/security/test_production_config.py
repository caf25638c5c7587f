"""6. Production does not start half-configured: a process missing a secret, a key or an address it
needs, or with a per-service switch turning dev behaviour on, stops at once with a message naming
the variable (and before touching its database)."""

from __future__ import annotations

import asyncio
import os

import pytest

from services.common.config import ROOT
from services.common.credentials import hash_key

pytestmark = pytest.mark.e2e

PROD = {"CASHBACK_ENV": "prod", "CASHBACK_SERVICE_CREDENTIALS": f"gateway:{hash_key('gateway-token')}",
        "CASHBACK_SERVICE_TOKEN": "its-own-token", "REDIS_URL": "off", "LOG_LEVEL": "WARNING"}
IDENTITY_READY = {"IDENTITY_CODE_PEPPER": "a-real-pepper", "IDENTITY_SMS_URL": "http://127.0.0.1:9/sms"}
CASES = [
    ("identity", {}, "IDENTITY_CODE_PEPPER"),
    ("identity", {"IDENTITY_CODE_PEPPER": "dev-code-pepper"}, "IDENTITY_CODE_PEPPER"),
    ("identity", IDENTITY_READY, "IDENTITY_OPERATOR_SSO_PUBLIC_KEY_PEM"),
    ("redemption", {}, "REDEMPTION_BILLING_URL"),
    ("tracking", {"TRACKING_DIRECT_SECRETS": "s1", "TRACKING_ADMITAD_SECRET": "s2", "TRACKING_ENV": "dev"},
     "TRACKING_ENV"),
    ("tracking", {}, "TRACKING_DIRECT_SECRETS"),
    ("gateway", {"CASHBACK_SERVICE_TOKEN": ""}, "CASHBACK_SERVICE_TOKEN"),
]


async def run(module: str, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        ROOT / ".venv" / "bin" / "python", "-m", module, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    except TimeoutError:
        process.kill()  # it started after all: the test fails, the process does not linger
        await process.wait()
        raise
    return process.returncode or 0, stderr.decode(errors="replace")


@pytest.mark.parametrize(("service", "variables", "named"), CASES)
async def test_a_half_configured_production_process_stops_naming_the_variable(service, variables, named, tmp_path):
    database = tmp_path / f"{service}.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IDENTITY_", "TRACKING_", "REDEMPTION_",
                                                                     "GATEWAY_", "CASHBACK_"))}
    env.update(PROD, PYTHONPATH=f"{ROOT}{os.pathsep}{ROOT / 'gen'}",
               **{f"{service.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{database}", f"{service.upper()}_PORT": "0"})
    env.update(variables)
    code, stderr = await run("gateway" if service == "gateway" else f"services.{service}", env)
    assert code != 0, stderr
    assert named in stderr, stderr
    assert not database.exists()
