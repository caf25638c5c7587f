"""`make run`: the whole stack as local processes (embedded default: a SQLite file per service
under var/; Redis if REDIS_URL is set or a local one answers), kept running like a process
manager would: a process that exits is restarted after a capped exponential backoff, while the
others keep serving (the gateway answers 503 for a missing upstream meanwhile). Ctrl-C (SIGINT) or
SIGTERM stops everything, with no restart during the shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from scripts.stack import DEFAULT_STACK_PORTS, Process, Stack, processes
from services.common.config import database_url, env_int
from services.common.migrate import SERVICES, upgrade_async


@dataclass(frozen=True)
class Backoff:
    """Delays between restarts of one process: `first`, doubling up to `cap`; a process that
    stayed up `reset_after` seconds counts as recovered, and its next exit waits `first` again."""

    first: float = 1.0
    cap: float = 30.0
    reset_after: float = 60.0

    def delay(self, exits_in_a_row: int) -> float:
        return min(self.cap, self.first * 2 ** max(0, exits_in_a_row - 1))

    @classmethod
    def from_env(cls) -> Backoff:
        return cls(first=float(os.environ.get("STACK_RESTART_DELAY_SECONDS", cls.first)),
                   cap=float(os.environ.get("STACK_RESTART_MAX_DELAY_SECONDS", cls.cap)),
                   reset_after=float(os.environ.get("STACK_RESTART_RESET_SECONDS", cls.reset_after)))


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


class Supervisor:
    """Watches every process of a started stack and restarts the one that exits."""

    def __init__(self, stack: Stack, backoff: Backoff, say: Callable[[str], None]) -> None:
        self.stack = stack
        self.backoff = backoff
        self.say = say
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep_running(proc), name=f"supervise:{proc.name}")
                       for proc in self.stack.procs]

    async def stop(self) -> None:
        """No more restarts (a restart in progress is abandoned; Stack.stop then stops its process)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep_running(self, proc: Process) -> None:
        exits_in_a_row = 0
        while True:
            child = self.stack.running[proc.name]
            up_since = time.monotonic()
            returncode = await child.wait()
            uptime = time.monotonic() - up_since
            exits_in_a_row = 1 if uptime >= self.backoff.reset_after else exits_in_a_row + 1
            delay = self.backoff.delay(exits_in_a_row)
            self.say(f"{proc.name} (pid {child.pid}) exited: {describe_exit(returncode)} after {uptime:.1f} s up; "
                     f"restarting it in {delay:g} s (exit {exits_in_a_row} in a row); the others keep serving")
            await asyncio.sleep(delay)
            try:
                child = await self.stack.spawn(proc)
            except OSError as exc:  # the old child stays in place: the loop counts this as one more exit
                self.say(f"{proc.name} could not be started: {exc}")
                continue
            try:
                await self.stack.wait_healthy(proc, alive_only=True)
            except (RuntimeError, TimeoutError) as exc:  # it exited again (the loop counts it), or hangs
                self.say(f"{proc.name} (pid {child.pid}) is not healthy: {exc}")
                continue
            self.say(f"{proc.name} restarted (pid {child.pid}) on port {proc.port}")


def _banner(stack: Stack, backoff: Backoff) -> str:
    lines = ["", f"cashback stack is up (CASHBACK_ENV={os.environ.get('CASHBACK_ENV', 'dev')}):"]
    for proc in stack.procs:
        scheme = "http" if proc.kind == "http" else "grpc"
        lines.append(f"  {proc.name:<11} {scheme}://127.0.0.1:{proc.port:<6} (pid {stack.running[proc.name].pid})")
    gw = next(p.port for p in stack.procs if p.name == "gateway")
    web = next(p.port for p in stack.procs if p.name == "web")
    lines += [f"  website     http://127.0.0.1:{web}/", f"  API docs    http://127.0.0.1:{gw}/docs",
              f"  dev outbox  http://127.0.0.1:{gw}/dev/outbox?to=<phone>",
              f"A process that exits is restarted (after {backoff.first:g} s, doubling up to {backoff.cap:g} s).",
              "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] supervisor: {message}", file=sys.stderr, flush=True)


async def main() -> int:
    os.environ.setdefault("CASHBACK_ENV", "dev")
    for service in SERVICES:  # migrate first, so that a migration error is plain to see
        await upgrade_async(service, database_url(service))
    delay = env_int("TRACKING_ACCRUAL_DELAY_SECONDS", 0)
    ports = {name: env_int(f"{name.upper()}_PORT", port) for name, port in DEFAULT_STACK_PORTS.items()}
    stack = Stack(processes(ports, accrual_delay_seconds=delay))
    backoff = Backoff.from_env()
    supervisor = Supervisor(stack, backoff, _say)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        # The first start is not retried: a port in use or a broken configuration is plain to see.
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 130
        starting.result()
        print(_banner(stack, backoff), flush=True)
        supervisor.start()
        await stopping
        return 0
    finally:
        await supervisor.stop()
        print("stopping…", flush=True)
        await stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
