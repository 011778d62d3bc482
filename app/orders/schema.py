"""Orders: placeOrder, order(code), myOrders, cancelOrder, reorder. Resolvers translate
GraphQL input to primitives and call the service; they never commit."""

from __future__ import annotations

from datetime import UTC, datetime

import strawberry

from app.graphql.common import Money, PageInfo
from app.graphql.context import Info
from app.graphql.errors import run_mutation
from app.orders import inputs
from app.orders.service import CartDraft as CartDraftView
from app.orders.service import OrderFilter, OrderView
from app.orders.types import (
    AddressInput,
    CancelOrderPayload,
    CartDraft,
    CartLine,
    OrderConnection,
    OrderEdge,
    OrderFilterInput,
    OrderLineInput,
    OrderType,
    PlaceOrderPayload,
)


def _as_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def order_type(view: OrderView) -> OrderType:
    return OrderType(row=view.order, preloaded_lines=view.lines)


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
    def order(self, info: Info, code: str) -> OrderType | None:
        ctx = info.context
        return OrderType(row=ctx.services.orders.get_order(ctx.viewer, code, ctx.client_ip))

    @strawberry.field(description="Your orders, newest first.")
    def my_orders(
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
        page = info.context.services.orders.list_orders(info.context.viewer, first, after, filt)
        return OrderConnection(
            edges=[
                OrderEdge(cursor=cursor, node=order_type(view))
                for view, cursor in zip(page.orders, page.cursors, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )

    @strawberry.field(
        description="The lines of one of your orders as a cart draft at today's prices."
    )
    def reorder(self, info: Info, code: str) -> CartDraft:
        ctx = info.context
        return _cart(ctx.services.orders.reorder(ctx.viewer, code, ctx.client_ip))


@strawberry.type
class OrdersMutation:
    @strawberry.mutation(
        description=(
            "Buy: reserve stock, charge, create the order, queue the confirmation email. "
            "Retrying with the same idempotencyKey returns the same order and charges once."
        )
    )
    def place_order(
        self,
        info: Info,
        lines: list[OrderLineInput],
        shipping_address: AddressInput,
        payment_token: str,
        idempotency_key: str,
    ) -> PlaceOrderPayload:
        ctx = info.context
        address = inputs.AddressInput(
            name=shipping_address.name,
            line1=shipping_address.line1,
            line2=shipping_address.line2,
            city=shipping_address.city,
            postal_code=shipping_address.postal_code,
            country=shipping_address.country,
        )
        line_inputs = [inputs.LineInput(sku=line.sku, quantity=line.quantity) for line in lines]
        return run_mutation(
            lambda: PlaceOrderPayload(
                order=order_type(
                    ctx.services.orders.place_order(
                        ctx.viewer, line_inputs, address, payment_token, idempotency_key
                    )
                )
            ),
            lambda errors: PlaceOrderPayload(user_errors=errors),
        )

    @strawberry.mutation(description="Cancel your order before it ships: full refund.")
    def cancel_order(self, info: Info, code: str) -> CancelOrderPayload:
        ctx = info.context
        return run_mutation(
            lambda: CancelOrderPayload(
                order=order_type(ctx.services.orders.cancel_order(ctx.viewer, code, ctx.client_ip))
            ),
            lambda errors: CancelOrderPayload(user_errors=errors),
        )
