"""What route modules share: the upstreams dependency, paging parameters, the Idempotency-Key header."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query

from gateway.upstreams import Upstreams, upstreams
from services.common.limits import MAX_IDEMPOTENCY_KEY_LENGTH

Rpc = Annotated[Upstreams, Depends(upstreams)]
PageSize = Annotated[int, Query(ge=0, le=100, description="At most 100; 0 means 20.")]
PageToken = Annotated[str, Query(max_length=1024, description="next_page_token of the previous page.")]
IdempotencyKey = Annotated[str, Header(
    alias="Idempotency-Key", min_length=1, max_length=MAX_IDEMPOTENCY_KEY_LENGTH, pattern=r"^[\x21-\x7e]+$",
    description="A client-chosen unique key per money operation; a retry with the same key returns the first "
                "response.", examples=["5c1b7e0e-2f4a-4a3e-9d5e-3b8f0a6c7d21"])]
