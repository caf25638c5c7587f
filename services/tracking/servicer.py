"""TrackingService over gRPC: protobuf <-> domain, nothing else. Errors are mapped by the shared
interceptor (services.common.grpc_server)."""

from __future__ import annotations

import asyncio

import grpc
from cashback.tracking.v1 import tracking_pb2 as pb
from cashback.tracking.v1 import tracking_pb2_grpc

from services.common.errors import InvalidArgument
from services.common.grpc_server import failure_of
from services.common.logs import request_id_var
from services.common.protoconv import timestamp
from services.tracking import domain
from services.tracking.domain import (
    Channel,
    ClaimStatus,
    CustomerType,
    Decision,
    DecisionReason,
    PostbackOutcome,
    PurchaseFacts,
    PurchaseStatus,
    RateType,
    RuleSet,
)
from services.tracking.ingestion import IngestResult
from services.tracking.models import Claim, Partner, Purchase, PurchaseReport
from services.tracking.postbacks import RawPostback
from services.tracking.records import decision_of, rules_of
from services.tracking.service import Tracking

_REASON = {r: pb.DecisionReason.Value(f"DECISION_REASON_{r.value}") for r in DecisionReason}
_STATUS = {s: pb.PurchaseStatus.Value(f"PURCHASE_STATUS_{s.value}") for s in PurchaseStatus}
_STATUS_FROM = {v: k for k, v in _STATUS.items()}
_OUTCOME = {o: pb.PostbackOutcome.Value(f"POSTBACK_OUTCOME_{o.value}") for o in PostbackOutcome}
_CLAIM = {s: pb.ClaimStatus.Value(f"CLAIM_STATUS_{s.value}") for s in ClaimStatus}
_CLAIM_FROM = {v: k for k, v in _CLAIM.items()}
_RATE = {RateType.PERCENT: pb.RATE_TYPE_PERCENT, RateType.FIXED: pb.RATE_TYPE_FIXED}
MAX_POSTBACK_BATCH = 1000
_INGEST_POSTBACKS = f"/{pb.DESCRIPTOR.services_by_name['TrackingService'].full_name}/IngestPostbacks"


def _raw(request: pb.IngestPostbackRequest) -> RawPostback:
    return RawPostback(network=request.network, http_method=request.http_method, query_string=request.query_string,
                       body=request.body, headers={k.lower(): v for k, v in request.headers.items()},
                       remote_address=request.remote_address)


def _ingested(result: IngestResult) -> pb.IngestPostbackResponse:
    return pb.IngestPostbackResponse(postback_id=result.postback_id, outcome=_OUTCOME[result.outcome],
                                     purchase_id=result.purchase_id)


def rules_to_pb(rules: RuleSet) -> pb.RuleSet:
    return pb.RuleSet(
        version=rules.version,
        tiers=[pb.Tier(min_amount_kopecks=t.min_amount_kopecks, rate_type=_RATE[t.rate_type], rate_bps=t.rate_bps,
                       fixed_kopecks=t.fixed_kopecks) for t in rules.tiers],
        cap_kopecks=rules.cap_kopecks, min_purchase_kopecks=rules.min_purchase_kopecks,
        excluded_domains=list(rules.excluded_domains), app_orders_allowed=rules.app_orders_allowed,
        exclusive_loyalty=rules.exclusive_loyalty, legal_entities_excluded=rules.legal_entities_excluded,
    )


def partner_to_pb(row: Partner) -> pb.Partner:
    return pb.Partner(partner_id=row.slug, name=row.name, category_id=row.category_id, description=row.description,
                      terms_text=row.terms_text, site_url=row.site_url, rules=rules_to_pb(rules_of(row)))


def decision_to_pb(d: Decision) -> pb.Decision:
    return pb.Decision(reason=_REASON[d.reason], rule_version=d.rule_version, tier_index=d.tier_index,
                       amount_kopecks=d.amount_kopecks, computed_kopecks=d.computed_kopecks,
                       cashback_kopecks=d.cashback_kopecks, explanation=d.explanation)


def purchase_to_pb(row: Purchase) -> pb.Purchase:
    return pb.Purchase(
        purchase_id=row.id, user_id=row.user_id or "", partner_id=row.partner_id, network=row.network,
        order_id=row.order_id, part_id=row.part_id if row.source == "postback" else "",
        status=_STATUS[PurchaseStatus(row.status)], amount_kopecks=row.amount_kopecks,
        cashback_kopecks=row.cashback_kopecks, decision=decision_to_pb(decision_of(row)),
        create_time=timestamp(row.created_at), confirm_time=timestamp(row.confirm_time),
        accrue_time=timestamp(row.accrue_time), commission_kopecks=row.commission_kopecks,
        credited_kopecks=row.credited_kopecks,
    )


def report_to_pb(row: PurchaseReport) -> pb.PurchaseReport:
    return pb.PurchaseReport(status=_STATUS[domain.initial_status(domain.ReportedStatus(row.status))],
                             amount_kopecks=row.amount_kopecks, event_time=timestamp(row.event_time),
                             receive_time=timestamp(row.received_at), superseded=row.effect == "SUPERSEDED")


def claim_to_pb(row: Claim) -> pb.Claim:
    return pb.Claim(
        claim_id=row.id, user_id=row.user_id, partner_id=row.partner_id, order_id=row.order_id,
        order_date=row.order_date, amount_kopecks=row.amount_kopecks, comment=row.comment,
        status=_CLAIM[ClaimStatus(row.status)], decision_reason=row.decision_reason, purchase_id=row.purchase_id,
        create_time=timestamp(row.created_at), decide_time=timestamp(row.decided_at),
    )


def facts_from_pb(f: pb.PurchaseFacts) -> PurchaseFacts:
    return PurchaseFacts(
        amount_kopecks=f.amount_kopecks,
        channel=Channel.APP if f.channel == pb.CHANNEL_APP else Channel.WEB,
        customer_type=CustomerType.LEGAL_ENTITY if f.customer_type == pb.CUSTOMER_TYPE_LEGAL_ENTITY
        else CustomerType.INDIVIDUAL,
        destination_domain=f.destination_domain, other_loyalty_used=f.other_loyalty_used,
    )


class TrackingServicer(tracking_pb2_grpc.TrackingServiceServicer):
    def __init__(self, tracking: Tracking) -> None:
        self._t = tracking

    async def ListCategories(self, request: pb.ListCategoriesRequest,
                             context: grpc.aio.ServicerContext) -> pb.ListCategoriesResponse:
        rows = await self._t.categories()
        return pb.ListCategoriesResponse(categories=[
            pb.Category(category_id=c.slug, name=c.name, partner_count=n) for c, n in rows])

    async def ListPartners(self, request: pb.ListPartnersRequest,
                           context: grpc.aio.ServicerContext) -> pb.ListPartnersResponse:
        rows, token, total = await self._t.partners(request.category_id, request.query, request.page_size,
                                                    request.page_token)
        return pb.ListPartnersResponse(partners=[partner_to_pb(r) for r in rows], next_page_token=token,
                                       total_size=total)

    async def GetPartner(self, request: pb.GetPartnerRequest,
                         context: grpc.aio.ServicerContext) -> pb.GetPartnerResponse:
        return pb.GetPartnerResponse(partner=partner_to_pb(await self._t.partner(request.partner_id)))

    async def QuoteCashback(self, request: pb.QuoteCashbackRequest,
                            context: grpc.aio.ServicerContext) -> pb.QuoteCashbackResponse:
        decision = await self._t.quote(request.partner_id, facts_from_pb(request.facts))
        return pb.QuoteCashbackResponse(decision=decision_to_pb(decision))

    async def RecordClick(self, request: pb.RecordClickRequest,
                          context: grpc.aio.ServicerContext) -> pb.RecordClickResponse:
        click_id, url = await self._t.record_click(request.user_id, request.partner_id)
        return pb.RecordClickResponse(click_id=click_id, redirect_url=url)

    async def IngestPostback(self, request: pb.IngestPostbackRequest,
                             context: grpc.aio.ServicerContext) -> pb.IngestPostbackResponse:
        return _ingested(await self._t.ingestion.ingest(_raw(request)))

    async def _ingest_one(self, request: pb.IngestPostbackRequest) -> IngestResult:
        if request.request_id:  # this task's own context (gather wraps each in a task)
            request_id_var.set(request.request_id)
        return await self._t.ingestion.ingest(_raw(request))

    async def IngestPostbacks(self, request: pb.IngestPostbacksRequest,
                              context: grpc.aio.ServicerContext) -> pb.IngestPostbacksResponse:
        """Each postback as IngestPostback would take it, all at once: their Redis claims and their
        new purchases go in together (services/common/batching.py)."""
        if not 0 < len(request.postbacks) <= MAX_POSTBACK_BATCH:
            raise InvalidArgument(f"a batch holds 1 to {MAX_POSTBACK_BATCH} postbacks", reason="BATCH_SIZE_INVALID")
        outcomes = await asyncio.gather(*(self._ingest_one(p) for p in request.postbacks), return_exceptions=True)
        results = []
        for outcome in outcomes:
            if isinstance(outcome, IngestResult):
                results.append(pb.IngestPostbackResult(response=_ingested(outcome)))
            elif isinstance(outcome, Exception):
                f = failure_of(outcome, _INGEST_POSTBACKS)
                results.append(pb.IngestPostbackResult(failure=pb.RpcFailure(
                    code=f.code.value[0], message=f.message, reason=f.reason, metadata=f.metadata)))
            else:
                raise outcome  # cancelled
        return pb.IngestPostbacksResponse(results=results)

    async def ListPurchases(self, request: pb.ListPurchasesRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListPurchasesResponse:
        rows, token = await self._t.lifecycle.purchases(request.user_id, _STATUS_FROM.get(request.status),
                                                        request.page_size, request.page_token)
        return pb.ListPurchasesResponse(purchases=[purchase_to_pb(r) for r in rows], next_page_token=token)

    async def GetPurchase(self, request: pb.GetPurchaseRequest,
                          context: grpc.aio.ServicerContext) -> pb.GetPurchaseResponse:
        row, reports = await self._t.lifecycle.purchase(request.purchase_id)
        return pb.GetPurchaseResponse(purchase=purchase_to_pb(row), reports=[report_to_pb(r) for r in reports])

    async def GetPendingCashback(self, request: pb.GetPendingCashbackRequest,
                                 context: grpc.aio.ServicerContext) -> pb.GetPendingCashbackResponse:
        pending = await self._t.lifecycle.pending_cashback(request.user_id)
        return pb.GetPendingCashbackResponse(pending_cashback_kopecks=pending)

    async def ReportServiceActivation(self, request: pb.ReportServiceActivationRequest,
                                      context: grpc.aio.ServicerContext) -> pb.ReportServiceActivationResponse:
        row, existed = await self._t.activations.report_activation(request.activation_id, request.user_id,
                                                                   request.service_code)
        return pb.ReportServiceActivationResponse(purchase=purchase_to_pb(row), already_existed=existed)

    async def FileClaim(self, request: pb.FileClaimRequest, context: grpc.aio.ServicerContext) -> pb.FileClaimResponse:
        row = await self._t.claims.file_claim(domain.ClaimInput(
            user_id=request.user_id, partner_id=request.partner_id, order_id=request.order_id,
            order_date=request.order_date, amount_kopecks=request.amount_kopecks, comment=request.comment))
        return pb.FileClaimResponse(claim=claim_to_pb(row))

    async def ListClaims(self, request: pb.ListClaimsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListClaimsResponse:
        rows, token = await self._t.claims.page(request.user_id, _CLAIM_FROM.get(request.status), request.page_size,
                                           request.page_token)
        return pb.ListClaimsResponse(claims=[claim_to_pb(r) for r in rows], next_page_token=token)

    async def ApproveClaim(self, request: pb.ApproveClaimRequest,
                           context: grpc.aio.ServicerContext) -> pb.ApproveClaimResponse:
        return pb.ApproveClaimResponse(claim=claim_to_pb(await self._t.claims.approve_claim(request.claim_id,
                                                                                     request.decided_by)))

    async def RejectClaim(self, request: pb.RejectClaimRequest,
                          context: grpc.aio.ServicerContext) -> pb.RejectClaimResponse:
        return pb.RejectClaimResponse(claim=claim_to_pb(await self._t.claims.reject_claim(
            request.claim_id, request.decided_by, request.reason)))
