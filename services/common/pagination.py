"""Opaque cursor page tokens (keyset pagination: newest first by (time, id))."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol, TypeVar

from services.common.errors import PageTokenInvalid

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def page_size(requested: int) -> int:
    if requested < 0:
        raise PageTokenInvalid("page_size must not be negative", reason="PAGE_SIZE_INVALID")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps({"t": at.isoformat(), "i": row_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str] | None:
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return datetime.fromisoformat(data["t"]), str(data["i"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PageTokenInvalid("page_token is not one this service issued") from exc


class _Keyed(Protocol):
    created_at: datetime
    id: str


RowT = TypeVar("RowT", bound=_Keyed)


def keyset_page(rows: Sequence[RowT], limit: int) -> tuple[list[RowT], str]:
    """`rows` fetched with `limit + 1`, newest first by (created_at, id): the page and the token
    of the next one ("" when this is the last)."""
    if len(rows) <= limit:
        return list(rows), ""
    last = rows[limit - 1]
    return list(rows[:limit]), encode_cursor(last.created_at, last.id)


def encode_offset(offset: int) -> str:
    return encode_cursor(datetime.fromtimestamp(0).astimezone(), str(offset))


def decode_offset(token: str) -> int:
    cursor = decode_cursor(token)
    if cursor is None:
        return 0
    try:
        value = int(cursor[1])
    except ValueError as exc:
        raise PageTokenInvalid("page_token is not one this service issued") from exc
    if value < 0:
        raise PageTokenInvalid("page_token is not one this service issued")
    return value
