"""5. A service credential opens only the methods its caller needs: the billing system reports service
activations and cannot move points; the gateway reads balances but cannot create transfers. Every
process of the stack presents its own dev credential, so the money paths of this suite run under
these rules too."""

from __future__ import annotations

import uuid

import grpc
import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from cashback.redemption.v1 import redemption_pb2, redemption_pb2_grpc
from cashback.tracking.v1 import tracking_pb2, tracking_pb2_grpc

from services.common.credentials import dev_token
from services.common.grpc_client import error_info, open_channel
from tests.e2e.conftest import sign_up
from tests.security.conftest import mts_number

pytestmark = pytest.mark.e2e


def address(stack, name: str) -> str:
    return f"127.0.0.1:{next(p for p in stack.stack.procs if p.name == name).port}"


def minting(user_id: str) -> ledger_pb2.CreateTransferRequest:
    return ledger_pb2.CreateTransferRequest(transfer=ledger_pb2.Transfer(
        transfer_id=f"cashback:{uuid.uuid4()}", kind=ledger_pb2.TRANSFER_KIND_CASHBACK, amount_kopecks=10_000_000,
        debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
        credit_account=ledger_pb2.AccountRef(user_id=user_id)))


async def refusal(call) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_the_billing_token_reports_activations_and_cannot_mint_points(http, stack):
    user = (await sign_up(http, mts_number()))["user"]
    async with open_channel(address(stack, "ledger"), token=dev_token("billing")) as channel:
        minted = await refusal(ledger_pb2_grpc.LedgerServiceStub(channel).CreateTransfer(minting(user["user_id"])))
    assert minted.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(minted).reason == "SERVICE_METHOD_NOT_PERMITTED"
    async with open_channel(address(stack, "tracking"), token=dev_token("billing")) as channel:
        reported = await tracking_pb2_grpc.TrackingServiceStub(channel).ReportServiceActivation(
            tracking_pb2.ReportServiceActivationRequest(activation_id=f"act-{uuid.uuid4()}",
                                                        user_id=user["user_id"], service_code="music"))
    assert reported.purchase.purchase_id


@pytest.mark.parametrize(("caller", "service", "call"), [
    ("gateway", "ledger", lambda ch: ledger_pb2_grpc.LedgerServiceStub(ch).CreateTransfer(minting("someone"))),
    ("identity", "ledger", lambda ch: ledger_pb2_grpc.LedgerServiceStub(ch).CreateTransfer(minting("someone"))),
    ("tracking", "redemption", lambda ch: redemption_pb2_grpc.RedemptionServiceStub(ch).CreateMobilePayment(
        redemption_pb2.CreateMobilePaymentRequest(user_id="someone", idempotency_key="k", amount_kopecks=100))),
    ("redemption", "tracking", lambda ch: tracking_pb2_grpc.TrackingServiceStub(ch).ReportServiceActivation(
        tracking_pb2.ReportServiceActivationRequest(activation_id="a", user_id="someone", service_code="music"))),
])
async def test_a_caller_outside_its_methods_is_refused(stack, caller, service, call):
    async with open_channel(address(stack, service), token=dev_token(caller)) as channel:
        refused = await refusal(call(channel))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED, refused
