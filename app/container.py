"""The composition root: builds every service once from Settings."""

from __future__ import annotations

from dataclasses import dataclass

import app.models  # noqa: F401  (every table registered before the first query)
from app.accounts.service import AccountService
from app.accounts.staff_admin import StaffAdmin
from app.audit.service import AuditLog
from app.catalog.service import CatalogService
from app.db import Database
from app.events.broker import Broker, InProcessBroker
from app.events.redis_broker import RedisBroker
from app.notifications.preferences import PreferenceService, UnsubscribeLinks
from app.orders.checkout import CheckoutService
from app.orders.placement import OrderPlacement
from app.orders.service import OrderService
from app.pagination import CursorCodec
from app.payments.provider import PaymentProvider, TestPaymentProvider, provider_ledger_url
from app.payments.reconciler import Reconciler
from app.payments.refunds import Refunds
from app.redis_link import RedisLink
from app.returns.on_behalf import ReturnsOnBehalf
from app.returns.queue import ReturnsQueue
from app.returns.service import ReturnService
from app.security.lookups import CodeLookups
from app.security.passwords import Passwords
from app.security.ratelimit import Limiter
from app.security.tokens import AccessTokens
from app.settings import Settings
from app.shipments.service import ShipmentService
from app.support.search import SupportSearch
from app.support.service import SupportService
from app.tracking.service import TrackingLinkService


@dataclass
class Services:
    settings: Settings
    db: Database
    limiter: Limiter
    passwords: Passwords
    tokens: AccessTokens
    accounts: AccountService
    catalog: CatalogService
    orders: OrderService
    placement: OrderPlacement
    checkouts: CheckoutService
    payments: PaymentProvider
    refunds: Refunds
    reconciler: Reconciler
    lookups: CodeLookups
    events: Broker
    shipments: ShipmentService
    audit: AuditLog
    support: SupportService
    returns: ReturnService
    tracking: TrackingLinkService
    preferences: PreferenceService
    # the staff console's API (issue 16)
    support_search: SupportSearch
    staff_returns: ReturnsOnBehalf
    returns_queue: ReturnsQueue
    staff_admin: StaffAdmin
    redis: RedisLink | None = None
    closed: bool = False

    async def aclose(self) -> None:
        """Close every pool (on the event loop that used them). Idempotent."""
        if self.closed:
            return
        self.closed = True
        await self.events.aclose()
        await self.payments.aclose()
        await self.db.dispose()
        if self.redis is not None:
            await self.redis.aclose()


def build_services(
    settings: Settings,
    *,
    passwords: Passwords | None = None,
    payments: PaymentProvider | None = None,
) -> Services:
    """`payments`: another provider (tests use a failing double); by default the test
    provider with its own ledger."""
    db = Database(settings.database_url, pool_size=settings.db_pool_size)
    # One Redis link per process (pool + circuit breaker), shared by budgets and fan-out.
    redis = RedisLink(settings.redis_url) if settings.redis_url else None
    limiter = Limiter(settings.rate_limits, redis)
    passwords = passwords or Passwords()
    tokens = AccessTokens(
        settings.jwt_secret,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.access_token_ttl_seconds,
    )
    cursors = CursorCodec(settings.jwt_secret)
    # Several instances share live updates through Redis; one process needs no Redis.
    events: Broker = RedisBroker(redis) if redis is not None else InProcessBroker()
    audit = AuditLog(db, cursors, settings.max_page_size)
    lookups = CodeLookups(limiter)
    payments = payments or TestPaymentProvider(
        provider_ledger_url(settings.database_url),
        latency_seconds=settings.test_payment_latency_seconds,
    )
    refunds = Refunds(db, payments, events, timeout_seconds=settings.payment_timeout_seconds)
    orders = OrderService(db, refunds, lookups, cursors, settings, events)
    placement = OrderPlacement(db, payments, orders, settings)
    orders.placement = placement
    unsubscribe_links = UnsubscribeLinks.from_secret(settings.jwt_secret, settings.public_api_url)
    shipments = ShipmentService(
        db,
        lookups,
        cursors,
        events,
        max_page_size=settings.max_page_size,
        audit=audit,
        return_window_days=settings.return_window_days,
    )
    returns = ReturnService(db, refunds, lookups, audit, events, settings)
    return Services(
        settings=settings,
        db=db,
        limiter=limiter,
        passwords=passwords,
        tokens=tokens,
        accounts=AccountService(
            db, passwords, tokens, limiter, settings.refresh_token_ttl_seconds, events, audit
        ),
        catalog=CatalogService(db, cursors, settings.max_page_size),
        orders=orders,
        placement=placement,
        checkouts=CheckoutService(db, orders, placement, lookups, settings.checkout_ttl_seconds),
        payments=payments,
        refunds=refunds,
        reconciler=Reconciler(
            placement, refunds, older_than_seconds=settings.reconcile_after_seconds
        ),
        lookups=lookups,
        events=events,
        shipments=shipments,
        preferences=PreferenceService(db, unsubscribe_links),
        audit=audit,
        support=SupportService(db, limiter, lookups, audit),
        returns=returns,
        support_search=SupportSearch(db, limiter, lookups, audit),
        staff_returns=ReturnsOnBehalf(db, limiter, lookups, audit, returns),
        returns_queue=ReturnsQueue(db, audit, cursors, settings.max_page_size),
        staff_admin=StaffAdmin(db, passwords, audit, events, cursors, settings.max_page_size),
        tracking=TrackingLinkService(db, lookups, limiter, shipments),
        redis=redis,
    )
