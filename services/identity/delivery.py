"""Delivery of SMS and e-mail: adapters behind one small interface, driven by the outbox relay.
In dev every message also lands in the dev sink (what ListDevOutbox reads). Each adapter gets the
outbox key, so a message relayed twice after a crash is recognised by the sink and by providers
that honour an idempotency key."""

from __future__ import annotations

import asyncio
import logging
import smtplib
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from services.common.clock import Clock
from services.common.db import Database
from services.common.outbox import Handler, PermanentFailure
from services.identity import tokens
from services.identity.domain import Channel
from services.identity.models import Notification
from services.identity.repository import IdentityRepository

log = logging.getLogger("cashback.identity.delivery")

SMS_TOPIC = "sms"
EMAIL_TOPIC = "email"


class Sender(Protocol):
    async def send(self, key: str, to: str, text: str, subject: str) -> None: ...


class DevSink:
    """Dev only: records the message in identity's own database."""

    def __init__(self, db: Database, clock: Clock, channel: Channel) -> None:
        self._db = db
        self._clock = clock
        self._channel = channel

    async def send(self, key: str, to: str, text: str, subject: str) -> None:
        async with self._db.transaction() as session:
            await IdentityRepository(session).add_dev_message(
                {"key": key, "channel": self._channel.value, "recipient": to, "text": text,
                 "created_at": self._clock.now()})


class HttpSmsSender:
    """A generic SMS provider over HTTP: POST JSON {to, text, sender} with the outbox key as the
    Idempotency-Key. 2xx = accepted; 4xx (but 408/429) = the provider will never accept it."""

    def __init__(self, url: str, *, token: str = "", sender: str = "Cashback", timeout: float = 10.0) -> None:
        self._url = url
        self._sender = sender
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(timeout=timeout, headers=headers)

    async def send(self, key: str, to: str, text: str, subject: str) -> None:
        response = await self._client.post(self._url, json={"to": to, "text": text, "sender": self._sender},
                                           headers={"Idempotency-Key": key})
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise PermanentFailure(f"SMS provider refused the message: HTTP {response.status_code}")
        response.raise_for_status()

    async def close(self) -> None:
        await self._client.aclose()


class SmtpSender:
    """E-mail over SMTP (smtplib in a worker thread, one connection per message)."""

    def __init__(self, host: str, port: int, *, sender: str, user: str = "", password: str = "",
                 starttls: bool = False, timeout: float = 10.0) -> None:
        self._host, self._port = host, port
        self._from = sender
        self._user, self._password = user, password
        self._starttls = starttls
        self._timeout = timeout

    async def send(self, key: str, to: str, text: str, subject: str) -> None:
        message = EmailMessage()
        message["From"] = self._from
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = f"<{key.replace(':', '.')}@cashback>"
        message.set_content(text)
        await asyncio.to_thread(self._send_sync, message)

    def _send_sync(self, message: EmailMessage) -> None:
        with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
            if self._starttls:
                smtp.starttls()
            if self._user:
                smtp.login(self._user, self._password)
            smtp.send_message(message)


def outbox_handlers(db: Database, clock: Clock, senders: dict[str, list[Sender]], seal_secret: str,
                    ) -> dict[str, Handler]:
    """One handler per topic: send through every adapter of the channel, then mark the
    notification (if the message is one) delivered. Code-bearing texts arrive sealed."""

    def handler(topic: str) -> Callable[[str, dict[str, Any]], Awaitable[None]]:
        async def deliver(key: str, payload: dict[str, Any]) -> None:
            chain = senders.get(topic, [])
            if not chain:
                raise RuntimeError(f"no {topic} adapter configured")
            sealed = payload.get("sealed_text")
            text = tokens.unseal(seal_secret, sealed) if sealed else payload["text"]
            for sender in chain:
                await sender.send(key, payload["to"], text, payload.get("subject", "Cashback"))
            notification_id = payload.get("notification_id")
            if notification_id:
                async with db.transaction() as session:
                    row = await session.get(Notification, notification_id)
                    if row is not None and row.delivered_at is None:
                        row.delivered_at = clock.now()

        return deliver

    return {SMS_TOPIC: handler(SMS_TOPIC), EMAIL_TOPIC: handler(EMAIL_TOPIC)}
