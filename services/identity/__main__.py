"""python -m services.identity               run the service
python -m services.identity config        the effective settings (secrets masked)
python -m services.identity list-keys     the access-token signing keys (kid, generation, created, retired)
python -m services.identity rotate-key    add a new signing key now; it signs once published for
                                          IDENTITY_SIGNING_KEY_PUBLISH_SECONDS, and the old key keeps
                                          verifying until its tokens have expired (then it is retired)
python -m services.identity retire-key KID  stop publishing a key at once (a leaked key): its tokens stop
                                          verifying; the only active key cannot be retired

The admin commands work on IDENTITY_DATABASE_URL; running replicas follow within
IDENTITY_SIGNING_KEY_CHECK_SECONDS."""

from __future__ import annotations

import asyncio
import sys

from services.common.clock import SystemClock
from services.common.db import Database
from services.common.errors import DomainError
from services.common.main import run_service
from services.common.migrate import upgrade_async
from services.common.redis_store import WindowCounters
from services.identity.app import build_runtime
from services.identity.config import Settings
from services.identity.models import SigningKey
from services.identity.service import Identity

USAGE = "usage: python -m services.identity [config | list-keys | rotate-key | retire-key KID]"


async def admin(command: str, args: list[str]) -> int:
    from sqlalchemy import select

    settings = Settings.from_env()
    await upgrade_async("identity", settings.database_url)
    db = Database(settings.database_url)
    identity = Identity(db, SystemClock(), settings, WindowCounters(None, settings.redis_prefix))
    try:
        if command == "rotate-key" and not args:
            await identity.ensure_signing_key()  # a fresh database gets its first key first
            print(await identity.add_signing_key())
        elif command == "retire-key" and len(args) == 1:
            await identity.retire_signing_key(args[0])
            print(f"retired {args[0]}")
        elif command == "list-keys" and not args:
            async with db.sessions() as session:
                rows = (await session.scalars(select(SigningKey).order_by(SigningKey.generation))).all()
            for row in rows:
                retired = f"retired {row.retired_at:%Y-%m-%dT%H:%M:%SZ}" if row.retired_at else "active"
                print(f"{row.kid}\tgeneration {row.generation}\tcreated {row.created_at:%Y-%m-%dT%H:%M:%SZ}\t{retired}")
        else:
            print(USAGE, file=sys.stderr)
            return 2
    except DomainError as exc:
        print(f"{exc.reason}: {exc.message}", file=sys.stderr)
        return 1
    finally:
        await db.dispose()
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] != "config":
        sys.exit(asyncio.run(admin(sys.argv[1], sys.argv[2:])))
    sys.exit(run_service("identity", Settings.from_env(), build_runtime, sys.argv[1:]))
