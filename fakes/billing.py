"""A fake of the operator's billing system (outside our system): tops up phone accounts.

    python -m fakes.billing            # BILLING_PORT (default 8090), host BILLING_HOST (127.0.0.1)

API (JSON):
- `POST /v1/topups {topup_id, phone, amount_kopecks}` → `{topup_id, status: "applied"|"refused", reason}`;
  idempotent by `topup_id`: a replay returns the first answer and never credits twice.
- `GET /v1/topups/{topup_id}` → the same body, or 404 when the top-up was never seen.
- `GET /v1/accounts/{phone}` → `{phone, credited_kopecks}`.
- `GET /v1/subscribers/{phone}` → `{phone, subscriber: true}` when the number is the operator's now,
  404 otherwise. By default the operator's are the numbers in its ranges (`BILLING_OPERATOR`, MTS);
  number portability moves numbers in and out: `POST /control/subscribers {phone, subscriber}`.
- `POST /control {mode, delay_seconds?}` switches behaviour for the next top-ups (tests and demos):
  `ok` applies; `refuse` refuses; `timeout` sleeps `delay_seconds` (default 5) before applying, longer
  than the client's deadline, so the client never hears the answer; `fail_after_apply` applies and
  then answers 500; `hang` receives the top-up and holds it, not applied (404 to a status query), until
  released; `apply_then_hang` applies it, then holds the answer until released. Held requests make their
  decision even if the client has gone (a crash test kills the client while billing holds its request).
  `GET /control` shows the mode, the ids of held top-ups and how many top-ups were applied.
- `POST /control/release {outcome?, topup_ids?}` lets the held requests (all, or those listed) go. A
  request held by `hang` is then `apply`ed (default), `refuse`d, or `drop`ped (forgotten as if it never
  arrived: the client gets a 503); one held by `apply_then_hang` was already applied and just answers.

State is in memory: a restart forgets everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Literal

import phonenumbers
import uvicorn
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from phonenumbers import carrier
from pydantic import BaseModel, Field

Mode = Literal["ok", "refuse", "timeout", "fail_after_apply", "hang", "apply_then_hang"]
Outcome = Literal["apply", "refuse", "drop"]


class TopupRequest(BaseModel):
    topup_id: str = Field(min_length=1, max_length=200)
    phone: str = Field(min_length=1, max_length=32)
    amount_kopecks: int = Field(gt=0)


class ControlRequest(BaseModel):
    mode: Mode
    delay_seconds: float = Field(default=5.0, ge=0)


class PortingRequest(BaseModel):
    phone: str = Field(min_length=1, max_length=32)
    # True: ported in to the operator; False: ported out.
    subscriber: bool


class ReleaseRequest(BaseModel):
    outcome: Outcome = "apply"
    # Only these top-ups (default: every held one).
    topup_ids: list[str] | None = None


@dataclass
class Held:
    """A top-up request that billing holds on to until released."""

    topup_id: str
    released: asyncio.Event = field(default_factory=asyncio.Event)
    outcome: str = "apply"


@dataclass
class BillingState:
    mode: str = "ok"
    delay_seconds: float = 5.0
    topups: dict[str, dict[str, object]] = field(default_factory=dict)
    accounts: dict[str, int] = field(default_factory=dict)
    applied_count: int = 0
    held: list[Held] = field(default_factory=list)
    # The operator whose numbers are subscribers by range; `ported` overrides the ranges per number.
    operator: str = "MTS"
    ported: dict[str, bool] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Work of held requests runs as tasks of its own, so that a client going away cannot cancel it.
    tasks: set[asyncio.Task[object]] = field(default_factory=set)


def in_operator_range(phone: str, operator: str) -> bool:
    try:
        return carrier.name_for_number(phonenumbers.parse(phone, "RU"), "en") == operator
    except phonenumbers.NumberParseException:
        return False


def create_app(state: BillingState | None = None) -> FastAPI:
    state = state or BillingState(operator=os.environ.get("BILLING_OPERATOR", "MTS"))
    app = FastAPI(title="Fake operator billing")
    app.state.billing = state

    async def _decide(req: TopupRequest, mode: str) -> dict[str, object]:
        async with state.lock:  # one decision per topup_id, however many requests race
            existing = state.topups.get(req.topup_id)
            if existing is not None:
                return existing
            if mode == "refuse":
                record: dict[str, object] = {"topup_id": req.topup_id, "status": "refused",
                                             "reason": "subscriber account is blocked"}
            else:
                state.accounts[req.phone] = state.accounts.get(req.phone, 0) + req.amount_kopecks
                state.applied_count += 1
                record = {"topup_id": req.topup_id, "status": "applied", "reason": ""}
            record.update(phone=req.phone, amount_kopecks=req.amount_kopecks)
            state.topups[req.topup_id] = record
            return record

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    async def _held(req: TopupRequest, mode: str) -> JSONResponse:
        held = Held(req.topup_id)
        if mode == "apply_then_hang":
            record = await _decide(req, "ok")
        state.held.append(held)
        try:
            await held.released.wait()
        finally:
            state.held.remove(held)
        if mode == "hang":
            if held.outcome == "drop":
                return JSONResponse({"error": "request lost"}, status_code=503)
            record = await _decide(req, "refuse" if held.outcome == "refuse" else "ok")
        return JSONResponse(record)

    @app.post("/v1/topups")
    async def create_topup(req: TopupRequest) -> JSONResponse:
        mode = state.mode
        existing = state.topups.get(req.topup_id)
        if existing is not None:
            return JSONResponse(existing)
        if mode in ("hang", "apply_then_hang"):
            task = asyncio.create_task(_held(req, mode))
            state.tasks.add(task)
            task.add_done_callback(state.tasks.discard)
            return await asyncio.shield(task)
        if mode == "timeout":
            await asyncio.sleep(state.delay_seconds)
        record = await _decide(req, mode)
        if mode == "fail_after_apply":
            return JSONResponse({"error": "internal billing error"}, status_code=500)
        return JSONResponse(record)

    @app.get("/v1/topups/{topup_id}")
    async def get_topup(topup_id: str) -> JSONResponse:
        record = state.topups.get(topup_id)
        if record is None:
            raise HTTPException(status_code=404, detail="top-up never seen")
        return JSONResponse(record)

    @app.get("/v1/accounts/{phone}")
    async def get_account(phone: str) -> dict[str, object]:
        return {"phone": phone, "credited_kopecks": state.accounts.get(phone, 0)}

    @app.get("/v1/subscribers/{phone}")
    async def get_subscriber(phone: str) -> dict[str, object]:
        if not state.ported.get(phone, in_operator_range(phone, state.operator)):
            raise HTTPException(status_code=404, detail="not a subscriber of the operator")
        return {"phone": phone, "subscriber": True}

    @app.post("/control/subscribers")
    async def port(req: PortingRequest) -> dict[str, object]:
        state.ported[req.phone] = req.subscriber
        return {"phone": req.phone, "subscriber": req.subscriber}

    @app.post("/control")
    async def control(req: ControlRequest) -> dict[str, object]:
        state.mode, state.delay_seconds = req.mode, req.delay_seconds
        return {"mode": state.mode, "delay_seconds": state.delay_seconds}

    @app.get("/control")
    async def show_control() -> dict[str, object]:
        return {"mode": state.mode, "delay_seconds": state.delay_seconds, "applied_count": state.applied_count,
                "held": [h.topup_id for h in state.held]}

    @app.post("/control/release")
    async def release(req: ReleaseRequest) -> dict[str, object]:
        released = [h for h in state.held if req.topup_ids is None or h.topup_id in req.topup_ids]
        for held in released:
            held.outcome = req.outcome
            held.released.set()
        return {"released": [h.topup_id for h in released]}

    return app


@contextlib.asynccontextmanager
async def running_billing(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serves the fake in the current event loop on `port` (0: ephemeral); yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    config = uvicorn.Config(create_app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


def main() -> None:
    host = os.environ.get("BILLING_HOST", "127.0.0.1")
    port = int(os.environ.get("BILLING_PORT", "8090"))
    uvicorn.run(create_app(), host=host, port=port, log_level="info", timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
