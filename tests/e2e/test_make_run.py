"""`make run`'s supervisor brings the whole stack up, says where everything listens, keeps it
running (a process that dies is restarted while the others keep serving) and stops all of it
cleanly on Ctrl-C (SIGINT)."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from scripts.run_stack import Backoff, Supervisor
from scripts.stack import DEFAULT_STACK_PORTS, Process, Stack, free_port
from services.common.config import ROOT
from tests.e2e.conftest import direct_postback, sign_up

pytestmark = pytest.mark.e2e


@dataclass
class RunStack:
    proc: asyncio.subprocess.Process
    ports: dict[str, int]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def wait_for_output(self, pattern: str, *, after: int = 0, attempts: int = 600) -> re.Match[str]:
        """The first match of `pattern` in the output from offset `after` (bounded polling)."""
        for _ in range(attempts):
            found = re.compile(pattern).search(self.output(), after)
            if found:
                return found
            assert self.proc.returncode is None, self.output()[-3000:]
            await asyncio.sleep(0.1)
        raise AssertionError(f"{pattern!r} never printed:\n{self.output()[-3000:]}")

    def pid_of(self, name: str) -> int:
        """The process's pid as the banner announced it."""
        return int(re.search(rf"^  {name} +\S+ +\(pid (\d+)\)", self.output(), re.MULTILINE).group(1))  # type: ignore[union-attr]


@asynccontextmanager
async def make_run(new_database, redis_url: str, tmp_path: Path, **env: str) -> AsyncIterator[RunStack]:
    """`make run`'s entry point on free ports with fresh databases, up and ready; killed if still running."""
    ports = {name: free_port() for name in DEFAULT_STACK_PORTS}
    environ = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}", "CASHBACK_ENV": "dev",
               "REDIS_URL": redis_url, "IDENTITY_ADDRESS_CODES_PER_HOUR": "0",
               **{f"{name.upper()}_PORT": str(port) for name, port in ports.items()}, **env}
    for service in ("identity", "tracking", "ledger", "redemption"):
        environ[f"{service.upper()}_DATABASE_URL"] = await new_database(service)
    log_path = tmp_path / "run.log"
    log = open(log_path, "wb")  # noqa: ASYNC230, SIM115
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "scripts.run_stack", cwd=str(ROOT),
                                                env=environ, stdout=log, stderr=asyncio.subprocess.STDOUT)
    running = RunStack(proc, ports, log_path)
    try:
        ready = False
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(300):
                assert proc.returncode is None, running.output()[-3000:]
                try:
                    ready = (await client.get(f"http://127.0.0.1:{ports['gateway']}/readyz")).status_code == 200
                except httpx.HTTPError:
                    ready = False
                if ready:
                    break
                await asyncio.sleep(0.2)
        assert ready, running.output()[-3000:]
        await running.wait_for_output("stack is up")  # the banner follows readiness
        await running.wait_for_output(r"Ctrl-C stops everything")
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()


async def ctrl_c_stops_everything(running: RunStack) -> None:
    running.proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(running.proc.wait(), 60) == 0
    output = running.output()
    assert "stopped." in output
    for name in ("ledger", "identity", "tracking", "redemption"):
        assert f"{name} stopped" in output, f"{name} did not stop gracefully"


async def test_run_stack_starts_everything_and_ctrl_c_stops_it(new_database, redis_url, tmp_path):
    async with make_run(new_database, redis_url, tmp_path) as running:
        banner = running.output()
        for name, port in running.ports.items():
            assert f"127.0.0.1:{port}" in banner, f"{name} not announced"
        await ctrl_c_stops_everything(running)


async def test_a_killed_process_is_restarted_while_the_others_keep_serving(new_database, redis_url, tmp_path):
    # The first restart waits 5 s: time enough to see the stack without tracking.
    async with make_run(new_database, redis_url, tmp_path, STACK_RESTART_DELAY_SECONDS="5") as running, \
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.ports['gateway']}", timeout=15) as http:
        signed = await sign_up(http, f"+7903{random.randint(0, 9_999_999):07d}")
        auth = {"Authorization": f"Bearer {signed['access_token']}"}
        click = await http.post("/v1/partners/aliexpress/clicks", headers=auth)
        assert click.status_code == 201, click.text

        tracking_pid = running.pid_of("tracking")
        mark = len(running.output())
        os.kill(tracking_pid, signal.SIGKILL)
        await running.wait_for_output(
            rf"tracking \(pid {tracking_pid}\) exited: killed by SIGKILL .*restarting it in 5 s", after=mark)

        # Tracking is down: its routes are a 503 that says when to retry; the other services answer.
        down = await http.get("/v1/partners", params={"q": "ali"})
        assert down.status_code == 503, down.text
        assert down.headers["content-type"].startswith("application/problem+json")
        assert down.json()["code"] == "UNAVAILABLE" and int(down.headers["retry-after"]) >= 1
        me = await http.get("/v1/me", headers=auth)
        assert me.status_code == 200, me.text
        assert (await http.get("/readyz")).json()["not_serving"] == ["tracking"]

        # It comes back by itself, and a partner that retries every non-200 gets its report applied.
        restarted = await running.wait_for_output(r"tracking restarted \(pid (\d+)\)", after=mark)
        assert int(restarted.group(1)) != tracking_pid
        body, headers = direct_postback(
            order_id=f"AE-{uuid.uuid4().hex[:10]}", click_id=click.json()["click_id"], status="pending",
            amount_kopecks=1_000_000, currency="RUB", channel="web", customer_type="individual",
            event_time=datetime.now(UTC).isoformat())
        answers = []
        for _ in range(100):
            reply = await http.post("/v1/postbacks/direct", content=body, headers=headers)
            answers.append(reply.status_code)
            if reply.status_code == 200:
                break
            await asyncio.sleep(0.2)
        assert answers[-1] == 200 and set(answers[:-1]) <= {503}, answers
        assert reply.json()["outcome"] == "ACCEPTED", reply.text
        purchases = (await http.get("/v1/me/purchases", headers=auth)).json()["purchases"]
        assert [p["status"] for p in purchases] == ["PENDING"]

        await ctrl_c_stops_everything(running)
        assert "restarting" not in running.output()[running.output().index("stopping…"):]


async def test_a_process_that_keeps_exiting_is_restarted_ever_later_until_the_stop(tmp_path):
    crashing = Process("crashing", "scripts.no_such_module", free_port(), "grpc")  # python -m exits with 1
    stack = Stack([crashing], log_dir=str(tmp_path))
    said: list[str] = []
    supervisor = Supervisor(stack, Backoff(first=0.05, cap=0.2, reset_after=60), said.append)
    await stack.spawn(crashing)
    supervisor.start()
    try:
        for _ in range(600):
            if sum(") exited: " in line for line in said) >= 5:
                break
            await asyncio.sleep(0.05)
    finally:
        await supervisor.stop()
        await stack.stop()
    exits = [line for line in said if ") exited: " in line]
    assert len(exits) >= 5, said
    assert all("exited: exit code 1" in line for line in exits), exits
    delays = [float(re.search(r"restarting it in ([\d.]+) s", line).group(1)) for line in exits]  # type: ignore[union-attr]
    assert delays[:5] == [0.05, 0.1, 0.2, 0.2, 0.2]
    assert [f"exit {n} in a row" in line for n, line in enumerate(exits[:5], 1)] == [True] * 5
    count = len(said)
    await asyncio.sleep(0.5)
    assert len(said) == count, "restarted after the stop"
