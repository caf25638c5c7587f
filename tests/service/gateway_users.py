"""Signing users in through the gateway, the way the site does: phone → SMS code (read from the
dev outbox) → tokens."""

from __future__ import annotations

import asyncio
import random
import re

import httpx


def random_phone() -> str:
    """An MTS number (the operator's: it may pay its phone bill with points)."""
    return "+7982" + "".join(random.choice("0123456789") for _ in range(7))


def random_host() -> str:
    return "10." + ".".join(str(random.randrange(1, 250)) for _ in range(3))


async def read_code(client: httpx.AsyncClient, phone: str, *, seen: int = 0) -> str:
    for _ in range(200):
        response = await client.get("/dev/outbox", params={"to": phone})
        assert response.status_code == 200, response.text
        messages = response.json()["messages"]
        if len(messages) > seen:
            found = re.search(r"\b(\d{6})\b", messages[0]["text"])
            assert found, messages[0]
            return found.group(1)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no code reached {phone}")


async def sign_in(client: httpx.AsyncClient, phone: str | None = None) -> dict:
    """Returns the sign-in answer: access_token, refresh_token, user…"""
    phone = phone or random_phone()
    started = await client.post("/v1/auth/phone/codes", json={"phone": phone})
    assert started.status_code == 200, started.text
    code = await read_code(client, phone)
    verified = await client.post("/v1/auth/phone/verify",
                                 json={"challenge_id": started.json()["challenge_id"], "code": code})
    assert verified.status_code == 200, verified.text
    return verified.json()


def bearer(session: dict) -> dict[str, str]:
    return {"Authorization": f"Bearer {session['access_token']}"}
