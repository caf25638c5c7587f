"""Opaque cursor page tokens (keyset pagination: newest first by (time, id))."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from services.common.errors import PageTokenInvalid

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
# A page token comes back from anyone: whatever it holds must fit the database's integers (an
# offset past this is no page we ever issued) and its ids our id columns.
MAX_OFFSET = 2**31 - 1
MAX_ID_LENGTH = 64


def page_size(requested: int) -> int:
    if requested < 0:
        raise PageTokenInvalid("page_size must not be negative", reason="PAGE_SIZE_INVALID")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_cursor(at: datetime, row_id: str) -> str:
    raw = json.dumps({"t": at.isoformat(), "i": row_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[datetime, str] | None:
    """The (time, id) a page token carries; PAGE_TOKEN_INVALID for anything this service did not
    issue: not base64, not JSON, wrong types, a time without a zone, an id longer than ours."""
    if not token:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        at, row_id = data["t"], data["i"]
        if not isinstance(at, str) or not isinstance(row_id, str | int) or isinstance(row_id, bool):
            raise TypeError("wrong types")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None or len(str(row_id)) > MAX_ID_LENGTH:
            raise ValueError("not a cursor of ours")
        return moment.astimezone(UTC), str(row_id)
    except (ValueError, KeyError, TypeError, IndexError, OverflowError, RecursionError) as exc:
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
    if not 0 <= value <= MAX_OFFSET:
        raise PageTokenInvalid("page_token is not one this service issued")
    return value
