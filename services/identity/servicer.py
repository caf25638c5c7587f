"""IdentityService over gRPC: protobuf <-> domain, nothing else. Errors are mapped by the shared
interceptor (services.common.grpc_server)."""

from __future__ import annotations

import grpc
from cashback.identity.v1 import identity_pb2, identity_pb2_grpc

from services.common.protoconv import timestamp
from services.identity.config import Settings
from services.identity.domain import Channel, SpendingGoal, UserStatus
from services.identity.models import DevMessage, Notification, User
from services.identity.service import Identity, SignIn, Tokens

_GOAL_TO_PB = {g.value: identity_pb2.SpendingGoal.Value(f"SPENDING_GOAL_{g.value}") for g in SpendingGoal}
_GOAL_FROM_PB = {v: SpendingGoal(k) for k, v in _GOAL_TO_PB.items()}
_STATUS_TO_PB = {s.value: identity_pb2.UserStatus.Value(f"USER_STATUS_{s.value}") for s in UserStatus}
_CHANNEL_TO_PB = {Channel.SMS.value: identity_pb2.CHANNEL_SMS, Channel.EMAIL.value: identity_pb2.CHANNEL_EMAIL}


def user_to_pb(user: User) -> identity_pb2.User:
    return identity_pb2.User(
        user_id=user.id, phone=user.phone, email=user.email or "", operator=user.operator,
        is_operator_subscriber=user.is_operator_subscriber, referral_code=user.referral_code,
        spending_goal=_GOAL_TO_PB[user.spending_goal], status=_STATUS_TO_PB[user.status],
        create_time=timestamp(user.created_at),
    )


def tokens_to_pb(t: Tokens) -> identity_pb2.Tokens:
    return identity_pb2.Tokens(access_token=t.access_token, refresh_token=t.refresh_token,
                               expires_in_seconds=t.expires_in_seconds)


def notification_to_pb(row: Notification) -> identity_pb2.Notification:
    return identity_pb2.Notification(
        notification_id=row.id, template=row.template, channel=_CHANNEL_TO_PB[row.channel], text=row.text,
        create_time=timestamp(row.created_at), deliver_time=timestamp(row.delivered_at),
    )


def dev_message_to_pb(row: DevMessage) -> identity_pb2.DevMessage:
    return identity_pb2.DevMessage(channel=_CHANNEL_TO_PB[row.channel], to=row.recipient, text=row.text,
                                   create_time=timestamp(row.created_at))


def _sign_in(result: SignIn) -> dict[str, object]:
    return {"tokens": tokens_to_pb(result.tokens), "user": user_to_pb(result.user), "created": result.created}


class IdentityServicer(identity_pb2_grpc.IdentityServiceServicer):
    def __init__(self, identity: Identity, settings: Settings) -> None:
        self._identity = identity
        self._settings = settings

    async def StartPhoneChallenge(self, request: identity_pb2.StartPhoneChallengeRequest,
                                  context: grpc.aio.ServicerContext) -> identity_pb2.StartPhoneChallengeResponse:
        started = await self._identity.start_phone_challenge(request.phone, request.client_address)
        return identity_pb2.StartPhoneChallengeResponse(challenge_id=started.challenge_id,
                                                        expires_in_seconds=started.expires_in_seconds,
                                                        resend_in_seconds=started.resend_in_seconds)

    async def VerifyPhoneChallenge(self, request: identity_pb2.VerifyPhoneChallengeRequest,
                                   context: grpc.aio.ServicerContext) -> identity_pb2.VerifyPhoneChallengeResponse:
        result = await self._identity.verify_phone_challenge(request.challenge_id, request.code,
                                                             request.referral_code, request.client_address)
        return identity_pb2.VerifyPhoneChallengeResponse(**_sign_in(result))

    async def SignInWithOperator(self, request: identity_pb2.SignInWithOperatorRequest,
                                 context: grpc.aio.ServicerContext) -> identity_pb2.SignInWithOperatorResponse:
        result = await self._identity.sign_in_with_operator(request.assertion)
        return identity_pb2.SignInWithOperatorResponse(**_sign_in(result))

    async def RefreshTokens(self, request: identity_pb2.RefreshTokensRequest,
                            context: grpc.aio.ServicerContext) -> identity_pb2.RefreshTokensResponse:
        issued = await self._identity.refresh_tokens(request.refresh_token)
        return identity_pb2.RefreshTokensResponse(tokens=tokens_to_pb(issued))

    async def Logout(self, request: identity_pb2.LogoutRequest,
                     context: grpc.aio.ServicerContext) -> identity_pb2.LogoutResponse:
        await self._identity.logout(request.refresh_token)
        return identity_pb2.LogoutResponse()

    async def ListSigningKeys(self, request: identity_pb2.ListSigningKeysRequest,
                              context: grpc.aio.ServicerContext) -> identity_pb2.ListSigningKeysResponse:
        keys = await self._identity.signing_keys()
        return identity_pb2.ListSigningKeysResponse(
            keys=[identity_pb2.SigningKey(key_id=k.kid, algorithm=k.algorithm, public_key_pem=k.public_key_pem)
                  for k in keys],
            issuer=self._settings.token_issuer, audience=self._settings.token_audience)

    async def GetUser(self, request: identity_pb2.GetUserRequest,
                      context: grpc.aio.ServicerContext) -> identity_pb2.GetUserResponse:
        return identity_pb2.GetUserResponse(user=user_to_pb(await self._identity.get_user(request.user_id)))

    async def GetUserByPhone(self, request: identity_pb2.GetUserByPhoneRequest,
                             context: grpc.aio.ServicerContext) -> identity_pb2.GetUserByPhoneResponse:
        user = await self._identity.get_user_by_phone(request.phone)
        return identity_pb2.GetUserByPhoneResponse(user=user_to_pb(user))

    async def UpdateSpendingGoal(self, request: identity_pb2.UpdateSpendingGoalRequest,
                                 context: grpc.aio.ServicerContext) -> identity_pb2.UpdateSpendingGoalResponse:
        user = await self._identity.update_spending_goal(request.user_id, _GOAL_FROM_PB.get(request.spending_goal))
        return identity_pb2.UpdateSpendingGoalResponse(user=user_to_pb(user))

    async def DisableUser(self, request: identity_pb2.DisableUserRequest,
                          context: grpc.aio.ServicerContext) -> identity_pb2.DisableUserResponse:
        return identity_pb2.DisableUserResponse(user=user_to_pb(await self._identity.disable_user(request.user_id)))

    async def EnableUser(self, request: identity_pb2.EnableUserRequest,
                         context: grpc.aio.ServicerContext) -> identity_pb2.EnableUserResponse:
        return identity_pb2.EnableUserResponse(user=user_to_pb(await self._identity.enable_user(request.user_id)))

    async def StartEmailChallenge(self, request: identity_pb2.StartEmailChallengeRequest,
                                  context: grpc.aio.ServicerContext) -> identity_pb2.StartEmailChallengeResponse:
        started = await self._identity.start_email_challenge(request.user_id, request.email)
        return identity_pb2.StartEmailChallengeResponse(challenge_id=started.challenge_id,
                                                        expires_in_seconds=started.expires_in_seconds,
                                                        resend_in_seconds=started.resend_in_seconds)

    async def VerifyEmailChallenge(self, request: identity_pb2.VerifyEmailChallengeRequest,
                                   context: grpc.aio.ServicerContext) -> identity_pb2.VerifyEmailChallengeResponse:
        user = await self._identity.verify_email_challenge(request.user_id, request.challenge_id, request.code)
        return identity_pb2.VerifyEmailChallengeResponse(user=user_to_pb(user))

    async def GetReferrer(self, request: identity_pb2.GetReferrerRequest,
                          context: grpc.aio.ServicerContext) -> identity_pb2.GetReferrerResponse:
        return identity_pb2.GetReferrerResponse(referrer_user_id=await self._identity.get_referrer(request.user_id))

    async def SendNotification(self, request: identity_pb2.SendNotificationRequest,
                               context: grpc.aio.ServicerContext) -> identity_pb2.SendNotificationResponse:
        notification_id, already = await self._identity.send_notification(
            request.idempotency_key, request.user_id, request.template, dict(request.params))
        return identity_pb2.SendNotificationResponse(notification_id=notification_id, already_existed=already)

    async def ListNotifications(self, request: identity_pb2.ListNotificationsRequest,
                                context: grpc.aio.ServicerContext) -> identity_pb2.ListNotificationsResponse:
        rows, token = await self._identity.list_notifications(request.user_id, request.page_size, request.page_token)
        return identity_pb2.ListNotificationsResponse(notifications=[notification_to_pb(r) for r in rows],
                                                      next_page_token=token)

    async def ListDevOutbox(self, request: identity_pb2.ListDevOutboxRequest,
                            context: grpc.aio.ServicerContext) -> identity_pb2.ListDevOutboxResponse:
        rows = await self._identity.dev_outbox(request.to)
        return identity_pb2.ListDevOutboxResponse(messages=[dev_message_to_pb(r) for r in rows])
