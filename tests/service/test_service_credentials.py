"""Service credentials (DESIGN §3): every RPC of our services needs one, and each caller may call only
the methods it needs; the health check needs none."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import grpc
import pytest
from cashback.identity.v1 import identity_pb2
from cashback.ledger.v1 import ledger_pb2, ledger_pb2_grpc
from cashback.redemption.v1 import redemption_pb2
from cashback.tracking.v1 import tracking_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import ROOT, ConfigError
from services.common.credentials import CALLERS, DEV_SERVICE_TOKEN, PERMISSIONS, dev_token, hash_key
from services.common.grpc_client import error_info, open_channel


async def balance(address: str, token: str) -> ledger_pb2.GetBalanceResponse:
    async with open_channel(address, token=token) as channel:
        return await ledger_pb2_grpc.LedgerServiceStub(channel).GetBalance(
            ledger_pb2.GetBalanceRequest(user_id="someone"))


async def refused(address: str, token: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await balance(address, token)
    return caught.value


async def test_calls_without_a_valid_credential_are_refused_and_health_stays_open(start_service):
    ledger = await start_service("ledger")
    assert (await balance(ledger.address, DEV_SERVICE_TOKEN)).balance.posted_kopecks == 0
    for token in ("", "guessed", DEV_SERVICE_TOKEN + "x"):
        error = await refused(ledger.address, token)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_info(error).reason == "SERVICE_CREDENTIAL_INVALID"
    async with grpc.aio.insecure_channel(ledger.address) as channel:  # no credential at all
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_outside_dev_only_the_configured_credentials_are_taken(start_service, monkeypatch):
    monkeypatch.setenv("CASHBACK_ENV", "prod")
    monkeypatch.delenv("CASHBACK_SERVICE_CREDENTIALS", raising=False)
    with pytest.raises(ConfigError, match="CASHBACK_SERVICE_CREDENTIALS is required"):
        await start_service("ledger")
    monkeypatch.setenv("CASHBACK_SERVICE_CREDENTIALS", f"gateway:{hash_key('gateway-token')}, "
                                                       f"redemption:{hash_key('redemption-token')}, "
                                                       f"dev:{hash_key('operator-token')}")
    ledger = await start_service("ledger")
    for token in ("gateway-token", "redemption-token"):
        assert (await balance(ledger.address, token)).balance.posted_kopecks == 0
    assert (await refused(ledger.address, DEV_SERVICE_TOKEN)).code() == grpc.StatusCode.UNAUTHENTICATED
    # A caller named "dev" has no dev powers outside dev: it may call nothing.
    assert (await refused(ledger.address, "operator-token")).code() == grpc.StatusCode.PERMISSION_DENIED


async def mint(address: str, token: str) -> ledger_pb2.CreateTransferResponse:
    async with open_channel(address, token=token) as channel:
        return await ledger_pb2_grpc.LedgerServiceStub(channel).CreateTransfer(ledger_pb2.CreateTransferRequest(
            transfer=ledger_pb2.Transfer(
                transfer_id=f"cashback:{uuid.uuid4()}", kind=ledger_pb2.TRANSFER_KIND_CASHBACK, amount_kopecks=100,
                debit_account=ledger_pb2.AccountRef(system=ledger_pb2.SYSTEM_ACCOUNT_CASHBACK_FUNDING),
                credit_account=ledger_pb2.AccountRef(user_id="someone"))))


async def test_each_caller_may_call_only_the_methods_it_needs(start_service):
    ledger = await start_service("ledger")
    for caller in ("billing", "gateway", "identity"):  # none of them moves points
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await mint(ledger.address, dev_token(caller))
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value).reason == "SERVICE_METHOD_NOT_PERMITTED"
    assert (await refused(ledger.address, dev_token("billing"))).code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await mint(ledger.address, dev_token("tracking"))).transfer.amount_kopecks == 100  # crediting cashback
    assert (await balance(ledger.address, dev_token("gateway"))).balance.posted_kopecks == 100


def test_every_permitted_method_exists():
    services = {"identity": identity_pb2, "tracking": tracking_pb2, "ledger": ledger_pb2, "redemption": redemption_pb2}
    for service, callers in PERMISSIONS.items():
        [descriptor] = services[service].DESCRIPTOR.services_by_name.values()
        for caller, methods in callers.items():
            assert caller in CALLERS
            assert methods <= set(descriptor.methods_by_name), (service, caller)


def test_a_service_without_credentials_outside_dev_exits_before_touching_its_database(tmp_path):
    database = tmp_path / "ledger.db"
    env = {**os.environ, "CASHBACK_ENV": "prod", "LEDGER_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
           "LEDGER_PORT": "0", "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'gen'}"}
    env.pop("CASHBACK_SERVICE_CREDENTIALS", None)
    done = subprocess.run([sys.executable, "-m", "services.ledger"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert "CASHBACK_SERVICE_CREDENTIALS is required" in done.stderr
    assert not database.exists()
