"""The partner catalogue and quotes (public), and clicks (signed-in users) — tracking."""

from __future__ import annotations

from typing import Annotated

from cashback.tracking.v1 import tracking_pb2
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import RedirectResponse

from gateway.auth import LinkUserId, UserId
from gateway.errors import responses
from gateway.limits import limit_by_address
from gateway.routes.common import PageSize, PageToken, Rpc
from gateway.schemas import (
    MAX_PURCHASE_KOPECKS,
    SLUG,
    Category,
    CategoryList,
    ClickResponse,
    CustomerType,
    Decision,
    Partner,
    PartnerPage,
    PurchaseChannel,
    QuoteResponse,
    to_proto_enum,
)

router = APIRouter(tags=["catalogue"], dependencies=[Depends(limit_by_address)], responses=responses(429, 503, 504))

PartnerId = Annotated[str, Path(min_length=1, max_length=100, pattern=SLUG,
                                description="The partner's slug.", examples=["aliexpress"])]


@router.get("/v1/categories", response_model=CategoryList, summary="Partner categories")
async def list_categories(rpc: Rpc) -> CategoryList:
    r = await rpc.tracking.ListCategories(tracking_pb2.ListCategoriesRequest(), timeout=rpc.timeout)
    return CategoryList(categories=[Category(category_id=c.category_id, name=c.name, partner_count=c.partner_count)
                                    for c in r.categories])


def _partner_links(source: str) -> dict[int | str, dict]:
    return {200: {"description": "Successful Response", "links": {
        name: {"operationId": name, "parameters": {"partner_id": source}}
        for name in ("get_partner", "quote", "record_click")}}}


@router.get("/v1/partners", response_model=PartnerPage, summary="Partners by category and text",
            responses={**responses(400), **_partner_links("$response.body#/partners/0/partner_id")})
async def list_partners(rpc: Rpc, category: Annotated[str, Query(max_length=100)] = "",
                        q: Annotated[str, Query(max_length=200)] = "", page_size: PageSize = 0,
                        page_token: PageToken = "") -> PartnerPage:
    r = await rpc.tracking.ListPartners(tracking_pb2.ListPartnersRequest(
        category_id=category, query=q, page_size=page_size, page_token=page_token), timeout=rpc.timeout)
    return PartnerPage(partners=[Partner.of(p) for p in r.partners], next_page_token=r.next_page_token,
                       total_size=r.total_size)


@router.get("/v1/partners/{partner_id}", response_model=Partner, summary="One partner and its terms",
            responses=responses(400, 404))
async def get_partner(partner_id: PartnerId, rpc: Rpc) -> Partner:
    r = await rpc.tracking.GetPartner(tracking_pb2.GetPartnerRequest(partner_id=partner_id), timeout=rpc.timeout)
    return Partner.of(r.partner)


@router.get("/v1/partners/{partner_id}/quote", response_model=QuoteResponse,
            summary="What a purchase would earn, with the decision", responses=responses(400, 404))
async def quote(partner_id: PartnerId, rpc: Rpc,
                amount_kopecks: Annotated[int, Query(gt=0, le=MAX_PURCHASE_KOPECKS, examples=[100000])],
                channel: PurchaseChannel = PurchaseChannel("WEB"),  # type: ignore[valid-type]
                customer_type: CustomerType = CustomerType("INDIVIDUAL"),  # type: ignore[valid-type]
                destination_domain: Annotated[str, Query(max_length=253)] = "",
                other_loyalty_used: bool = False) -> QuoteResponse:
    facts = tracking_pb2.PurchaseFacts(
        amount_kopecks=amount_kopecks, destination_domain=destination_domain, other_loyalty_used=other_loyalty_used,
        channel=to_proto_enum(tracking_pb2.Channel.DESCRIPTOR, channel, "CHANNEL_"),  # type: ignore[arg-type]
        customer_type=to_proto_enum(tracking_pb2.CustomerType.DESCRIPTOR, customer_type,  # type: ignore[arg-type]
                                    "CUSTOMER_TYPE_"))
    r = await rpc.tracking.QuoteCashback(tracking_pb2.QuoteCashbackRequest(partner_id=partner_id, facts=facts),
                                         timeout=rpc.timeout)
    return QuoteResponse(decision=Decision.of(r.decision))


async def _click(rpc: Rpc, user_id: str, partner_id: str) -> tracking_pb2.RecordClickResponse:
    return await rpc.tracking.RecordClick(tracking_pb2.RecordClickRequest(user_id=user_id, partner_id=partner_id),
                                          timeout=rpc.timeout)


@router.post("/v1/partners/{partner_id}/clicks", response_model=ClickResponse, status_code=201,
             summary="Record a click before going to the partner", responses=responses(400, 401, 404, 422))
async def record_click(partner_id: PartnerId, user_id: UserId, rpc: Rpc) -> ClickResponse:
    r = await _click(rpc, user_id, partner_id)
    return ClickResponse(click_id=r.click_id, redirect_url=r.redirect_url)


@router.get("/go/{partner_id}", status_code=302, response_class=RedirectResponse,
            summary="Record a click and redirect the browser to the partner (a plain link: the bearer token "
                    "or the website's session cookie)",
            responses={302: {"description": "To the partner, with the click id as the sub-id",
                             "headers": {"Location": {"schema": {"type": "string"}}}},
                       **responses(400, 401, 403, 404, 422)})
async def go(partner_id: PartnerId, user_id: LinkUserId, rpc: Rpc) -> RedirectResponse:
    r = await _click(rpc, user_id, partner_id)
    return RedirectResponse(r.redirect_url, status_code=302, headers={"Cache-Control": "no-store"})
