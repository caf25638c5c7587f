"""Support staff deciding claims — tracking."""

from __future__ import annotations

from typing import Annotated

from cashback.tracking.v1 import tracking_pb2
from fastapi import APIRouter, Depends, Path, Query

from gateway.auth import SupportStaff
from gateway.errors import responses
from gateway.limits import limit_by_address
from gateway.routes.common import PageSize, PageToken, Rpc
from gateway.schemas import Claim, ClaimPage, ClaimStatus, RejectClaimRequest, to_proto_enum

router = APIRouter(prefix="/v1/support", tags=["support"], dependencies=[Depends(limit_by_address)],
                   responses=responses(400, 401, 429, 503, 504))

ClaimId = Annotated[str, Path(min_length=1, max_length=100)]


@router.get("/claims", response_model=ClaimPage, summary="Every user's claims")
async def list_claims(staff: SupportStaff, rpc: Rpc,
                      status: Annotated[ClaimStatus | None, Query()] = None,  # type: ignore[valid-type]
                      page_size: PageSize = 0, page_token: PageToken = "") -> ClaimPage:
    r = await rpc.tracking.ListClaims(tracking_pb2.ListClaimsRequest(
        user_id="", page_size=page_size, page_token=page_token,
        status=to_proto_enum(tracking_pb2.ClaimStatus.DESCRIPTOR, status, "CLAIM_STATUS_"),  # type: ignore[arg-type]
    ), timeout=rpc.timeout)
    return ClaimPage(claims=[Claim.of(c) for c in r.claims], next_page_token=r.next_page_token)


@router.post("/claims/{claim_id}/approve", response_model=Claim, summary="Approve a claim: the purchase accrues",
             responses=responses(404, 422))
async def approve_claim(claim_id: ClaimId, staff: SupportStaff, rpc: Rpc) -> Claim:
    r = await rpc.tracking.ApproveClaim(tracking_pb2.ApproveClaimRequest(claim_id=claim_id, decided_by=staff),
                                        timeout=rpc.timeout)
    return Claim.of(r.claim)


@router.post("/claims/{claim_id}/reject", response_model=Claim, summary="Reject a claim with a reason",
             responses=responses(404, 422))
async def reject_claim(claim_id: ClaimId, body: RejectClaimRequest, staff: SupportStaff, rpc: Rpc) -> Claim:
    r = await rpc.tracking.RejectClaim(tracking_pb2.RejectClaimRequest(
        claim_id=claim_id, decided_by=staff, reason=body.reason), timeout=rpc.timeout)
    return Claim.of(r.claim)
