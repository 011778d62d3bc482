"""WebSocket connections outlive sessions. strawberry builds one Context per connection, so
the viewer resolved at connection_init would be trusted for the connection's whole life: an
account logged out, logged out everywhere or deactivated (`deactivateUser`) could keep
sending queries and mutations over a socket it opened before. Its subscriptions already end
with the session (the session topic, app/events/broker.py); here every new operation over
the socket checks the session again — one indexed read, as for every HTTP request — and an
ended one closes the connection the way a bad token at connection_init does (4403 for
graphql-transport-ws, connection_error then 1011 for the legacy graphql-ws), so the client
knows to log in again rather than retry."""

from __future__ import annotations

from typing import Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import SubscribeMessage
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage

from app.errors import DomainError
from app.graphql.context import Context


async def session_still_live(context: Any) -> bool:
    """False when the connection authenticated with a session that has ended since (or
    with a token that is no longer valid); an anonymous connection stays anonymous."""
    if not isinstance(context, Context):
        return True
    context.forget_viewer()
    try:
        await context.viewer()
    except DomainError:
        return False
    return True


class SessionCheckedTransportWS(BaseGraphQLTransportWSHandler[Context, None]):
    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and not await session_still_live(self.context):
            await self.websocket.close(code=4403, reason="Forbidden")
            return
        await super().handle_subscribe(message)


class SessionCheckedLegacyWS(BaseGraphQLWSHandler[Context, None]):
    async def handle_start(self, message: StartMessage) -> None:
        if self.connection_acknowledged and not await session_still_live(self.context):
            await self.send_message({"type": "connection_error"})
            await self.websocket.close(code=1011, reason="")
            return
        await super().handle_start(message)
