"""Orders: placeOrder, order(code), myOrders, cancelOrder, reorder. Resolvers translate
GraphQL input to primitives and call the service; they never commit."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Annotated

import strawberry

from app.errors import BadUserInput
from app.events.broker import order_topic, session_topic
from app.graphql.common import Money, PageInfo, fields_at
from app.graphql.context import Info
from app.graphql.errors import run_mutation
from app.orders import inputs
from app.orders.models import OrderLine
from app.orders.service import CartDraft as CartDraftView
from app.orders.service import OrderFilter, OrderView
from app.orders.types import (
    ORDER_SUMMARY_FIELDS,
    AddressInput,
    CancelOrderPayload,
    CartDraft,
    CartLine,
    CheckoutPayload,
    CheckoutType,
    OrderConnection,
    OrderEdge,
    OrderFilterInput,
    OrderLineInput,
    OrderType,
    OrderUpdate,
    OrderUpdateType,
    PlaceOrderPayload,
)
from app.shipments.models import Shipment
from app.shipments.types import SHIPMENT_SUMMARY_FIELDS


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def _lines(lines: list[OrderLineInput]) -> list[inputs.LineInput]:
    return [inputs.LineInput(sku=line.sku, quantity=line.quantity) for line in lines]


def _address(address: AddressInput) -> inputs.AddressInput:
    return inputs.AddressInput(
        name=address.name,
        line1=address.line1,
        line2=address.line2,
        city=address.city,
        postal_code=address.postal_code,
        country=address.country,
    )


def order_type(view: OrderView) -> OrderType:
    return OrderType(row=view.order, preloaded_lines=view.lines)


def _page_order(
    view: OrderView,
    lines: dict[int, list[OrderLine]] | None,
    shipments: dict[int, list[Shipment]] | None,
) -> OrderType:
    """An order of a page, with the children fetched for the whole page (None: not asked
    for, its loader fetches them if a field needs them)."""
    key = view.order.id
    assert key is not None
    return OrderType(
        row=view.order,
        preloaded_lines=view.lines if lines is None else lines.get(key, []),
        preloaded_shipments=None if shipments is None else shipments.get(key, []),
    )


def _cart(draft: CartDraftView) -> CartDraft:
    def money(amount: int) -> Money:
        return Money(amount=amount, currency=draft.currency)

    return CartDraft(
        lines=[
            CartLine(
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price=money(line.unit_price_minor),
                available=line.available,
                in_stock=line.in_stock,
            )
            for line in draft.lines
        ],
        subtotal=money(draft.totals.subtotal_minor),
        shipping=money(draft.totals.shipping_minor),
        tax=money(draft.totals.tax_minor),
        total=money(draft.totals.total_minor),
        unavailable_skus=draft.unavailable_skus,
    )


@strawberry.type
class OrdersQuery:
    @strawberry.field(
        description=(
            "Your order by its code. Another customer's code answers exactly like an unknown "
            "one (ORDER_NOT_FOUND). Every call is rate-limited."
        )
    )
    async def order(self, info: Info, code: str) -> OrderType | None:
        ctx = info.context
        viewer = await ctx.viewer()
        return OrderType(row=await ctx.services.orders.get_order(viewer, code, ctx.client_ip))

    @strawberry.field(description="Your orders, newest first.")
    async def my_orders(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: OrderFilterInput | None = None,
    ) -> OrderConnection:
        filt = OrderFilter()
        if filter is not None:
            filt = OrderFilter(
                statuses=[s.value for s in filter.status or []],
                placed_from=_as_utc(filter.placed_from),
                placed_to=_as_utc(filter.placed_to),
                text=filter.text,
            )
        ctx = info.context
        viewer = await ctx.viewer()
        wanted = fields_at(info, ("myOrders", "edges", "node"))
        page = await ctx.services.orders.list_orders(
            viewer, first, after, filt, summaries=wanted <= ORDER_SUMMARY_FIELDS
        )
        # The children the query asks for, fetched here for the whole page (one statement
        # each, as their loaders would): the orders' fields then answer without a loader
        # round each (docs/architecture.md §2).
        ids = [order_id for view in page.orders if (order_id := view.order.id) is not None]
        lines = shipments = None
        if ids and "lines" in wanted:
            lines = await ctx.services.orders.lines_for_orders(ids)
        if ids and "shipments" in wanted:
            parcel_fields = fields_at(info, ("myOrders", "edges", "node", "shipments"))
            shipments = await ctx.services.shipments.shipments_for_orders(
                ids, summaries=parcel_fields <= SHIPMENT_SUMMARY_FIELDS
            )
        return OrderConnection(
            edges=[
                OrderEdge(cursor=cursor, node=_page_order(view, lines, shipments))
                for view, cursor in zip(page.orders, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )

    @strawberry.field(
        description="Your open checkout by its code (rate-limited like every code lookup)."
    )
    async def checkout(self, info: Info, code: str) -> CheckoutType | None:
        ctx = info.context
        viewer = await ctx.viewer()
        return CheckoutType(view=await ctx.services.checkouts.get(viewer, code, ctx.client_ip))

    @strawberry.field(
        description="The lines of one of your orders as a cart draft at today's prices."
    )
    async def reorder(self, info: Info, code: str) -> CartDraft:
        ctx = info.context
        viewer = await ctx.viewer()
        return _cart(await ctx.services.orders.reorder(viewer, code, ctx.client_ip))


@strawberry.type
class OrdersMutation:
    @strawberry.mutation(
        description=(
            "Buy: reserve stock, charge, create the order, queue the confirmation email. "
            "Retrying with the same idempotencyKey returns the same order and charges once."
        )
    )
    async def place_order(
        self,
        info: Info,
        payment_token: str,
        lines: list[OrderLineInput] | None = None,
        shipping_address: AddressInput | None = None,
        idempotency_key: str | None = None,
        checkout_code: Annotated[
            str | None,
            strawberry.argument(
                description=(
                    "Place a checkout from startCheckout: the order gets exactly this code. "
                    "Without it, pass lines, shippingAddress and idempotencyKey."
                )
            ),
        ] = None,
    ) -> PlaceOrderPayload:
        ctx = info.context

        async def place() -> PlaceOrderPayload:
            viewer = await ctx.viewer()
            if checkout_code is not None:
                view = await ctx.services.checkouts.place(
                    viewer, checkout_code, ctx.client_ip, payment_token
                )
                return PlaceOrderPayload(order=order_type(view))
            if lines is None or shipping_address is None or idempotency_key is None:
                raise BadUserInput(
                    "Pass checkoutCode, or lines, shippingAddress and idempotencyKey.",
                    field="checkoutCode",
                )
            view = await ctx.services.orders.place_order(
                viewer,
                _lines(lines),
                _address(shipping_address),
                payment_token,
                idempotency_key,
            )
            return PlaceOrderPayload(order=order_type(view))

        return await run_mutation(place, lambda errors: PlaceOrderPayload(user_errors=errors))

    @strawberry.mutation(
        description=(
            "Price a cart and reserve its order code, shown on the summary before purchase. "
            "Stock is checked, not taken."
        )
    )
    async def start_checkout(
        self, info: Info, lines: list[OrderLineInput], shipping_address: AddressInput
    ) -> CheckoutPayload:
        ctx = info.context

        async def start() -> CheckoutPayload:
            view = await ctx.services.checkouts.start(
                await ctx.viewer(), _lines(lines), _address(shipping_address)
            )
            return CheckoutPayload(checkout=CheckoutType(view=view))

        return await run_mutation(start, lambda errors: CheckoutPayload(user_errors=errors))

    @strawberry.mutation(description="Change and reprice a checkout; the code stays the same.")
    async def update_checkout(
        self,
        info: Info,
        code: str,
        lines: list[OrderLineInput] | None = None,
        shipping_address: AddressInput | None = None,
    ) -> CheckoutPayload:
        ctx = info.context

        async def update() -> CheckoutPayload:
            view = await ctx.services.checkouts.update(
                await ctx.viewer(),
                code,
                ctx.client_ip,
                _lines(lines) if lines is not None else None,
                _address(shipping_address) if shipping_address is not None else None,
            )
            return CheckoutPayload(checkout=CheckoutType(view=view))

        return await run_mutation(update, lambda errors: CheckoutPayload(user_errors=errors))

    @strawberry.mutation(description="Cancel your order before it ships: full refund.")
    async def cancel_order(self, info: Info, code: str) -> CancelOrderPayload:
        ctx = info.context

        async def cancel() -> CancelOrderPayload:
            view = await ctx.services.orders.cancel_order(await ctx.viewer(), code, ctx.client_ip)
            return CancelOrderPayload(order=order_type(view))

        return await run_mutation(cancel, lambda errors: CancelOrderPayload(user_errors=errors))


@strawberry.type
class OrdersSubscription:
    @strawberry.subscription(
        description=(
            "Live changes to one of your orders (graphql-transport-ws; authenticate in "
            'connection_init with {"Authorization": "Bearer …"}). Starting it is a '
            "rate-limited code lookup with exactly the answers of order(code); the stream "
            "ends when your session does."
        )
    )
    async def order_updates(self, info: Info, code: str) -> AsyncGenerator[OrderUpdate, None]:
        ctx = info.context
        orders = ctx.services.orders
        viewer = await ctx.viewer()
        order = await orders.get_order(viewer, code, ctx.client_ip)
        assert viewer is not None and order.id is not None
        topics = [order_topic(order.id), session_topic(viewer.session_id)]
        # The one place where a status change becomes STATUS_CHANGED, whatever published
        # the event (a carrier's delivery, a return step, a refund): the status this
        # subscriber last saw is compared with the order as re-read.
        seen_status = order.status
        async with ctx.services.events.subscribe(topics) as events:
            async for topic, event in events:
                if topic.startswith("session:"):
                    return  # logged out: the stream closes with the session
                fresh = await orders.reload_owned(viewer, order.id)
                if fresh is None:
                    return
                kind = str(event.get("type", "CHANGED"))
                update_type = (
                    OrderUpdateType[kind]
                    if kind in OrderUpdateType.__members__
                    else OrderUpdateType.CHANGED
                )
                changed = fresh.status != seen_status
                seen_status = fresh.status
                now = datetime.now(UTC)
                yield OrderUpdate(type=update_type, occurred_at=now, order=OrderType(row=fresh))
                if changed and update_type is not OrderUpdateType.STATUS_CHANGED:
                    yield OrderUpdate(
                        type=OrderUpdateType.STATUS_CHANGED,
                        occurred_at=now,
                        order=OrderType(row=fresh),
                    )
