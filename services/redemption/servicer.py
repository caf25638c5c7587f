"""RedemptionService over gRPC: protobuf <-> domain, nothing else. Errors are mapped by the shared
interceptor (services.common.grpc_server)."""

from __future__ import annotations

import grpc
from cashback.redemption.v1 import redemption_pb2, redemption_pb2_grpc

from services.common.protoconv import timestamp
from services.redemption import domain
from services.redemption.models import Certificate, MobilePayment
from services.redemption.service import Redemption

_PAYMENT_STATUS = {s.value: redemption_pb2.PaymentStatus.Value(f"PAYMENT_STATUS_{s.value}")
                   for s in domain.PaymentStatus}
_CERTIFICATE_STATUS = {
    domain.CertificateStatus.ACTIVE.value: redemption_pb2.CERTIFICATE_STATUS_ACTIVE,
    domain.CertificateStatus.REDEEMED.value: redemption_pb2.CERTIFICATE_STATUS_REDEEMED,
}


def payment_to_pb(row: MobilePayment) -> redemption_pb2.MobilePayment:
    return redemption_pb2.MobilePayment(
        payment_id=row.id, user_id=row.user_id, phone=row.phone, amount_kopecks=row.amount,
        status=_PAYMENT_STATUS[row.status], failure_reason=row.failure_reason,
        create_time=timestamp(row.created_at), complete_time=timestamp(row.completed_at),
    )


def certificate_to_pb(row: Certificate, viewer: str) -> redemption_pb2.Certificate:
    """The code only for its current holder: a certificate is a bearer instrument."""
    code = domain.format_code(row.code) if viewer and viewer == row.holder_user_id else ""
    return redemption_pb2.Certificate(
        certificate_id=row.id, code=code, holder_user_id=row.holder_user_id,
        nominal_kopecks=row.nominal,
        status=_CERTIFICATE_STATUS.get(row.status, redemption_pb2.CERTIFICATE_STATUS_UNSPECIFIED),
        create_time=timestamp(row.created_at), redeem_time=timestamp(row.redeemed_at),
    )


class RedemptionServicer(redemption_pb2_grpc.RedemptionServiceServicer):
    def __init__(self, redemption: Redemption) -> None:
        self._redemption = redemption

    async def CreateMobilePayment(self, request: redemption_pb2.CreateMobilePaymentRequest,
                                  context: grpc.aio.ServicerContext) -> redemption_pb2.CreateMobilePaymentResponse:
        payment, existed = await self._redemption.create_mobile_payment(
            request.user_id, request.idempotency_key, request.amount_kopecks)
        return redemption_pb2.CreateMobilePaymentResponse(payment=payment_to_pb(payment), already_existed=existed)

    async def ListMobilePayments(self, request: redemption_pb2.ListMobilePaymentsRequest,
                                 context: grpc.aio.ServicerContext) -> redemption_pb2.ListMobilePaymentsResponse:
        rows, token = await self._redemption.list_mobile_payments(request.user_id, request.page_size,
                                                                  request.page_token)
        return redemption_pb2.ListMobilePaymentsResponse(payments=[payment_to_pb(r) for r in rows],
                                                         next_page_token=token)

    async def GetMobilePayment(self, request: redemption_pb2.GetMobilePaymentRequest,
                               context: grpc.aio.ServicerContext) -> redemption_pb2.GetMobilePaymentResponse:
        payment = await self._redemption.get_mobile_payment(request.user_id, request.payment_id)
        return redemption_pb2.GetMobilePaymentResponse(payment=payment_to_pb(payment))

    async def OrderCertificate(self, request: redemption_pb2.OrderCertificateRequest,
                               context: grpc.aio.ServicerContext) -> redemption_pb2.OrderCertificateResponse:
        cert, existed = await self._redemption.order_certificate(
            request.user_id, request.idempotency_key, request.nominal_kopecks)
        return redemption_pb2.OrderCertificateResponse(certificate=certificate_to_pb(cert, request.user_id),
                                                       already_existed=existed)

    async def ListCertificates(self, request: redemption_pb2.ListCertificatesRequest,
                               context: grpc.aio.ServicerContext) -> redemption_pb2.ListCertificatesResponse:
        rows, token = await self._redemption.list_certificates(request.user_id, request.page_size, request.page_token)
        return redemption_pb2.ListCertificatesResponse(certificates=[certificate_to_pb(r, request.user_id)
                                                                     for r in rows],
                                                       next_page_token=token)

    async def TransferCertificate(self, request: redemption_pb2.TransferCertificateRequest,
                                  context: grpc.aio.ServicerContext) -> redemption_pb2.TransferCertificateResponse:
        cert = await self._redemption.transfer_certificate(request.user_id, request.certificate_id, request.to_phone)
        return redemption_pb2.TransferCertificateResponse(certificate=certificate_to_pb(cert, request.user_id))

    async def GetCertificateHistory(self, request: redemption_pb2.GetCertificateHistoryRequest,
                                    context: grpc.aio.ServicerContext) -> redemption_pb2.GetCertificateHistoryResponse:
        events = await self._redemption.certificate_history(request.user_id, request.certificate_id)
        return redemption_pb2.GetCertificateHistoryResponse(events=[
            redemption_pb2.CertificateEvent(
                kind=redemption_pb2.CertificateEventKind.Value(f"CERTIFICATE_EVENT_KIND_{e.kind.value}"),
                event_time=timestamp(e.at), from_user_id=e.from_user_id, to_user_id=e.to_user_id,
                store_id=e.store_id)
            for e in events])

    async def RedeemCertificate(self, request: redemption_pb2.RedeemCertificateRequest,
                                context: grpc.aio.ServicerContext) -> redemption_pb2.RedeemCertificateResponse:
        result = await self._redemption.redeem_certificate(request.store_id, request.certificate_code,
                                                           request.sale_id, request.device_price_kopecks)
        return redemption_pb2.RedeemCertificateResponse(covered_kopecks=result.covered_kopecks,
                                                        to_pay_kopecks=result.to_pay_kopecks,
                                                        forfeited_kopecks=result.forfeited_kopecks)

    async def AnswerUssd(self, request: redemption_pb2.AnswerUssdRequest,
                         context: grpc.aio.ServicerContext) -> redemption_pb2.AnswerUssdResponse:
        return redemption_pb2.AnswerUssdResponse(text=await self._redemption.answer_ussd(request.msisdn,
                                                                                          request.request))

    async def SweepCredit(self, request: redemption_pb2.SweepCreditRequest,
                          context: grpc.aio.ServicerContext) -> redemption_pb2.SweepCreditResponse:
        payment_id = await self._redemption.sweep_credit(request.user_id, request.credit_transfer_id,
                                                         request.amount_kopecks)
        return redemption_pb2.SweepCreditResponse(payment_id=payment_id)
