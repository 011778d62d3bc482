"""Fulfilment: fulfillmentQueue, pickList, packOrder, shipOrder, addTrackingEvent.
Resolvers translate GraphQL input to primitives and call the service; they never commit.

WAREHOUSE and ADMIN may do everything here, SUPPORT may read the queue and pick lists.
Customers and other roles get FORBIDDEN, the same answer for a real and an unknown code."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import strawberry

from app.graphql.common import PageInfo
from app.graphql.context import Info
from app.graphql.errors import run_mutation, to_user_error
from app.shipments.inputs import EventInput, LineRequest
from app.shipments.models import ShipmentStatus as ShipmentStatusEnum
from app.shipments.service import ScanMismatch
from app.shipments.types import (
    AddTrackingEventPayload,
    FulfillmentLineInput,
    FulfillmentOrderConnection,
    FulfillmentOrderEdge,
    FulfillmentOrderType,
    ItemCountType,
    PackOrderPayload,
    ShipmentType,
    ShipOrderPayload,
)


def _lines(lines: list[FulfillmentLineInput] | None) -> list[LineRequest] | None:
    if lines is None:
        return None
    return [LineRequest(sku=line.sku, quantity=line.quantity) for line in lines]


@strawberry.type
class ShipmentsQuery:
    @strawberry.field(
        description=("Orders with items still to pick, oldest first (WAREHOUSE, SUPPORT, ADMIN).")
    )
    async def fulfillment_queue(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> FulfillmentOrderConnection:
        ctx = info.context
        page = await ctx.services.shipments.fulfillment_queue(await ctx.viewer(), first, after)
        return FulfillmentOrderConnection(
            edges=[
                FulfillmentOrderEdge(cursor=cursor, node=FulfillmentOrderType(row=order))
                for order, cursor in zip(page.orders, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )

    @strawberry.field(
        description=(
            "The pick list of an order: lines sorted by bin location (WAREHOUSE, SUPPORT, "
            "ADMIN). Rate-limited like every code lookup."
        )
    )
    async def pick_list(self, info: Info, code: str) -> FulfillmentOrderType | None:
        ctx = info.context
        order = await ctx.services.shipments.pick_list(await ctx.viewer(), code, ctx.client_ip)
        return FulfillmentOrderType(row=order)


@strawberry.type
class ShipmentsMutation:
    @strawberry.mutation(
        description=(
            "Confirm a parcel by scanning every item in it (one SKU per item). The scan must "
            "be exactly the items being packed: the given lines, or everything still to pick. "
            "Otherwise nothing is packed and `missing` / `unexpected` list the difference. "
            "WAREHOUSE, ADMIN."
        )
    )
    async def pack_order(
        self,
        info: Info,
        code: str,
        scanned_skus: list[str],
        lines: Annotated[
            list[FulfillmentLineInput] | None,
            strawberry.argument(description="Pack only these lines: a split shipment."),
        ] = None,
    ) -> PackOrderPayload:
        ctx = info.context

        async def pack() -> PackOrderPayload:
            try:
                result = await ctx.services.shipments.pack_order(
                    await ctx.viewer(), code, ctx.client_ip, scanned_skus, _lines(lines)
                )
            except ScanMismatch as mismatch:
                return PackOrderPayload(
                    missing=ItemCountType.of(mismatch.missing),
                    unexpected=ItemCountType.of(mismatch.unexpected),
                    user_errors=[to_user_error(mismatch)],
                )
            return PackOrderPayload(
                order=FulfillmentOrderType(row=result.order),
                packed=ItemCountType.of(result.packed),
            )

        return await run_mutation(pack, lambda errors: PackOrderPayload(user_errors=errors))

    @strawberry.mutation(
        description=(
            "Hand packed items to a carrier: creates a shipment (all packed items, or the "
            "given lines), moves the order to PARTIALLY_SHIPPED or SHIPPED and emails the "
            "customer. WAREHOUSE, ADMIN."
        )
    )
    async def ship_order(
        self,
        info: Info,
        code: str,
        carrier: str,
        tracking_number: str,
        lines: list[FulfillmentLineInput] | None = None,
        estimated_delivery: date | None = None,
    ) -> ShipOrderPayload:
        ctx = info.context

        async def ship() -> ShipOrderPayload:
            result = await ctx.services.shipments.ship_order(
                await ctx.viewer(),
                code,
                ctx.client_ip,
                carrier,
                tracking_number,
                _lines(lines),
                estimated_delivery,
            )
            return ShipOrderPayload(
                order=FulfillmentOrderType(row=result.order),
                shipment=ShipmentType(row=result.shipment),
            )

        return await run_mutation(ship, lambda errors: ShipOrderPayload(user_errors=errors))

    @strawberry.mutation(
        description=(
            "Record a tracking event by hand, with the rules of the carrier webhook: "
            "idempotent per eventId, a delivered shipment stays delivered, an older event "
            "does not move the status back. WAREHOUSE, ADMIN."
        )
    )
    async def add_tracking_event(
        self,
        info: Info,
        code: str,
        carrier: str,
        tracking_number: str,
        status: ShipmentStatusEnum,
        occurred_at: datetime | None = None,
        location: str = "",
        description: str = "",
        estimated_delivery: date | None = None,
        event_id: Annotated[
            str | None,
            strawberry.argument(description="Makes a retry safe: recorded once per carrier."),
        ] = None,
    ) -> AddTrackingEventPayload:
        ctx = info.context

        async def add() -> AddTrackingEventPayload:
            result = await ctx.services.shipments.add_tracking_event(
                await ctx.viewer(),
                code,
                ctx.client_ip,
                carrier,
                tracking_number,
                EventInput(
                    status=status.value,
                    occurred_at=occurred_at,
                    location=location,
                    description=description,
                    estimated_delivery=estimated_delivery,
                    event_id=event_id,
                ),
            )
            return AddTrackingEventPayload(
                shipment=ShipmentType(row=result.shipment), recorded=result.recorded
            )

        return await run_mutation(add, lambda errors: AddTrackingEventPayload(user_errors=errors))
