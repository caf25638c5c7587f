"""Calls to identity and the ledger, and the outbox handler that delivers credits.

The credit handler runs the steps of one accrual (a `CreditMessage`) in order, each idempotent at the callee by its
key, so a retry after any crash repeats nothing: the ledger transfer (`cashback:<purchase_id>` or
`activation:<activation_id>`), then, for a user's first credited purchase, the referral bonus
(`referral:<user_id>`, exactly once per referred user whatever the number of attempts), then the
user's notification (`cashback-credited:<purchase_id>`).

The automatic sweep to the phone bill (redemption's SweepCredit, deduplicated there by
`sweep:<credit_transfer_id>`) is its OWN outbox message (topic `sweep`), enqueued in the same
transaction as the credit message of a partner purchase — not a step of the credit handler — so
that a redemption outage delays only the sweep: the credit and the notification go out anyway,
and the sweep row is retried with backoff until redemption answers. Because the relay may deliver
the two rows in any order, the sweep handler first repeats the (idempotent) ledger credit with the
same transfer id and figures: the sweep therefore only ever runs after the credit exists, and
whichever row runs first creates it, once."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import grpc
from cashback.identity.v1 import identity_pb2, identity_pb2_grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from cashback.redemption.v1 import redemption_pb2, redemption_pb2_grpc

from services.common.errors import Unavailable
from services.common.grpc_client import error_info
from services.common.outbox import PermanentFailure
from services.tracking.domain import UserDisabled, UserNotFound

log = logging.getLogger("cashback.tracking")

CREDIT_TOPIC = "credit"
SWEEP_TOPIC = "sweep"
REVERSAL_TOPIC = "reversal"
_PERMANENT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED}


class IdentityClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)

    async def require_user(self, user_id: str, *, active: bool) -> identity_pb2.User:
        """The user, or USER_NOT_FOUND; with `active`, USER_DISABLED for a user who left the program."""
        if not user_id:
            raise UserNotFound("user_id is required")
        try:
            user = (await self._stub.GetUser(identity_pb2.GetUserRequest(user_id=user_id))).user
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                raise UserNotFound(f"no user {user_id}") from exc
            raise Unavailable(f"identity did not answer: {exc.code().name}", reason="IDENTITY_UNAVAILABLE") from exc
        if active and user.status != identity_pb2.USER_STATUS_ACTIVE:
            raise UserDisabled("the user has left the cashback program; clicks are not tracked")
        return user

    async def referrer(self, user_id: str) -> str:
        return (await self._stub.GetReferrer(identity_pb2.GetReferrerRequest(user_id=user_id))).referrer_user_id

    async def notify(self, key: str, user_id: str, template: str, params: dict[str, str]) -> None:
        await self._stub.SendNotification(identity_pb2.SendNotificationRequest(
            idempotency_key=key, user_id=user_id, template=template, params=params))


class LedgerClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = ledger_pb2_grpc.LedgerServiceStub(channel)

    async def credit(self, transfer_id: str, system: str, user_id: str, amount_kopecks: int, kind: str,
                     reference: str) -> None:
        await self._stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
            transfer_id=transfer_id,
            debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SystemAccount.Value(f"SYSTEM_ACCOUNT_{system}")),
            credit_account=ledger_pb2.AccountRef(user_id=user_id),
            amount_kopecks=amount_kopecks, kind=ledger_pb2.TransferKind.Value(f"TRANSFER_KIND_{kind}"),
            reference=reference,
        )))


    async def repaid(self, credit_transfer_id: str) -> int:
        """What a credit repaid of the user's debt before reaching their points (0: nothing)."""
        try:
            return (await self._stub.GetTransfer(ledger_pb2.GetTransferRequest(
                transfer_id=f"{credit_transfer_id}:repay"))).transfer.amount_kopecks
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return 0
            raise

    async def reverse(self, reversal_id: str, system: str, user_id: str, amount_kopecks: int,
                      reference: str) -> ledger_pb2.ReverseCreditResponse:
        return await self._stub.ReverseCredit(ledger_pb2.ReverseCreditRequest(
            reversal_id=reversal_id, user_id=user_id, amount_kopecks=amount_kopecks,
            system=ledger_pb2.SystemAccount.Value(f"SYSTEM_ACCOUNT_{system}"), reference=reference))


class RedemptionClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = redemption_pb2_grpc.RedemptionServiceStub(channel)

    async def sweep(self, user_id: str, credit_transfer_id: str, amount_kopecks: int) -> str:
        return (await self._stub.SweepCredit(redemption_pb2.SweepCreditRequest(
            user_id=user_id, credit_transfer_id=credit_transfer_id, amount_kopecks=amount_kopecks))).payment_id


def _raise_classified(exc: grpc.aio.AioRpcError) -> None:
    info = error_info(exc)
    if exc.code() in _PERMANENT:
        raise PermanentFailure(f"{info.code.name} {info.reason}: {info.message}") from exc
    raise exc


@dataclass(frozen=True)
class CreditMessage:
    """A `credit` (and `sweep`) outbox message: one ledger credit of a purchase's cashback, then
    the user's notification. `system` and `kind` name the ledger's SystemAccount and TransferKind."""

    transfer_id: str
    system: str
    kind: str
    user_id: str
    amount_kopecks: int
    reference: str
    notify_key: str
    partner_name: str
    referral_check: bool  # the user's first partner credit: a referrer may earn the bonus


@dataclass(frozen=True)
class ReversalMessage:
    """A `reversal` outbox message: the ledger's ReverseCredit, then the user's notification."""

    reversal_id: str
    system: str
    user_id: str
    amount_kopecks: int
    reference: str
    notify_key: str
    partner_name: str


class ReversalHandler:
    """Delivers one `reversal` outbox message: the ledger's ReverseCredit (idempotent by its id; what
    the user no longer has becomes a debt there), then the user's notification."""

    def __init__(self, identity: IdentityClient, ledger: LedgerClient) -> None:
        self._identity = identity
        self._ledger = ledger

    async def __call__(self, key: str, payload: dict[str, Any]) -> None:
        m = ReversalMessage(**payload)
        try:
            result = await self._ledger.reverse(m.reversal_id, m.system, m.user_id, m.amount_kopecks, m.reference)
            await self._identity.notify(m.notify_key, m.user_id, "cashback_reversed", {
                "amount_kopecks": str(m.amount_kopecks), "partner_name": m.partner_name,
                "debt_kopecks": str(result.debt_kopecks)})
        except grpc.aio.AioRpcError as exc:
            _raise_classified(exc)
        log.info("reversal %s: %d kopecks taken back, %d became debt", m.reversal_id, result.taken_kopecks,
                 result.debt_kopecks)


class CreditHandler:
    """Delivers one `credit` outbox message (see the module docstring)."""

    def __init__(self, identity: IdentityClient, ledger: LedgerClient, referral_bonus_kopecks: int) -> None:
        self._identity = identity
        self._ledger = ledger
        self._bonus = referral_bonus_kopecks

    async def __call__(self, key: str, payload: dict[str, Any]) -> None:
        m = CreditMessage(**payload)
        try:
            await self._ledger.credit(m.transfer_id, m.system, m.user_id, m.amount_kopecks, m.kind, m.reference)
            if m.referral_check:
                await self._referral_bonus(m.user_id)
            await self._identity.notify(m.notify_key, m.user_id, "cashback_credited", {
                "amount_kopecks": str(m.amount_kopecks), "partner_name": m.partner_name})
        except grpc.aio.AioRpcError as exc:
            _raise_classified(exc)

    async def _referral_bonus(self, user_id: str) -> None:
        referrer = await self._identity.referrer(user_id)
        if not referrer:
            return
        await self._ledger.credit(f"referral:{user_id}", "REFERRAL_FUNDING", referrer, self._bonus, "REFERRAL_BONUS",
                                  user_id)
        await self._identity.notify(f"referral-bonus:{user_id}", referrer, "referral_bonus",
                                    {"amount_kopecks": str(self._bonus)})
        log.info("referral bonus for %s paid to %s", user_id, referrer)


class SweepHandler:
    """Delivers one `sweep` outbox message (see the module docstring): the credit (idempotent,
    usually already there), then redemption's SweepCredit, which decides whether the user's goal
    and number call for a sweep and pays the phone bill at most once per credit."""

    def __init__(self, ledger: LedgerClient, redemption: RedemptionClient) -> None:
        self._ledger = ledger
        self._redemption = redemption

    async def __call__(self, key: str, payload: dict[str, Any]) -> None:
        m = CreditMessage(**payload)
        try:
            await self._ledger.credit(m.transfer_id, m.system, m.user_id, m.amount_kopecks, m.kind, m.reference)
            # The part of the credit that repaid a debt never reached the user's points: not sweepable.
            amount = m.amount_kopecks - await self._ledger.repaid(m.transfer_id)
            payment_id = await self._redemption.sweep(m.user_id, m.transfer_id, amount) if amount > 0 else ""
        except grpc.aio.AioRpcError as exc:
            _raise_classified(exc)
        if payment_id:
            log.info("credit %s swept to the phone bill as payment %s", m.transfer_id, payment_id)
