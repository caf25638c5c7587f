"""Spending points: paying the phone bill and ordering / handing over certificates (redemption).
The money routes take an Idempotency-Key, kept with the first response by the gateway and passed
to redemption, which is idempotent by the same key."""

from __future__ import annotations

from typing import Annotated

from cashback.redemption.v1 import redemption_pb2
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse

from gateway.auth import UserId
from gateway.errors import responses
from gateway.idempotency import fingerprint
from gateway.limits import limit_by_address
from gateway.routes.common import IdempotencyKey, PageSize, PageToken, Rpc
from gateway.schemas import (
    Certificate,
    CertificateHistory,
    CertificatePage,
    CertificateRequest,
    MobilePayment,
    MobilePaymentPage,
    MobilePaymentRequest,
    TransferCertificateRequest,
)

router = APIRouter(prefix="/v1/me", tags=["redemption"], dependencies=[Depends(limit_by_address)],
                   responses=responses(401, 429, 503, 504))

CertificateId = Annotated[str, Path(max_length=64)]

_MONEY_RESPONSES = {
    200: {"description": "A replay of an earlier request with the same Idempotency-Key"},
    **responses(400, 409, 422),
}


@router.post("/mobile-payments", response_model=MobilePayment, status_code=201, responses=_MONEY_RESPONSES,
             summary="Pay my phone bill with points")
async def create_mobile_payment(body: MobilePaymentRequest, request: Request, user_id: UserId, rpc: Rpc,
                                idempotency_key: IdempotencyKey) -> JSONResponse:
    async def call() -> JSONResponse:
        r = await rpc.redemption.CreateMobilePayment(redemption_pb2.CreateMobilePaymentRequest(
            user_id=user_id, idempotency_key=idempotency_key, amount_kopecks=body.amount_kopecks),
            timeout=rpc.timeout)
        return JSONResponse(MobilePayment.of(r.payment).model_dump(mode="json"),
                            status_code=200 if r.already_existed else 201)

    return await request.app.state.idempotency.run(
        f"user:{user_id}", idempotency_key, fingerprint("POST", request.url.path, body.model_dump()), call)


@router.get("/mobile-payments", response_model=MobilePaymentPage, summary="My mobile payments, newest first",
            responses=responses(400))
async def list_mobile_payments(user_id: UserId, rpc: Rpc, page_size: PageSize = 0,
                               page_token: PageToken = "") -> MobilePaymentPage:
    r = await rpc.redemption.ListMobilePayments(redemption_pb2.ListMobilePaymentsRequest(
        user_id=user_id, page_size=page_size, page_token=page_token), timeout=rpc.timeout)
    return MobilePaymentPage(payments=[MobilePayment.of(p) for p in r.payments], next_page_token=r.next_page_token)


@router.post("/certificates", response_model=Certificate, status_code=201,
             responses={**_MONEY_RESPONSES, 201: {"description": "The certificate, active", "links": {
                 "TransferCertificate": {"operationId": "transfer_certificate",
                                         "parameters": {"certificate_id": "$response.body#/certificate_id"}}}}},
             summary="Order a discount certificate with points (final: no refund)")
async def order_certificate(body: CertificateRequest, request: Request, user_id: UserId, rpc: Rpc,
                            idempotency_key: IdempotencyKey) -> JSONResponse:
    async def call() -> JSONResponse:
        r = await rpc.redemption.OrderCertificate(redemption_pb2.OrderCertificateRequest(
            user_id=user_id, idempotency_key=idempotency_key, nominal_kopecks=body.nominal_kopecks),
            timeout=rpc.timeout)
        return JSONResponse(Certificate.of(r.certificate).model_dump(mode="json"),
                            status_code=200 if r.already_existed else 201)

    # The answer holds the code, a bearer secret: never kept by the gateway (a replay asks again).
    return await request.app.state.idempotency.run(
        f"user:{user_id}", idempotency_key, fingerprint("POST", request.url.path, body.model_dump()), call,
        keep_body=False)


@router.get("/certificates", response_model=CertificatePage, summary="Certificates I hold, newest first",
            responses=responses(400))
async def list_certificates(user_id: UserId, rpc: Rpc, page_size: PageSize = 0,
                            page_token: PageToken = "") -> CertificatePage:
    r = await rpc.redemption.ListCertificates(redemption_pb2.ListCertificatesRequest(
        user_id=user_id, page_size=page_size, page_token=page_token), timeout=rpc.timeout)
    return CertificatePage(certificates=[Certificate.of(c) for c in r.certificates],
                           next_page_token=r.next_page_token)


@router.post("/certificates/{certificate_id}/transfer", response_model=Certificate,
             summary="Hand a certificate to another phone number: the recipient gets a new code, the old one "
                     "stops working; the answer has no code", responses=responses(400, 404, 422))
async def transfer_certificate(certificate_id: CertificateId, body: TransferCertificateRequest, user_id: UserId,
                               rpc: Rpc) -> Certificate:
    r = await rpc.redemption.TransferCertificate(redemption_pb2.TransferCertificateRequest(
        user_id=user_id, certificate_id=certificate_id, to_phone=body.to_phone), timeout=rpc.timeout)
    return Certificate.of(r.certificate)


@router.get("/certificates/{certificate_id}/history", response_model=CertificateHistory,
            summary="What happened to a certificate I hold: issued, handed over, redeemed",
            responses=responses(400, 404))
async def certificate_history(certificate_id: CertificateId, user_id: UserId, rpc: Rpc) -> CertificateHistory:
    r = await rpc.redemption.GetCertificateHistory(redemption_pb2.GetCertificateHistoryRequest(
        user_id=user_id, certificate_id=certificate_id), timeout=rpc.timeout)
    return CertificateHistory.of(certificate_id, r.events)
