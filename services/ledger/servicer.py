"""LedgerService over gRPC: protobuf <-> domain, nothing else. Errors are mapped by the shared
interceptor (services.common.grpc_server)."""

from __future__ import annotations

import grpc
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.protoconv import timestamp
from services.ledger import domain
from services.ledger.domain import AccountRef, Kind, ReversalSpec, SystemAccount, TransferSpec
from services.ledger.models import Transfer
from services.ledger.repository import account_key_to_ref
from services.ledger.service import Ledger

_SYSTEM_TO_PB = {s: ledger_pb2.SystemAccount.Value(f"SYSTEM_ACCOUNT_{s.value}") for s in SystemAccount}
_SYSTEM_FROM_PB = {v: k for k, v in _SYSTEM_TO_PB.items()}
_KIND_TO_PB = {k: ledger_pb2.TransferKind.Value(f"TRANSFER_KIND_{k.value}") for k in Kind}
_KIND_FROM_PB = {v: k for k, v in _KIND_TO_PB.items()}
_STATE_TO_PB = {s.value: ledger_pb2.TransferState.Value(f"TRANSFER_STATE_{s.value}") for s in domain.State}
_RESULT_TO_PB = {
    name: ledger_pb2.TransferResultStatus.Value(f"TRANSFER_RESULT_STATUS_{name}")
    for name in ("CREATED", "ALREADY_EXISTED", "FAILED", "NOT_APPLIED")
}


_SYSTEM_REFS = {pb: AccountRef(system=s) for pb, s in _SYSTEM_FROM_PB.items()}  # immutable: shared


def _account_from_pb(ref: ledger_pb2.AccountRef) -> AccountRef:
    which = ref.WhichOneof("account")
    if which == "user_id":
        return AccountRef(user_id=ref.user_id)
    if which == "system":
        return _SYSTEM_REFS.get(ref.system) or AccountRef()
    return AccountRef()  # rejected by domain.validate


def _account_to_pb(ref: AccountRef) -> ledger_pb2.AccountRef:
    if ref.user_id is not None:
        return ledger_pb2.AccountRef(user_id=ref.user_id)
    assert ref.system is not None
    return ledger_pb2.AccountRef(system=_SYSTEM_TO_PB[ref.system])


def spec_from_pb(t: ledger_pb2.Transfer, default_timeout: int) -> TransferSpec:
    kind = _KIND_FROM_PB.get(t.kind)
    if kind is None:
        raise domain.KindNotAllowed("transfer kind is required")
    return TransferSpec(
        transfer_id=t.transfer_id, debit=_account_from_pb(t.debit_account),
        credit=_account_from_pb(t.credit_account), amount_kopecks=t.amount_kopecks, kind=kind,
        reference=t.reference, pending=t.pending,
        timeout_seconds=(t.timeout_seconds or default_timeout) if t.pending else 0,
    )


def transfer_to_pb(row: Transfer) -> ledger_pb2.Transfer:
    return ledger_pb2.Transfer(
        transfer_id=row.id,
        debit_account=_account_to_pb(account_key_to_ref(row.debit_account_id)),
        credit_account=_account_to_pb(account_key_to_ref(row.credit_account_id)),
        amount_kopecks=row.amount, kind=_KIND_TO_PB[Kind(row.kind)], reference=row.reference,
        pending=row.pending, timeout_seconds=row.timeout_seconds, state=_STATE_TO_PB[row.state],
        create_time=timestamp(row.created_at), resolve_time=timestamp(row.resolved_at),
    )


def entry_to_pb(row: Transfer, account_key: str) -> ledger_pb2.StatementEntry:
    is_credit = row.credit_account_id == account_key
    other = account_key_to_ref(row.debit_account_id if is_credit else row.credit_account_id)
    return ledger_pb2.StatementEntry(
        transfer_id=row.id, kind=_KIND_TO_PB[Kind(row.kind)],
        direction=ledger_pb2.ENTRY_DIRECTION_CREDIT if is_credit else ledger_pb2.ENTRY_DIRECTION_DEBIT,
        amount_kopecks=row.amount, state=_STATE_TO_PB[row.state],
        counterparty_kind=ledger_pb2.COUNTERPARTY_KIND_USER if other.is_user else ledger_pb2.COUNTERPARTY_KIND_SYSTEM,
        counterparty_system=_SYSTEM_TO_PB[other.system] if other.system else ledger_pb2.SYSTEM_ACCOUNT_UNSPECIFIED,
        reference=row.reference, create_time=timestamp(row.created_at),
    )


class LedgerServicer(ledger_pb2_grpc.LedgerServiceServicer):
    def __init__(self, ledger: Ledger, default_pending_timeout_seconds: int) -> None:
        self._ledger = ledger
        self._default_timeout = default_pending_timeout_seconds

    async def CreateTransfer(self, request: ledger_pb2.CreateTransferRequest,
                             context: grpc.aio.ServicerContext) -> ledger_pb2.CreateTransferResponse:
        created = await self._ledger.create_transfer(spec_from_pb(request.transfer, self._default_timeout))
        return ledger_pb2.CreateTransferResponse(transfer=transfer_to_pb(created.transfer),
                                                 already_existed=created.already_existed)

    async def CreateTransfers(self, request: ledger_pb2.CreateTransfersRequest,
                              context: grpc.aio.ServicerContext) -> ledger_pb2.CreateTransfersResponse:
        specs, early = [], []
        for t in request.transfers:
            try:
                specs.append(spec_from_pb(t, self._default_timeout))
            except domain.KindNotAllowed as exc:
                early.append((t.transfer_id, exc.reason))
        if early:
            failed = dict(early)
            return ledger_pb2.CreateTransfersResponse(applied=False, results=[
                ledger_pb2.TransferResult(
                    transfer_id=t.transfer_id,
                    status=_RESULT_TO_PB["FAILED" if t.transfer_id in failed else "NOT_APPLIED"],
                    reason=failed.get(t.transfer_id, ""))
                for t in request.transfers
            ])
        result = await self._ledger.create_transfers(specs)
        return ledger_pb2.CreateTransfersResponse(applied=result.applied, results=[
            ledger_pb2.TransferResult(transfer_id=tid, status=_RESULT_TO_PB[status], reason=reason)
            for tid, status, reason in result.results
        ])

    async def PostPendingTransfer(self, request: ledger_pb2.PostPendingTransferRequest,
                                  context: grpc.aio.ServicerContext) -> ledger_pb2.PostPendingTransferResponse:
        row = await self._ledger.post_pending(request.transfer_id)
        return ledger_pb2.PostPendingTransferResponse(transfer=transfer_to_pb(row))

    async def VoidPendingTransfer(self, request: ledger_pb2.VoidPendingTransferRequest,
                                  context: grpc.aio.ServicerContext) -> ledger_pb2.VoidPendingTransferResponse:
        row = await self._ledger.void_pending(request.transfer_id)
        return ledger_pb2.VoidPendingTransferResponse(transfer=transfer_to_pb(row))

    async def GetTransfer(self, request: ledger_pb2.GetTransferRequest,
                          context: grpc.aio.ServicerContext) -> ledger_pb2.GetTransferResponse:
        row = await self._ledger.get_transfer(request.transfer_id)
        return ledger_pb2.GetTransferResponse(transfer=transfer_to_pb(row))

    async def GetBalance(self, request: ledger_pb2.GetBalanceRequest,
                         context: grpc.aio.ServicerContext) -> ledger_pb2.GetBalanceResponse:
        b = await self._ledger.balance(request.user_id)
        return ledger_pb2.GetBalanceResponse(balance=ledger_pb2.Balance(
            user_id=request.user_id, posted_kopecks=b.posted, pending_debits_kopecks=b.debits_pending,
            pending_credits_kopecks=b.credits_pending, available_kopecks=b.available, debt_kopecks=b.debt))

    async def ListStatement(self, request: ledger_pb2.ListStatementRequest,
                            context: grpc.aio.ServicerContext) -> ledger_pb2.ListStatementResponse:
        rows, token = await self._ledger.statement(request.user_id, request.page_size, request.page_token)
        key = AccountRef(user_id=request.user_id).key
        return ledger_pb2.ListStatementResponse(entries=[entry_to_pb(r, key) for r in rows], next_page_token=token)

    async def ReverseCredit(self, request: ledger_pb2.ReverseCreditRequest,
                            context: grpc.aio.ServicerContext) -> ledger_pb2.ReverseCreditResponse:
        reversed_ = await self._ledger.reverse_credit(ReversalSpec(
            reversal_id=request.reversal_id, user_id=request.user_id, system=_SYSTEM_FROM_PB.get(request.system),
            amount_kopecks=request.amount_kopecks, reference=request.reference))
        return ledger_pb2.ReverseCreditResponse(taken_kopecks=reversed_.taken_kopecks,
                                                debt_kopecks=reversed_.debt_kopecks,
                                                already_existed=reversed_.already_existed)

    async def AuditLedger(self, request: ledger_pb2.AuditLedgerRequest,
                          context: grpc.aio.ServicerContext) -> ledger_pb2.AuditLedgerResponse:
        r = await self._ledger.audit()
        return ledger_pb2.AuditLedgerResponse(ok=r.ok, accounts_checked=r.accounts_checked,
                                              transfers_checked=r.transfers_checked,
                                              posted_sum_kopecks=r.posted_sum, violations=r.violations)
