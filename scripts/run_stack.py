"""`make run`: the whole stack as local processes (embedded default: a SQLite file per service
under var/; Redis if REDIS_URL is set or a local one answers). Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from scripts.stack import DEFAULT_STACK_PORTS, Stack, processes
from services.common.config import database_url, env_int
from services.common.migrate import SERVICES, upgrade_async


def _banner(stack: Stack) -> str:
    lines = ["", f"cashback stack is up (CASHBACK_ENV={os.environ.get('CASHBACK_ENV', 'dev')}):"]
    for proc in stack.procs:
        scheme = "http" if proc.kind == "http" else "grpc"
        lines.append(f"  {proc.name:<11} {scheme}://127.0.0.1:{proc.port}")
    gw = next(p.port for p in stack.procs if p.name == "gateway")
    web = next(p.port for p in stack.procs if p.name == "web")
    lines += [f"  website     http://127.0.0.1:{web}/", f"  API docs    http://127.0.0.1:{gw}/docs", f"  dev outbox  http://127.0.0.1:{gw}/dev/outbox?to=<phone>",
              "Ctrl-C stops everything.", ""]
    return "\n".join(lines)


async def main() -> int:
    os.environ.setdefault("CASHBACK_ENV", "dev")
    for service in SERVICES:  # migrate first, so that a migration error is plain to see
        await upgrade_async(service, database_url(service))
    delay = env_int("TRACKING_ACCRUAL_DELAY_SECONDS", 0)
    ports = {name: env_int(f"{name.upper()}_PORT", port) for name, port in DEFAULT_STACK_PORTS.items()}
    stack = Stack(processes(ports, accrual_delay_seconds=delay))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 130
        starting.result()
        print(_banner(stack), flush=True)
        exited = asyncio.create_task(stack.wait_any_exit())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            print(f"{exited.result()} exited; stopping the stack", file=sys.stderr)
            return 1
        return 0
    finally:
        print("stopping…", flush=True)
        await stack.stop()
        print("stopped.", flush=True)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
