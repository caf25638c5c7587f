"""The signed-in user's own data: profile, e-mail, membership, balance, statement, purchases,
notifications and claims. The user id is the token's subject, never a path or body field."""

from __future__ import annotations

import asyncio
from typing import Annotated

from cashback.identity.v1 import identity_pb2
from cashback.ledger.v1 import ledger_pb2
from cashback.tracking.v1 import tracking_pb2
from fastapi import APIRouter, Depends, Query

from gateway.auth import UserId
from gateway.errors import ApiError, responses
from gateway.limits import limit_by_address
from gateway.routes.common import PageSize, PageToken, Rpc
from gateway.schemas import (
    BalanceResponse,
    ChallengeResponse,
    Claim,
    ClaimPage,
    ClaimRequest,
    EmailCodeRequest,
    EmailVerifyRequest,
    Notification,
    NotificationPage,
    Purchase,
    PurchasePage,
    PurchaseReport,
    PurchaseStatus,
    PurchaseWithHistory,
    StatementEntry,
    StatementPage,
    UpdateMeRequest,
    User,
    to_proto_enum,
)

router = APIRouter(prefix="/v1/me", tags=["me"], dependencies=[Depends(limit_by_address)],
                   responses=responses(401, 429, 503, 504))


@router.get("", response_model=User, summary="My profile")
async def get_me(user_id: UserId, rpc: Rpc) -> User:
    r = await rpc.identity.GetUser(identity_pb2.GetUserRequest(user_id=user_id), timeout=rpc.timeout)
    return User.of(r.user)


@router.patch("", response_model=User, summary="Change my spending goal", responses=responses(400))
async def update_me(body: UpdateMeRequest, user_id: UserId, rpc: Rpc) -> User:
    goal = to_proto_enum(identity_pb2.SpendingGoal.DESCRIPTOR, body.spending_goal, "SPENDING_GOAL_")
    r = await rpc.identity.UpdateSpendingGoal(identity_pb2.UpdateSpendingGoalRequest(
        user_id=user_id, spending_goal=goal), timeout=rpc.timeout)  # type: ignore[arg-type]
    return User.of(r.user)


@router.post("/email/codes", response_model=ChallengeResponse, summary="Send a code to confirm an e-mail",
             responses=responses(400))
async def send_email_code(body: EmailCodeRequest, user_id: UserId, rpc: Rpc) -> ChallengeResponse:
    r = await rpc.identity.StartEmailChallenge(identity_pb2.StartEmailChallengeRequest(
        user_id=user_id, email=body.email), timeout=rpc.timeout)
    return ChallengeResponse(challenge_id=r.challenge_id, expires_in_seconds=r.expires_in_seconds,
                             resend_in_seconds=r.resend_in_seconds)


@router.post("/email/verify", response_model=User, summary="Confirm the e-mail with its code",
             responses=responses(400))
async def verify_email_code(body: EmailVerifyRequest, user_id: UserId, rpc: Rpc) -> User:
    r = await rpc.identity.VerifyEmailChallenge(identity_pb2.VerifyEmailChallengeRequest(
        user_id=user_id, challenge_id=body.challenge_id, code=body.code), timeout=rpc.timeout)
    return User.of(r.user)


@router.post("/disable", response_model=User, summary="Leave the program (points stay)")
async def disable_me(user_id: UserId, rpc: Rpc) -> User:
    r = await rpc.identity.DisableUser(identity_pb2.DisableUserRequest(user_id=user_id), timeout=rpc.timeout)
    return User.of(r.user)


@router.post("/enable", response_model=User, summary="Rejoin the program")
async def enable_me(user_id: UserId, rpc: Rpc) -> User:
    r = await rpc.identity.EnableUser(identity_pb2.EnableUserRequest(user_id=user_id), timeout=rpc.timeout)
    return User.of(r.user)


@router.get("/balance", response_model=BalanceResponse, summary="My points and the cashback on its way")
async def get_balance(user_id: UserId, rpc: Rpc) -> BalanceResponse:
    balance, pending = await asyncio.gather(
        rpc.ledger.GetBalance(ledger_pb2.GetBalanceRequest(user_id=user_id), timeout=rpc.timeout),
        rpc.tracking.GetPendingCashback(tracking_pb2.GetPendingCashbackRequest(user_id=user_id), timeout=rpc.timeout),
    )
    return BalanceResponse(balance_kopecks=balance.balance.posted_kopecks,
                           available_kopecks=balance.balance.available_kopecks,
                           pending_cashback_kopecks=pending.pending_cashback_kopecks,
                           debt_kopecks=balance.balance.debt_kopecks)


@router.get("/statement", response_model=StatementPage, summary="My ledger entries, newest first",
            responses=responses(400))
async def get_statement(user_id: UserId, rpc: Rpc, page_size: PageSize = 0,
                        page_token: PageToken = "") -> StatementPage:
    r = await rpc.ledger.ListStatement(ledger_pb2.ListStatementRequest(
        user_id=user_id, page_size=page_size, page_token=page_token), timeout=rpc.timeout)
    return StatementPage(entries=[StatementEntry.of(e) for e in r.entries], next_page_token=r.next_page_token)


@router.get("/purchases", response_model=PurchasePage, summary="My purchases with their cashback and decision",
            responses=responses(400))
async def list_purchases(user_id: UserId, rpc: Rpc,
                         status: Annotated[PurchaseStatus | None, Query()] = None,  # type: ignore[valid-type]
                         page_size: PageSize = 0, page_token: PageToken = "") -> PurchasePage:
    r = await rpc.tracking.ListPurchases(tracking_pb2.ListPurchasesRequest(
        user_id=user_id, page_size=page_size, page_token=page_token,
        status=to_proto_enum(tracking_pb2.PurchaseStatus.DESCRIPTOR, status, "PURCHASE_STATUS_"),  # type: ignore[arg-type]
    ), timeout=rpc.timeout)
    return PurchasePage(purchases=[Purchase.of(p) for p in r.purchases], next_page_token=r.next_page_token)


@router.get("/purchases/{purchase_id}", response_model=PurchaseWithHistory,
            summary="One of my purchases with its status history (the shop's reports)", responses=responses(404))
async def get_purchase(purchase_id: str, user_id: UserId, rpc: Rpc) -> PurchaseWithHistory:
    r = await rpc.tracking.GetPurchase(tracking_pb2.GetPurchaseRequest(purchase_id=purchase_id), timeout=rpc.timeout)
    if r.purchase.user_id != user_id:  # someone else's, or unattributed: as if it did not exist
        raise ApiError(404, "PURCHASE_NOT_FOUND", "No such purchase of yours.")
    return PurchaseWithHistory(purchase=Purchase.of(r.purchase), history=[PurchaseReport.of(x) for x in r.reports])


@router.get("/notifications", response_model=NotificationPage, summary="What I was told, newest first",
            responses=responses(400))
async def list_notifications(user_id: UserId, rpc: Rpc, page_size: PageSize = 0,
                             page_token: PageToken = "") -> NotificationPage:
    r = await rpc.identity.ListNotifications(identity_pb2.ListNotificationsRequest(
        user_id=user_id, page_size=page_size, page_token=page_token), timeout=rpc.timeout)
    return NotificationPage(notifications=[Notification.of(n) for n in r.notifications],
                            next_page_token=r.next_page_token)


@router.post("/claims", response_model=Claim, status_code=201, summary="File a missing-cashback claim",
             responses={**responses(400, 404, 409, 422), 201: {"description": "The claim, open", "links": {
                 name: {"operationId": name, "parameters": {"claim_id": "$response.body#/claim_id"}}
                 for name in ("approve_claim", "reject_claim")}}})
async def file_claim(body: ClaimRequest, user_id: UserId, rpc: Rpc) -> Claim:
    r = await rpc.tracking.FileClaim(tracking_pb2.FileClaimRequest(
        user_id=user_id, partner_id=body.partner_id, order_id=body.order_id, order_date=body.order_date,
        amount_kopecks=body.amount_kopecks, comment=body.comment), timeout=rpc.timeout)
    return Claim.of(r.claim)


@router.get("/claims", response_model=ClaimPage, summary="My claims", responses=responses(400))
async def list_my_claims(user_id: UserId, rpc: Rpc, page_size: PageSize = 0, page_token: PageToken = "") -> ClaimPage:
    r = await rpc.tracking.ListClaims(tracking_pb2.ListClaimsRequest(
        user_id=user_id, page_size=page_size, page_token=page_token), timeout=rpc.timeout)
    return ClaimPage(claims=[Claim.of(c) for c in r.claims], next_page_token=r.next_page_token)
