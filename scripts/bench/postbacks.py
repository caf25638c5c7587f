"""Postback ingestion benchmark (part of `make bench`): the whole stack as processes on PostgreSQL +
Redis, load from wrk (Debian package `wrk`, `make tools`) with a Lua script, 64 connections.

Measured in one run, each beside a bare gateway→gRPC round trip (`GET /dev/echo`: tracking's
grpc.health.v1 Check, no work) measured just before it:
- unique signed `direct` postbacks per second (each a new order: parse, HMAC, Redis SET NX, the
  rules, INSERT purchase + audit row), with p50/p99 latency;
- exact duplicates per second (answered from Redis before any SQL; their audit rows spooled).

Signed bodies are generated beforehand (signatures are valid 300 s) into a file the Lua script
cycles through. Figures are printed, never asserted.

The gateway sends the postbacks that arrive together in one IngestPostbacks call and tracking
claims and inserts them together (services/common/batching.py), which is why postbacks can pass
the bare hop, which pays a gRPC call per request. `GATEWAY_POSTBACK_BATCH_SIZE=1
GATEWAY_POSTBACK_BATCHES_IN_FLIGHT=1000 make bench BENCH=postbacks` measures one call per postback
for comparison (the stack takes the variables from this environment). Environment: BENCH_POSTGRES_URL (admin URL,
default the local server), BENCH_REDIS_URL (default redis://127.0.0.1:6379/0), BENCH_SECONDS
(per measurement, default 8), BENCH_CONNECTIONS (default 64), BENCH_PROFILE (a directory: py-spy
records the gateway and tracking during the unique and duplicate runs as collapsed stacks there).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from gateway.config import Settings as GatewaySettings
from scripts.stack import Stack, free_port, processes
from services.tracking.postbacks import sign

PG_ADMIN = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
SECONDS = int(os.environ.get("BENCH_SECONDS", "8"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
THREADS = 2
UNIQUE_BODIES = 40_000
SERVICES = ("identity", "tracking", "ledger", "redemption")

LUA = r"""
-- Cycles through pre-signed postbacks (BENCH_BODIES: "<signature>\t<json>" per line; empty: GET).
local sigs, bodies, idx = {}, {}, 0
accepted, duplicate, other = 0, 0, 0  -- globals: done() reads them with thread:get
local threads, counter = {}, 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  local path, n, i = os.getenv("BENCH_BODIES"), tonumber(os.getenv("BENCH_THREADS")), 0
  if path == nil or path == "" then return end
  for line in io.lines(path) do
    if i % n == id then
      local tab = line:find("\t", 1, true)
      sigs[#sigs + 1] = line:sub(1, tab - 1)
      bodies[#bodies + 1] = line:sub(tab + 1)
    end
    i = i + 1
  end
end
function request()
  if #bodies == 0 then return wrk.format("GET") end
  idx = idx + 1
  if idx > #bodies then idx = 1 end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Cashback-Signature"] = sigs[idx]},
                    bodies[idx])
end
function response(status, headers, body)
  if status ~= 200 then other = other + 1
  elseif body:find('"ACCEPTED"', 1, true) or body:find('"UNATTRIBUTED"', 1, true) then accepted = accepted + 1
  elseif body:find('"DUPLICATE"', 1, true) then duplicate = duplicate + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  local a, d, o = 0, 0, 0
  for _, t in ipairs(threads) do a = a + t:get("accepted"); d = d + t:get("duplicate"); o = o + t:get("other") end
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d errors=%d accepted=%d " ..
    "duplicate=%d other=%d\n", summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, a, d, o))
end
"""


def wrk(url: str, script: str, bodies: str = "") -> dict[str, int]:
    import subprocess

    out = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--timeout", "10s", "-s", script, url],
        env={**os.environ, "BENCH_BODIES": bodies, "BENCH_THREADS": str(THREADS)},
        capture_output=True, text=True)
    found = re.search(r"RESULT (.*)", out.stdout)
    if out.returncode != 0 or found is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return {k: int(v) for k, v in (item.split("=") for item in found.group(1).split())}


async def _profiled(stack: Stack, label: str, run):
    """Runs `run()` while py-spy samples the gateway and tracking, when BENCH_PROFILE asks for it."""
    directory = os.environ.get("BENCH_PROFILE", "")
    if not directory:
        return await run()
    spy = shutil.which("py-spy", path=os.path.dirname(sys.executable))  # the venv's (dev extras)
    if spy is None:
        print(f"BENCH_PROFILE: py-spy is not installed beside {sys.executable} (make venv installs it); no profile")
        return await run()
    os.makedirs(directory, exist_ok=True)
    spies = [await asyncio.create_subprocess_exec(
        spy, "record", "--nonblocking", "--format", "raw", "-d", str(max(1, SECONDS - 2)), "-p",
        str(stack.running[name].pid), "-o", os.path.join(directory, f"{label}-{name}.txt"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL) for name in ("gateway", "tracking")]
    try:
        return await run()
    finally:
        for spy in spies:
            await spy.wait()


def per_second(result: dict[str, int], key: str = "requests") -> float:
    return result[key] / (result["duration_us"] / 1e6)


async def _user_click(gateway: str) -> str:
    phone = f"+7903{uuid.uuid4().int % 10_000_000:07d}"
    async with httpx.AsyncClient(base_url=gateway, timeout=30) as http:
        challenge = (await http.post("/v1/auth/phone/codes", json={"phone": phone})).json()["challenge_id"]
        code = ""
        for _ in range(100):
            for m in (await http.get("/dev/outbox", params={"to": phone})).json()["messages"]:
                found = re.search(r"\b(\d{6})\b", m["text"])
                code = found.group(1) if found else code
            if code:
                break
            await asyncio.sleep(0.1)
        token = (await http.post("/v1/auth/phone/verify", json={"challenge_id": challenge, "code": code})
                 ).json()["access_token"]
        click = await http.post("/v1/partners/aliexpress/clicks", headers={"Authorization": f"Bearer {token}"})
        return str(click.json()["click_id"])


def _write_bodies(path: Path, click_id: str, count: int) -> None:
    run, now = uuid.uuid4().hex[:8], int(time.time())
    with path.open("w") as f:
        for i in range(count):
            body = json.dumps({"order_id": f"BENCH-{run}-{i}", "click_id": click_id, "status": "pending",
                               "amount_kopecks": 100_000 + i % 5000, "currency": "RUB"}, separators=(",", ":"))
            f.write(f"{sign('dev-direct-secret', now, body.encode())}\t{body}\n")


async def main() -> None:
    if shutil.which("wrk") is None:
        print("postbacks: skipped: wrk is not installed (make tools)")
        return
    try:
        admin = await asyncpg.connect(PG_ADMIN, timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postbacks: skipped: no PostgreSQL at {PG_ADMIN} ({exc})")
        return
    names = {s: f"cbbench_{s}_{uuid.uuid4().hex[:8]}" for s in SERVICES}
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    for name in names.values():
        await admin.execute(f'CREATE DATABASE "{name}"')
    ports = {name: free_port() for name in (*SERVICES, "gateway", "billing")}
    procs = processes(ports, databases={s: f"{base}/{n}" for s, n in names.items()}, redis_url=REDIS_URL,
                      accrual_delay_seconds=86400)
    stack = Stack(procs, env={"CASHBACK_ENV": "dev", "LOG_LEVEL": "WARNING"})
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    try:
        await stack.start()
        click_id = await _user_click(gateway)
        with tempfile.TemporaryDirectory() as tmp:
            script, unique, dups = Path(tmp) / "postbacks.lua", Path(tmp) / "unique.txt", Path(tmp) / "dups.txt"
            script.write_text(LUA)
            _write_bodies(unique, click_id, UNIQUE_BODIES)
            lines = unique.read_text().splitlines(keepends=True)
            echo1 = await asyncio.to_thread(wrk, f"{gateway}/dev/echo", str(script))
            uniq = await _profiled(stack, "unique", lambda: asyncio.to_thread(
                wrk, f"{gateway}/v1/postbacks/direct", str(script), str(unique)))
            dups.write_text("".join(lines[:min(2000, uniq["accepted"])]))
            echo2 = await asyncio.to_thread(wrk, f"{gateway}/dev/echo", str(script))
            dup = await _profiled(stack, "duplicates", lambda: asyncio.to_thread(
                wrk, f"{gateway}/v1/postbacks/direct", str(script), str(dups)))
        batching = GatewaySettings.from_env()
        hop1, hop2 = per_second(echo1), per_second(echo2)
        u, d = per_second(uniq, "accepted"), per_second(dup, "duplicate")
        print(f"{CONNECTIONS} connections, {SECONDS} s per measurement, wrk -t{THREADS}; PostgreSQL + Redis; "
              f"LOG_LEVEL=WARNING; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end; "
              f"gateway postback batches of <= {batching.postback_batch_size}, "
              f"{batching.postback_batches_in_flight} in flight")
        print(f"bare hop GET /dev/echo            : {hop1:8.0f} req/s  p50 {echo1['p50_us'] / 1000:6.1f} ms  "
              f"p99 {echo1['p99_us'] / 1000:6.1f} ms")
        print(f"unique postbacks                  : {u:8.0f} /s     p50 {uniq['p50_us'] / 1000:6.1f} ms  "
              f"p99 {uniq['p99_us'] / 1000:6.1f} ms  = {u / hop1:.2f}x bare hop (target >= 0.6x, p99 <= 100 ms)"
              f"  [other answers {uniq['other'] + uniq['duplicate']}, socket errors {uniq['errors']}]")
        print(f"bare hop GET /dev/echo (again)    : {hop2:8.0f} req/s  p50 {echo2['p50_us'] / 1000:6.1f} ms  "
              f"p99 {echo2['p99_us'] / 1000:6.1f} ms")
        print(f"exact duplicates                  : {d:8.0f} /s     p50 {dup['p50_us'] / 1000:6.1f} ms  "
              f"p99 {dup['p99_us'] / 1000:6.1f} ms  = {d / hop2:.2f}x bare hop (target >= 0.9x)"
              f"  [other answers {dup['other'] + dup['accepted']}, socket errors {dup['errors']}]")
    finally:
        await stack.stop()
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
