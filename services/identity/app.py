"""Wiring: settings in, a runnable gRPC service out (used by __main__ and by the tests)."""

from __future__ import annotations

import asyncio
import logging

from cashback.identity.v1 import identity_pb2, identity_pb2_grpc

from services.common.clock import Clock, SystemClock
from services.common.config import require_outside_dev
from services.common.db import Database
from services.common.grpc_server import Runtime
from services.common.migrate import upgrade_async
from services.common.outbox import OutboxRelay
from services.common.redis_store import WindowCounters, connect_redis
from services.identity.config import DEV_CODE_PEPPER, DEV_OPERATOR_SSO_PUBLIC_KEY_PEM, Settings
from services.identity.delivery import (
    EMAIL_TOPIC,
    SMS_TOPIC,
    DevSink,
    HttpSmsSender,
    Sender,
    SmtpSender,
    outbox_handlers,
)
from services.identity.domain import Channel
from services.identity.models import OutboxMessage
from services.identity.service import Identity
from services.identity.servicer import IdentityServicer

SERVICE_NAME = identity_pb2.DESCRIPTOR.services_by_name["IdentityService"].full_name
log = logging.getLogger("cashback.identity")


async def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    clock = clock or SystemClock()
    require_outside_dev(settings.env, "IDENTITY_CODE_PEPPER", settings.code_pepper, DEV_CODE_PEPPER)
    require_outside_dev(settings.env, "IDENTITY_OPERATOR_SSO_PUBLIC_KEY_PEM", settings.sso_public_key_pem,
                        DEV_OPERATOR_SSO_PUBLIC_KEY_PEM)
    require_outside_dev(settings.env, "IDENTITY_SMS_URL", settings.sms_url)
    await upgrade_async("identity", settings.database_url)
    db = Database(settings.database_url)
    redis = await connect_redis(settings.redis_url)

    sms: list[Sender] = []
    email: list[Sender] = []
    http_sms = HttpSmsSender(settings.sms_url, token=settings.sms_token, sender=settings.sms_sender) \
        if settings.sms_url else None
    if http_sms is not None:
        sms.append(http_sms)
    if settings.smtp_host:
        email.append(SmtpSender(settings.smtp_host, settings.smtp_port, sender=settings.email_from,
                                user=settings.smtp_user, password=settings.smtp_password,
                                starttls=settings.smtp_starttls))
    if settings.is_dev:
        sms.append(DevSink(db, clock, Channel.SMS))
        email.append(DevSink(db, clock, Channel.EMAIL))
    if not sms or not email:
        log.warning("no %s adapter configured (IDENTITY_SMS_URL / IDENTITY_SMTP_HOST): such messages wait "
                    "in the outbox", "SMS" if not sms else "e-mail")

    relay = OutboxRelay(db, OutboxMessage, outbox_handlers(db, clock, {SMS_TOPIC: sms, EMAIL_TOPIC: email},
                                                           settings.code_pepper),
                        clock, poll_interval=settings.outbox_poll_seconds)
    identity = Identity(db, clock, settings, WindowCounters(redis, settings.redis_prefix), on_enqueued=relay.wake)
    await identity.rotate_signing_keys()
    await identity.ensure_signing_key()
    servicer = IdentityServicer(identity, settings)

    async def clean_up() -> None:
        while True:
            try:
                await identity.purge_expired()
            except Exception:  # noqa: BLE001 - a failed round is retried at the next one
                log.exception("clean-up round failed")
            await asyncio.sleep(settings.cleanup_interval_seconds)

    async def rotate_keys() -> None:
        while True:
            await asyncio.sleep(settings.signing_key_check_seconds)
            try:
                await identity.rotate_signing_keys()
            except Exception:  # noqa: BLE001 - retried at the next check
                log.exception("signing-key rotation check failed")

    async def close() -> None:
        if http_sms is not None:
            await http_sms.close()
        if redis is not None:
            await redis.aclose()
        await db.dispose()

    return Runtime(
        name="identity",
        service_names=[SERVICE_NAME],
        register=lambda server: identity_pb2_grpc.add_IdentityServiceServicer_to_server(servicer, server),
        background=[relay.run, clean_up, rotate_keys],
        close=close,
    )
