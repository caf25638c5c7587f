"""The gateway's balance and statement routes in front of the real ledger (and identity and
tracking, which the balance route also asks): a reversal's debt and its repayments as the
user sees them."""

from __future__ import annotations

import pytest
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc

from services.common.grpc_client import open_channel
from tests.service.gateway_harness import gateway_settings, running_gateway
from tests.service.gateway_users import bearer, random_host, sign_in
from tests.service.test_ledger import accrual, payment


@pytest.fixture
async def stack(start_service):
    ledger = await start_service("ledger")
    identity = await start_service("identity", address_codes_per_hour=0)
    tracking = await start_service("tracking", identity_address=identity.address, ledger_address=ledger.address)
    settings = gateway_settings(identity_address=identity.address, ledger_address=ledger.address,
                                tracking_address=tracking.address)
    channel = open_channel(ledger.address)
    async with running_gateway(settings, client_host=random_host()) as client:
        yield client, ledger_pb2_grpc.LedgerServiceStub(channel)
    await channel.close()


async def test_my_balance_shows_the_debt_and_my_statement_the_reversal_and_its_repayment(stack):
    client, ledger = stack
    anna = await sign_in(client)
    uid = anna["user"]["user_id"]
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 10_000, f"cashback:1:{uid}")))
    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=payment(uid, 7_000, tid=f"pay:{uid}")))
    await ledger.ReverseCredit(ledger_pb2.ReverseCreditRequest(
        reversal_id=f"reversal:{uid}", user_id=uid, amount_kopecks=10_000,
        system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING, reference="purchase-1"))
    balance = await client.get("/v1/me/balance", headers=bearer(anna))
    assert balance.status_code == 200, balance.text
    assert balance.json() == {"balance_kopecks": 0, "available_kopecks": 0, "pending_cashback_kopecks": 0,
                              "debt_kopecks": 7_000}

    await ledger.CreateTransfer(ledger_pb2.CreateTransferRequest(transfer=accrual(uid, 9_000, f"cashback:2:{uid}")))
    balance = (await client.get("/v1/me/balance", headers=bearer(anna))).json()
    assert (balance["balance_kopecks"], balance["available_kopecks"], balance["debt_kopecks"]) == (2_000, 2_000, 0)
    statement = await client.get("/v1/me/statement", headers=bearer(anna))
    assert statement.status_code == 200, statement.text
    entries = statement.json()["entries"]
    assert [(e["transfer_id"], e["kind"], e["direction"], e["amount_kopecks"], e["counterparty_system"])
            for e in entries] == [
        (f"cashback:2:{uid}:repay", "DEBT_REPAYMENT", "DEBIT", 7_000, "DEBTS"),
        (f"cashback:2:{uid}", "CASHBACK", "CREDIT", 9_000, "CASHBACK_FUNDING"),
        (f"reversal:{uid}", "CASHBACK_REVERSAL", "DEBIT", 3_000, "CASHBACK_FUNDING"),
        (f"pay:{uid}", "MOBILE_PAYMENT", "DEBIT", 7_000, "MOBILE_PAYMENTS"),
        (f"cashback:1:{uid}", "CASHBACK", "CREDIT", 10_000, "CASHBACK_FUNDING"),
    ]
    assert entries[2]["reference"] == "purchase-1"
