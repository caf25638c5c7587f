"""Sign-in: SMS codes, operator SSO assertions, token refresh and logout (identity)."""

from __future__ import annotations

from cashback.identity.v1 import identity_pb2
from fastapi import APIRouter, Depends, Request, Response

from gateway.errors import responses
from gateway.limits import client_address, limit_by_address
from gateway.routes.common import Rpc
from gateway.schemas import (
    ChallengeResponse,
    OperatorSignInRequest,
    PhoneCodeRequest,
    PhoneVerifyRequest,
    RefreshRequest,
    SignInResponse,
    TokensResponse,
)

router = APIRouter(prefix="/v1/auth", tags=["auth"], dependencies=[Depends(limit_by_address)],
                   responses=responses(400, 429, 503, 504))


@router.post("/phone/codes", response_model=ChallengeResponse, summary="Send an SMS sign-in code")
async def send_phone_code(body: PhoneCodeRequest, request: Request, rpc: Rpc) -> ChallengeResponse:
    r = await rpc.identity.StartPhoneChallenge(identity_pb2.StartPhoneChallengeRequest(
        phone=body.phone, client_address=client_address(request)), timeout=rpc.timeout)
    return ChallengeResponse(challenge_id=r.challenge_id, expires_in_seconds=r.expires_in_seconds,
                             resend_in_seconds=r.resend_in_seconds)


@router.post("/phone/verify", response_model=SignInResponse, summary="Sign in or sign up with the SMS code",
             responses=responses(401))
async def verify_phone_code(body: PhoneVerifyRequest, request: Request, rpc: Rpc) -> SignInResponse:
    r = await rpc.identity.VerifyPhoneChallenge(identity_pb2.VerifyPhoneChallengeRequest(
        challenge_id=body.challenge_id, code=body.code, referral_code=body.referral_code or "",
        client_address=client_address(request)), timeout=rpc.timeout)
    return SignInResponse.of(r)


@router.post("/operator", response_model=SignInResponse, summary="Sign in with the operator's SSO assertion",
             responses=responses(401))
async def operator_sign_in(body: OperatorSignInRequest, rpc: Rpc) -> SignInResponse:
    r = await rpc.identity.SignInWithOperator(identity_pb2.SignInWithOperatorRequest(assertion=body.assertion),
                                              timeout=rpc.timeout)
    return SignInResponse.of(r)


@router.post("/refresh", response_model=TokensResponse, summary="Rotate the refresh token",
             responses=responses(401))
async def refresh(body: RefreshRequest, rpc: Rpc) -> TokensResponse:
    r = await rpc.identity.RefreshTokens(identity_pb2.RefreshTokensRequest(refresh_token=body.refresh_token),
                                         timeout=rpc.timeout)
    return TokensResponse(access_token=r.tokens.access_token, refresh_token=r.tokens.refresh_token,
                          expires_in_seconds=r.tokens.expires_in_seconds)


@router.post("/logout", status_code=204, response_class=Response, summary="Revoke the refresh token")
async def logout(body: RefreshRequest, rpc: Rpc) -> Response:
    await rpc.identity.Logout(identity_pb2.LogoutRequest(refresh_token=body.refresh_token), timeout=rpc.timeout)
    return Response(status_code=204)
