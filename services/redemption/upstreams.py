"""Our own upstream services (ledger, identity) as the few calls redemption needs. gRPC errors
become domain errors or plain answers here, so the use cases read as rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
from cashback.identity.v1 import identity_pb2, identity_pb2_grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.errors import InvalidArgument, Unavailable
from services.common.grpc_client import error_info
from services.common.outbox import PermanentFailure
from services.redemption import domain

log = logging.getLogger("cashback.redemption.upstreams")

_STATE_NAMES = {v: k.removeprefix("TRANSFER_STATE_") for k, v in ledger_pb2.TransferState.items()}
_GOAL_NAMES = {v: k.removeprefix("SPENDING_GOAL_") for k, v in identity_pb2.SpendingGoal.items()}
_MOBILE_PAYMENTS = ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_MOBILE_PAYMENTS)
_CERTIFICATES = ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CERTIFICATES)
_DEFINITE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.ALREADY_EXISTS,
             grpc.StatusCode.FAILED_PRECONDITION}


class UpstreamUnavailable(Unavailable):
    """An upstream did not answer clearly; what it did is unknown."""

    reason = "UPSTREAM_UNAVAILABLE"


class PhoneInvalid(InvalidArgument):
    reason = "PHONE_INVALID"


def _unavailable(service: str, exc: grpc.aio.AioRpcError) -> UpstreamUnavailable:
    log.warning("%s call failed: %s %s", service, exc.code().name, exc.details())
    return UpstreamUnavailable(f"{service} is unavailable, try again later", service=service)


@dataclass(frozen=True)
class TransferView:
    transfer_id: str
    state: str  # POSTED | PENDING | VOIDED | EXPIRED
    amount_kopecks: int
    credit_user_id: str


@dataclass(frozen=True)
class UserView:
    user_id: str
    phone: str
    is_operator_subscriber: bool
    spending_goal: str  # MOBILE_SERVICES | DEVICE_CERTIFICATE | UNSPECIFIED


class LedgerClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = ledger_pb2_grpc.LedgerServiceStub(channel)

    async def _create(self, transfer: ledger_pb2.Transfer) -> str:
        """Creates (or replays) a transfer; answers its state. A replay whose stored fields differ
        only in something we do not control (a changed hold timeout setting) is accepted as is."""
        try:
            response = await self._stub.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=transfer))
            return _STATE_NAMES[response.transfer.state]
        except grpc.aio.AioRpcError as exc:
            info = error_info(exc)
            if info.reason == "INSUFFICIENT_FUNDS":
                raise domain.InsufficientFunds("not enough points", **info.metadata) from exc
            if (info.reason == "TRANSFER_EXISTS_WITH_DIFFERENT_FIELDS"
                    and info.metadata.get("field") == "timeout_seconds"):
                view = await self.get(transfer.transfer_id)
                assert view is not None
                return view.state
            raise _unavailable("ledger", exc) from exc

    async def hold_for_mobile_payment(self, transfer_id: str, user_id: str, amount_kopecks: int,
                                      reference: str, timeout_seconds: int) -> str:
        return await self._create(ledger_pb2.Transfer(
            transfer_id=transfer_id, debit_account=ledger_pb2.AccountRef(user_id=user_id),
            credit_account=_MOBILE_PAYMENTS, amount_kopecks=amount_kopecks,
            kind=ledger_pb2.TRANSFER_KIND_MOBILE_PAYMENT, reference=reference, pending=True,
            timeout_seconds=timeout_seconds))

    async def capture_mobile_payment(self, transfer_id: str, user_id: str, amount_kopecks: int,
                                     reference: str) -> str:
        """A posted (not pending) payment transfer, for a top-up that billing applied after the hold expired."""
        return await self._create(ledger_pb2.Transfer(
            transfer_id=transfer_id, debit_account=ledger_pb2.AccountRef(user_id=user_id),
            credit_account=_MOBILE_PAYMENTS, amount_kopecks=amount_kopecks,
            kind=ledger_pb2.TRANSFER_KIND_MOBILE_PAYMENT, reference=reference))

    async def pay_for_certificate(self, transfer_id: str, user_id: str, amount_kopecks: int, reference: str) -> str:
        return await self._create(ledger_pb2.Transfer(
            transfer_id=transfer_id, debit_account=ledger_pb2.AccountRef(user_id=user_id),
            credit_account=_CERTIFICATES, amount_kopecks=amount_kopecks,
            kind=ledger_pb2.TRANSFER_KIND_CERTIFICATE, reference=reference))

    async def post(self, transfer_id: str) -> str:
        """Posts a hold; answers the hold's final state (POSTED, or VOIDED / EXPIRED if it could not be)."""
        try:
            response = await self._stub.PostPendingTransfer(
                ledger_pb2.PostPendingTransferRequest(transfer_id=transfer_id))
            return _STATE_NAMES[response.transfer.state]
        except grpc.aio.AioRpcError as exc:
            return await self._resolved_state(transfer_id, exc)

    async def void(self, transfer_id: str) -> str:
        """Voids a hold; answers its final state (VOIDED, EXPIRED, or POSTED if it was posted)."""
        try:
            response = await self._stub.VoidPendingTransfer(
                ledger_pb2.VoidPendingTransferRequest(transfer_id=transfer_id))
            return _STATE_NAMES[response.transfer.state]
        except grpc.aio.AioRpcError as exc:
            return await self._resolved_state(transfer_id, exc)

    async def _resolved_state(self, transfer_id: str, exc: grpc.aio.AioRpcError) -> str:
        if exc.code() == grpc.StatusCode.FAILED_PRECONDITION:
            view = await self.get(transfer_id)
            if view is not None:
                return view.state
        raise _unavailable("ledger", exc) from exc

    async def get(self, transfer_id: str) -> TransferView | None:
        try:
            t = (await self._stub.GetTransfer(ledger_pb2.GetTransferRequest(transfer_id=transfer_id))).transfer
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise _unavailable("ledger", exc) from exc
        credit_user = t.credit_account.user_id if t.credit_account.WhichOneof("account") == "user_id" else ""
        return TransferView(t.transfer_id, _STATE_NAMES[t.state], t.amount_kopecks, credit_user)

    async def balance(self, user_id: str) -> tuple[int, int]:
        """(posted, available) kopecks."""
        try:
            b = (await self._stub.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id))).balance
        except grpc.aio.AioRpcError as exc:
            raise _unavailable("ledger", exc) from exc
        return b.posted_kopecks, b.available_kopecks


class IdentityClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = identity_pb2_grpc.IdentityServiceStub(channel)

    async def get_user(self, user_id: str) -> UserView:
        try:
            user = (await self._stub.GetUser(identity_pb2.GetUserRequest(user_id=user_id))).user
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise domain.UserNotFound(f"no user {user_id}") from exc
            raise _unavailable("identity", exc) from exc
        return _user_view(user)

    async def find_by_phone(self, phone: str) -> UserView | None:
        """None for a number nobody registered; PhoneInvalid for something that is not a phone number."""
        try:
            user = (await self._stub.GetUserByPhone(identity_pb2.GetUserByPhoneRequest(phone=phone))).user
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise PhoneInvalid("this is not a valid phone number") from exc
            raise _unavailable("identity", exc) from exc
        return _user_view(user)

    async def send_notification(self, key: str, user_id: str, template: str, params: dict[str, str]) -> None:
        """For the outbox relay: errors that a retry cannot fix park the message; others are retried."""
        try:
            await self._stub.SendNotification(identity_pb2.SendNotificationRequest(
                idempotency_key=key, user_id=user_id, template=template, params=params))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _DEFINITE:
                info = error_info(exc)
                raise PermanentFailure(f"identity refused notification {key}: {info.reason} {info.message}") from exc
            raise


def _user_view(user: identity_pb2.User) -> UserView:
    return UserView(user.user_id, user.phone, user.is_operator_subscriber,
                    _GOAL_NAMES.get(user.spending_goal, "UNSPECIFIED"))
