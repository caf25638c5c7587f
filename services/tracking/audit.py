"""The fast path for exact duplicates, and how their audit rows still reach the database.

An exact duplicate (same network, order part, status and amount as a postback seen before) must be
answered before any SQL, yet every postback must be stored as received. Both hold like this:

1. One Redis round trip (a Lua script, atomic) per postback, pipelined for concurrent ones. A
   fingerprint's key says `applied` only once the database has committed the report (the caller
   `confirm`s it after the commit): then the postback is a fast-path duplicate and its audit record
   is appended to a Redis stream in the same script, so a record is spooled exactly when the
   postback is answered as a duplicate, and the answer goes back only after Redis has it. A key
   that is absent is set to `applying` for a short while (`claim_ttl_seconds`) and the caller
   applies the report; a key that says `applying` (a concurrent copy in flight, or a process that
   died between claim and commit) sends the caller to the database, which decides by the stored
   reports (`purchase_reports`). So a crash anywhere between claim and commit never turns the
   partner's retries into duplicates of a report that was not applied: only the database's
   knowledge makes a duplicate.
2. A background job (`AuditSpool.run`, one consumer per replica in the consumer group `flush`)
   reads the stream in batches, inserts the rows into `postbacks` ignoring ids already there, then
   acknowledges and deletes the entries. Delivery is at-least-once: a crash between the INSERT and
   the XACK redelivers the batch (entries left pending by a dead replica are taken over with
   XAUTOCLAIM after `reclaim_idle_ms`), and the postback id — generated before spooling, the
   table's primary key — makes the repeat insert nothing.
3. When Redis is absent or failing, nothing is spooled: `claim_or_spool` answers None and the
   caller takes the database path, which decides duplicates by the purchase row and writes the
   audit row in its own transaction, as before.

Durability of spooled records is Redis's: run it with `appendonly yes` in production so that a
Redis restart does not lose the (at most a batch or so of) records not yet flushed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import re
import uuid
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from services.common.batching import Batcher
from services.common.db import Database
from services.tracking.repository import insert_postbacks_once

log = logging.getLogger("cashback.tracking.audit")

_CLAIM_OR_SPOOL = """
local seen = redis.call('GET', KEYS[1])
if seen == 'applied' then
  redis.call('XADD', KEYS[2], '*', 'r', ARGV[2])
  return 0
end
if seen then
  return 2
end
redis.call('SET', KEYS[1], 'applying', 'EX', ARGV[1])
return 1
"""
APPLIED = "applied"
GROUP = "flush"


# What the audit keeps of a request: bounded (a flood of big refused requests cannot fill the table)
# and redacted (no secret, signature, credential or cookie is stored, in the database or in Redis).
MAX_STORED_BODY = 64 * 1024  # the gateway's own limit: an accepted postback is stored whole
MAX_STORED_REFUSED_BODY = 2 * 1024
MAX_STORED_QUERY = 2 * 1024
MAX_STORED_HEADERS = 30
MAX_STORED_HEADER_VALUE = 256
_MASKED_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                   "x-cashback-signature"}
_SECRET_PARAMS = re.compile(r"(^|&)(secret|token|signature|sig|key|password|api_key)=[^&]*", re.IGNORECASE)
MASK = "****"


def redact_query(text: str) -> str:
    """A query string or form body with the values of secret-looking parameters masked."""
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}{m.group(2)}={MASK}", text)


def _stored_headers(headers: dict[str, str]) -> dict[str, str]:
    kept = sorted(headers.items())[:MAX_STORED_HEADERS]
    return {k[:64]: MASK if k.lower() in _MASKED_HEADERS else v[:MAX_STORED_HEADER_VALUE] for k, v in kept}


def _stored_body(body: bytes, headers: dict[str, str], refused: bool) -> bytes:
    body = body[:MAX_STORED_REFUSED_BODY if refused else MAX_STORED_BODY]
    if "form" in headers.get("content-type", "") or b"secret=" in body:
        body = redact_query(body.decode("utf-8", "replace")).encode()
    return body


def audit_record(*, postback_id: str, network: str, http_method: str, query_string: str, body: bytes,
                 headers: dict[str, str], remote_address: str, received_at: datetime, outcome: str, detail: str,
                 fingerprint: str, order_id: str, part_id: str, purchase_id: str = "",
                 refused: bool = False) -> dict[str, Any]:
    """One `postbacks` row as the columns' values (what `insert_postbacks_once` takes): the request
    bounded and redacted (see above); a refused one keeps less of its body."""
    return {
        "id": postback_id, "network": network[:64], "http_method": http_method[:8],
        "query_string": redact_query(query_string[:MAX_STORED_QUERY]),
        "body": _stored_body(body, headers, refused),
        "headers_json": json.dumps(_stored_headers(headers), sort_keys=True), "remote_address": remote_address[:128],
        "received_at": received_at, "outcome": outcome, "detail": detail[:200], "fingerprint": fingerprint,
        "order_id": order_id, "part_id": part_id, "purchase_id": purchase_id,
    }


def _encode(row: dict[str, Any]) -> str:
    return json.dumps({**row, "body": base64.b64encode(row["body"]).decode(),
                       "received_at": row["received_at"].isoformat()}, separators=(",", ":"))


def _decode(text: bytes | str) -> dict[str, Any]:
    row = json.loads(text)
    row["body"] = base64.b64decode(row["body"])
    row["received_at"] = datetime.fromisoformat(row["received_at"])
    return row


class AuditSpool:
    def __init__(self, redis: Redis | None, db: Database, *, prefix: str, database_url: str,
                 ttl_seconds: int = 7 * 24 * 3600, claim_ttl_seconds: int = 60, batch: int = 500,
                 reclaim_idle_ms: int = 30_000) -> None:
        self._redis = redis
        self._db = db
        self._fingerprint_prefix = prefix + "postback:"
        # One stream per database: replicas of one deployment share it, while another deployment
        # (another database) on the same Redis and prefix never flushes our records into its table.
        scope = hashlib.sha256(database_url.encode()).hexdigest()[:16]
        self._stream = f"{prefix}audit-spool:{scope}"
        self._ttl = ttl_seconds
        self._claim_ttl = str(claim_ttl_seconds)
        self._batch = batch
        self._reclaim_idle_ms = reclaim_idle_ms
        self._consumer = uuid.uuid4().hex
        self._script = redis.register_script(_CLAIM_OR_SPOOL) if redis is not None else None
        # Concurrent postbacks share one pipelined round trip (services/common/batching.py).
        self._claims: Batcher[tuple[str, dict[str, Any]], bool | None] = Batcher(
            self._claim_many, name="postback-claims", max_size=256, max_in_flight=2)
        self._marks: Batcher[tuple[str, bool], None] = Batcher(
            self._mark_many, name="postback-confirms", max_size=256, max_in_flight=2)

    async def claim_or_spool(self, fingerprint: str, row: dict[str, Any]) -> bool | None:
        """True: first sight of the fingerprint, claimed for a short while (the caller applies the
        postback, writes its audit row and then `confirm`s or `release`s). False: a report the
        database has applied before; its audit `row` is now spooled. None: no Redis answer, or a
        copy is being applied right now — the caller lets the database decide."""
        if self._script is None:
            return None
        return await self._claims.submit((fingerprint, row))

    async def confirm(self, fingerprint: str) -> None:
        """After the commit that stored the report: from now on its copies are fast-path duplicates."""
        if self._redis is not None:
            await self._marks.submit((fingerprint, True))

    async def release(self, fingerprint: str) -> None:
        """Forgets a claim whose report was not stored (refused, or its transaction failed)."""
        if self._redis is not None:
            await self._marks.submit((fingerprint, False))

    async def _mark_many(self, items: list[tuple[str, bool]]) -> list[None]:
        assert self._redis is not None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for fingerprint, applied in items:
                    key = self._fingerprint_prefix + fingerprint
                    if applied:
                        pipe.set(key, APPLIED, ex=self._ttl)
                    else:
                        pipe.delete(key)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            # Harmless: an unconfirmed claim expires on its own, and until then copies go to the database.
            log.warning("redis confirm/release failed (%s); the claims expire on their own", exc)
        return [None] * len(items)

    async def _claim_many(self, items: list[tuple[str, dict[str, Any]]]) -> list[bool | None]:
        """One pipeline (not a MULTI: each script is atomic on its own) for the claims waiting."""
        assert self._redis is not None and self._script is not None
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for fingerprint, row in items:
                    await self._script(keys=[self._fingerprint_prefix + fingerprint, self._stream],
                                       args=[self._claim_ttl, _encode(row)], client=pipe)
                replies = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            log.warning("redis claim failed (%s): falling back to the database", exc)
            return [None] * len(items)
        answers: list[bool | None] = []
        for reply in replies:
            if isinstance(reply, Exception):
                log.warning("redis claim failed (%s): falling back to the database", reply)
                answers.append(None)
            else:
                answers.append({0: False, 1: True}.get(int(reply)))  # 2: in flight elsewhere → the database
        return answers

    # --- the flusher -------------------------------------------------------------------------

    async def _ensure_group(self) -> None:
        assert self._redis is not None
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def flush_once(self, block_ms: int | None = None) -> int:
        """Moves up to one batch from the stream to the table; answers how many entries it handled."""
        redis = self._redis
        assert redis is not None
        _, claimed, *_ = await redis.xautoclaim(self._stream, GROUP, self._consumer, self._reclaim_idle_ms,
                                                "0-0", count=self._batch)
        entries = list(claimed)
        if not entries:
            replies = await redis.xreadgroup(GROUP, self._consumer, {self._stream: ">"}, count=self._batch,
                                             block=block_ms)
            entries = [entry for _, stream_entries in replies or [] for entry in stream_entries]
        entries = [(entry_id, fields) for entry_id, fields in entries if fields]  # deleted while pending
        if not entries:
            return 0
        rows = [_decode(fields[b"r"]) for _, fields in entries]
        async with self._db.transaction() as session:
            await insert_postbacks_once(session, rows)
        ids = [entry_id for entry_id, _ in entries]
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xack(self._stream, GROUP, *ids)
            pipe.xdel(self._stream, *ids)
            await pipe.execute()
        return len(entries)

    async def run(self, idle_seconds: float = 0.2) -> None:
        """The background job (a no-op loop without Redis)."""
        if self._redis is None:
            return
        while True:
            try:
                await self._ensure_group()
                while True:
                    done = await self.flush_once(block_ms=int(idle_seconds * 1000))
                    if done:
                        log.debug("flushed %d spooled duplicate postbacks", done)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis or the database failing: retry later
                log.warning("audit spool flush failed (%s); retrying", exc)
                await asyncio.sleep(1.0)

    async def pending(self) -> int:
        """Entries not yet flushed (for tests and monitoring)."""
        if self._redis is None:
            return 0
        try:
            return int(await self._redis.xlen(self._stream))
        except (RedisError, OSError):
            return 0
