"""The per-request GraphQL context: services, the caller (resolved lazily), client IP,
request id and the per-request DataLoaders."""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.types import Info as StrawberryInfo

from app.access_log import note_user
from app.errors import DomainError, Unauthenticated
from app.security.policy import Viewer

if TYPE_CHECKING:
    from app.container import Services


def client_ip_from(peer: str | None, forwarded_for: str | None, trusted: tuple[str, ...]) -> str:
    """The socket's address, unless the peer is a trusted proxy: then the right-most
    address in X-Forwarded-For that is not itself a trusted proxy. A client cannot buy a
    fresh budget by sending its own X-Forwarded-For."""
    peer = peer or "unknown"
    if not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop[:64]
    return peer


def _is_trusted(address: str, trusted: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for entry in trusted:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


@dataclass
class Context:
    services: Services
    client_ip: str
    request_id: str
    authorization: str | None
    request: Any = None
    response: Any = None
    connection_params: dict[str, Any] | None = None  # graphql-transport-ws connection_init
    _viewer: Viewer | None = None
    _viewer_error: DomainError | None = None
    _viewer_resolved: bool = False
    _viewer_lock: asyncio.Lock | None = None
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)

    async def viewer(self) -> Viewer | None:
        """None for anonymous; a bad, expired or logged-out token is UNAUTHENTICATED.
        Resolved once per request (the session check is a database read), however many
        resolvers ask, concurrently or not."""
        if not self._viewer_resolved:
            if self._viewer_lock is None:
                self._viewer_lock = asyncio.Lock()
            async with self._viewer_lock:
                if not self._viewer_resolved:
                    await self._resolve_viewer()
        if self._viewer_error is not None:
            error = self._viewer_error
            raise type(error)(error.message)
        return self._viewer

    def forget_viewer(self) -> None:
        """The next viewer() checks the session again: a WebSocket connection's context
        lives as long as the connection, its session may end meanwhile (ws_sessions.py)."""
        self._viewer = None
        self._viewer_error = None
        self._viewer_resolved = False

    async def _resolve_viewer(self) -> None:
        try:
            token = bearer_token(self.authorization or self._init_authorization())
            if token is not None:
                self._viewer = await self.services.accounts.authenticate(token)
                # for the access log line of this request or WebSocket connection
                note_user(getattr(self.request, "scope", None), self._viewer.public_id)
        except DomainError as error:
            self._viewer_error = error
        self._viewer_resolved = True

    def _init_authorization(self) -> str | None:
        """WebSocket clients authenticate in connection_init: {"Authorization": "Bearer …"}."""
        params = self.connection_params or {}
        value = params.get("Authorization") or params.get("authorization")
        return value if isinstance(value, str) else None


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Send the access token as `Authorization: Bearer <token>`.")
    return token.strip()


Info = StrawberryInfo[Context, None]
_ = strawberry  # strawberry is this layer's dependency
