"""createTrackingLink, revokeTrackingLink (owner) and trackingLink (public)."""

from __future__ import annotations

import strawberry

from app.graphql.context import Info
from app.graphql.errors import run_mutation
from app.security import codes
from app.shipments.models import ShipmentStatus
from app.tracking.types import (
    CreateTrackingLinkPayload,
    PublicShipment,
    PublicTrackingEvent,
    RevokeTrackingLinkPayload,
    TrackingLinkMinted,
    TrackingLinkView,
)


@strawberry.type
class TrackingQuery:
    @strawberry.field(
        description=(
            "Public: what a shared tracking link shows. Unknown, expired and revoked links "
            "give the same answer. Rate-limited per link and per client IP."
        )
    )
    async def tracking_link(self, info: Info, token: str) -> TrackingLinkView | None:
        ctx = info.context
        view = await ctx.services.tracking.view(token, ctx.client_ip)
        return TrackingLinkView(
            estimated_delivery=view.estimated_delivery,
            shipments=[
                PublicShipment(
                    carrier=s.carrier,
                    status=ShipmentStatus(s.status),
                    estimated_delivery=s.estimated_delivery,
                    events=[PublicTrackingEvent(row=e) for e in view.events.get(s.id or 0, [])],
                )
                for s in view.shipments
            ],
        )


@strawberry.type
class TrackingMutation:
    @strawberry.mutation(
        description="Mint a revocable, expiring link to share your order's tracking."
    )
    async def create_tracking_link(
        self, info: Info, code: str, expires_in_hours: int = 72
    ) -> CreateTrackingLinkPayload:
        ctx = info.context

        async def create() -> CreateTrackingLinkPayload:
            minted = await ctx.services.tracking.create(
                await ctx.viewer(), code, ctx.client_ip, expires_in_hours
            )
            return CreateTrackingLinkPayload(
                link=TrackingLinkMinted(
                    token=codes.display(minted.token), expires_at=minted.expires_at
                )
            )

        return await run_mutation(
            create, lambda errors: CreateTrackingLinkPayload(user_errors=errors)
        )

    @strawberry.mutation(description="Stop a tracking link you shared from working, at once.")
    async def revoke_tracking_link(self, info: Info, token: str) -> RevokeTrackingLinkPayload:
        ctx = info.context

        async def revoke() -> RevokeTrackingLinkPayload:
            await ctx.services.tracking.revoke(await ctx.viewer(), token, ctx.client_ip)
            return RevokeTrackingLinkPayload(ok=True)

        return await run_mutation(
            revoke, lambda errors: RevokeTrackingLinkPayload(user_errors=errors)
        )
