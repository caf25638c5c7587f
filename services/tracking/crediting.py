"""What the ledger must do for a purchase, enqueued in the purchase's own transaction.

A purchase remembers the net cashback already sent to the ledger (`credited_kopecks`) and how many
ledger movements made it (`credit_count`). Whenever its state changes — the accrual job credits
it, a later report declines it, lowers or raises its amount, or sends it back to pending — the
difference between what it should have credited (`domain.credit_due`) and what it has is enqueued
to the outbox as ONE message, in the transaction that changed the purchase: a credit when positive,
a reversal when negative. Each movement has its own id, derived from the purchase and the count,
so the relay's retries are idempotent at the ledger and no movement is made twice:

- `cashback:<purchase>` (first credit; `activation:<activation id>` for an operator service),
  then `cashback:<purchase>:<n>` for each later credit of a difference;
- `reversal:<purchase>:<n>` for each reversal (the ledger takes what the user has and records
  the rest as a debt that the next credits repay first).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.common.outbox import enqueue
from services.tracking import domain
from services.tracking.domain import PurchaseStatus
from services.tracking.models import OutboxMessage, Purchase
from services.tracking.upstreams import CREDIT_TOPIC, REVERSAL_TOPIC, SWEEP_TOPIC, CreditMessage, ReversalMessage


def _funding(purchase: Purchase) -> tuple[str, str]:
    """(system account, transfer kind) of the purchase's cashback."""
    if purchase.source == "activation":
        return "SERVICE_FUNDING", "SERVICE_ACTIVATION"
    return "CASHBACK_FUNDING", "CASHBACK"


def _first_credit_id(purchase: Purchase) -> str:
    return f"activation:{purchase.order_id}" if purchase.source == "activation" else f"cashback:{purchase.id}"


def settle(session: AsyncSession, purchase: Purchase, now: datetime, *, partner_name: str,
           first_partner_credit: bool = False, sweeps: bool = False) -> int:
    """Enqueues the ledger movement the purchase's state calls for (see the module docstring) and
    records it on the purchase; answers the signed amount (0: nothing to do)."""
    if purchase.user_id is None:
        return 0
    due = domain.credit_due(PurchaseStatus(purchase.status), purchase.cashback_kopecks, purchase.credited_kopecks)
    if due == 0:
        return 0
    system, kind = _funding(purchase)
    n = purchase.credit_count
    if due > 0:
        transfer_id = _first_credit_id(purchase) if n == 0 else f"cashback:{purchase.id}:{n}"
        payload = asdict(CreditMessage(
            transfer_id=transfer_id, system=system, kind=kind, user_id=purchase.user_id, amount_kopecks=due,
            reference=purchase.id, notify_key=f"cashback-credited:{purchase.id}" + (f":{n}" if n else ""),
            partner_name=partner_name, referral_check=first_partner_credit and n == 0))
        enqueue(session, OutboxMessage, topic=CREDIT_TOPIC, key=transfer_id, now=now, payload=payload)
        if sweeps and purchase.source != "activation":
            # Its own message, committed with the credit's (see services/tracking/upstreams.py).
            enqueue(session, OutboxMessage, topic=SWEEP_TOPIC, key=f"sweep:{transfer_id}", now=now, payload=payload)
    else:
        reversal_id = f"reversal:{purchase.id}:{n}"
        enqueue(session, OutboxMessage, topic=REVERSAL_TOPIC, key=reversal_id, now=now, payload=asdict(ReversalMessage(
            reversal_id=reversal_id, system=system, user_id=purchase.user_id, amount_kopecks=-due,
            reference=purchase.id, notify_key=f"cashback-reversed:{purchase.id}:{n}", partner_name=partner_name)))
    purchase.credited_kopecks += due
    purchase.credit_count = n + 1
    return due
