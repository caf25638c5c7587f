"""`make run`'s supervisor brings the whole stack up, says where everything listens, and stops
all of it cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import httpx
import pytest

from scripts.stack import DEFAULT_STACK_PORTS, free_port
from services.common.config import ROOT

pytestmark = pytest.mark.e2e


async def test_run_stack_starts_everything_and_ctrl_c_stops_it(new_database, redis_url, tmp_path):
    ports = {name: free_port() for name in DEFAULT_STACK_PORTS}
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}", "CASHBACK_ENV": "dev",
           "REDIS_URL": redis_url, **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()}}
    for service in ("identity", "tracking", "ledger", "redemption"):
        env[f"{service.upper()}_DATABASE_URL"] = await new_database(service)
    log = open(tmp_path / "run.log", "wb")  # noqa: ASYNC230, SIM115
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "scripts.run_stack", cwd=str(ROOT), env=env,
                                                stdout=log, stderr=asyncio.subprocess.STDOUT)
    try:
        ready = False
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(300):
                assert proc.returncode is None, (tmp_path / "run.log").read_text()[-3000:]
                try:
                    ready = (await client.get(f"http://127.0.0.1:{ports['gateway']}/readyz")).status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    break
                await asyncio.sleep(0.2)
        assert ready, (tmp_path / "run.log").read_text()[-3000:]
        for _ in range(300):  # the banner follows readiness (and the website, started last)
            if b"stack is up" in (tmp_path / "run.log").read_bytes():
                break
            await asyncio.sleep(0.1)
        banner = (tmp_path / "run.log").read_text()
        for name, port in ports.items():
            assert f"127.0.0.1:{port}" in banner, f"{name} not announced"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        output = (tmp_path / "run.log").read_text()
        assert "stopped." in output
        for name in ("ledger", "identity", "tracking", "redemption"):
            assert f"{name} stopped" in output, f"{name} did not stop gracefully"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
