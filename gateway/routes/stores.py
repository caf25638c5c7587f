"""Operator stores applying certificates and the USSD gateway — redemption."""

from __future__ import annotations

from cashback.redemption.v1 import redemption_pb2
from fastapi import APIRouter, Depends

from gateway.auth import StoreId, UssdGateway
from gateway.errors import responses
from gateway.limits import limit_by_address
from gateway.routes.common import Rpc
from gateway.schemas import CertificateRedemptionRequest, CertificateRedemptionResponse, UssdRequest, UssdResponse

router = APIRouter(dependencies=[Depends(limit_by_address)], responses=responses(400, 401, 429, 503, 504))


@router.post("/v1/stores/certificate-redemptions", response_model=CertificateRedemptionResponse, tags=["stores"],
             summary="A store applies a certificate to one device sale", responses=responses(404, 422))
async def redeem_certificate(body: CertificateRedemptionRequest, store_id: StoreId,
                             rpc: Rpc) -> CertificateRedemptionResponse:
    r = await rpc.redemption.RedeemCertificate(redemption_pb2.RedeemCertificateRequest(
        store_id=store_id, certificate_code=body.certificate_code, sale_id=body.sale_id,
        device_price_kopecks=body.device_price_kopecks), timeout=rpc.timeout)
    return CertificateRedemptionResponse(covered_kopecks=r.covered_kopecks, to_pay_kopecks=r.to_pay_kopecks,
                                         forfeited_kopecks=r.forfeited_kopecks)


@router.post("/v1/ussd", response_model=UssdResponse, tags=["ussd"], summary="The USSD gateway asks (*100*1#)")
async def ussd(body: UssdRequest, _gateway: UssdGateway, rpc: Rpc) -> UssdResponse:
    r = await rpc.redemption.AnswerUssd(redemption_pb2.AnswerUssdRequest(msisdn=body.msisdn, request=body.request),
                                        timeout=rpc.timeout)
    return UssdResponse(text=r.text)
