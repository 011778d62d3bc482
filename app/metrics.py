"""Prometheus metrics (DESIGN §7): counters and a histogram on the hot path, nothing else.

Labels are bounded: operations are root field names of the schema (anything else is
`other`, and `invalid` when the request names no operation that could run), outcomes are
`ok`, an error code of one enum or one of the request-error outcomes below, buckets are the
limiter's bucket names.
Codes, emails and ids never become label values. The outbox gauges are read from the
database when /metrics is scraped, never per request.
"""

from __future__ import annotations

import contextvars
import hmac
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

# Outcomes of requests refused before execution (answered 4xx in
# application/graphql-response+json): never `ok`.
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"  # the document does not parse (or is too long)
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"  # it does not validate against the schema
BAD_REQUEST = "BAD_REQUEST"  # not a GraphQL request we take: no query, wrong parameter
# types, not JSON, wrong method/Content-Type/Accept, too large, a batch, a subscription

REQUESTS = Counter(
    "orders_api_graphql_requests",
    "GraphQL requests by root field and outcome: ok, the first error code, or why the "
    "request was refused before execution (GRAPHQL_PARSE_FAILED, GRAPHQL_VALIDATION_FAILED, "
    "BAD_REQUEST)",
    ["operation", "outcome"],
)
LATENCY = Histogram(
    "orders_api_graphql_duration_seconds",
    "Time to answer a GraphQL operation, by root field",
    ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0),
)
LOOKUPS = Counter(
    "orders_api_code_lookups",
    "Order/RMA/tracking code lookups by outcome (found, not_found, invalid, rate_limited)",
    ["outcome"],
)
_FOUND = LOOKUPS.labels(outcome="found")

# The children of REQUESTS and LATENCY per (root field, outcome), looked up once: `labels()`
# takes a lock and builds its key on every call (3.6 µs of the 4.8 a request spent on these
# metrics). Bounded as the labels are: root fields of the schema, "invalid", error codes.
_answered: dict[tuple[str, str], tuple[Any, Any]] = {}


def request_answered(operation: str, outcome: str, seconds: float) -> None:
    """One GraphQL operation answered (`outcome`: ok or the first error code) in `seconds`."""
    children = _answered.get((operation, outcome))
    if children is None:
        children = _answered[(operation, outcome)] = (
            REQUESTS.labels(operation=operation, outcome=outcome),
            LATENCY.labels(operation=operation),
        )
    children[0].inc()
    children[1].observe(seconds)


RATE_LIMITED = Counter(
    "orders_api_rate_limit_rejections",
    "Requests refused by a rate limit, by bucket",
    ["bucket"],
)
WEBHOOK_EVENTS = Counter(
    "orders_api_webhook_events",
    "Carrier webhook deliveries by HTTP status answered",
    ["status"],
)
PASSWORD_CHECKS = Counter(
    "orders_api_password_checks",
    "Passwords verified against an argon2 hash (login attempts that got past the back-off)",
)
REDIS_REFUSED = Counter(
    "orders_api_redis_fail_fast",
    "Redis calls refused at once because the circuit breaker was open",
)
REDIS_BREAKER_OPEN = Gauge(
    "orders_api_redis_breaker_open",
    "1 while this instance considers Redis down and fails its calls fast",
)
RECONCILED = Counter(
    "orders_api_reconciled",
    "Payments the reconciler finished after an interrupted request, by what it did",
    ["action"],
)

# Carriers the app knows by name; any other carrier (staff type the name at shipping) is
# counted as `other`, so a label never takes free input.
KNOWN_CARRIERS = frozenset({"DHL", "DPD", "FEDEX", "GLS", "HERMES", "UPS", "USPS"})
DELIVERIES = Counter(
    "orders_api_deliveries",
    "Parcels delivered, by carrier (a known carrier or `other`) and outcome: on_time (on or "
    "before the date promised at checkout) or late",
    ["carrier", "outcome"],
)
for _carrier in (*sorted(KNOWN_CARRIERS), "other"):
    for _outcome in ("on_time", "late"):
        DELIVERIES.labels(carrier=_carrier, outcome=_outcome)


def carrier_label(carrier: str) -> str:
    """The label for a carrier's name: itself if the app knows it, else `other`."""
    name = carrier.strip().upper()
    return name if name in KNOWN_CARRIERS else "other"


def delivery_counted(carrier: str, *, on_time: bool) -> None:
    """A parcel was delivered (counted once, after the change was committed)."""
    DELIVERIES.labels(
        carrier=carrier_label(carrier), outcome="on_time" if on_time else "late"
    ).inc()


# -- code lookups: `found` is known only once the operation ended without a failure -------
class LookupTally:
    """Around one GraphQL operation (`with LookupTally():`): code lookups that began in it
    and did not fail are counted `found` when it ends (services report failures, never
    successes). A class rather than a generator context manager: it is entered per request."""

    __slots__ = ("_token", "begun", "failed")

    def __init__(self) -> None:
        self.begun = 0
        self.failed = 0

    def __enter__(self) -> None:
        self._token = _tally.set(self)

    def __exit__(self, *_: object) -> None:
        try:
            _tally.reset(self._token)
        except ValueError:  # resumed in another context (a subscription's stream)
            _tally.set(None)
        found = self.begun - self.failed
        if found > 0:
            _FOUND.inc(found)


_tally: contextvars.ContextVar[LookupTally | None] = contextvars.ContextVar(
    "lookup_tally", default=None
)


def lookup_begun() -> None:
    """A well-formed code passed the limiter and is being looked up."""
    tally = _tally.get()
    if tally is not None:
        tally.begun += 1


def lookup_failed(outcome: str) -> None:
    """`not_found` (unknown or not yours) or `invalid` (malformed code)."""
    LOOKUPS.labels(outcome=outcome).inc()
    tally = _tally.get()
    if tally is not None and outcome == "not_found":
        tally.failed += 1


def request_refused(outcome: str = BAD_REQUEST) -> None:
    """A /graphql request refused before any operation was picked (operation `invalid`)."""
    REQUESTS.labels(operation="invalid", outcome=outcome).inc()


def lookup_rate_limited(*, after_read: bool = False) -> None:
    """Refused by a budget; `after_read`: a lookup that began (and so is not `found`)."""
    LOOKUPS.labels(outcome="rate_limited").inc()
    tally = _tally.get()
    if after_read and tally is not None:
        tally.failed += 1


def rate_limit_rejected(bucket: str) -> None:
    RATE_LIMITED.labels(bucket=bucket).inc()


def password_checked() -> None:
    PASSWORD_CHECKS.inc()


def redis_refused() -> None:
    REDIS_REFUSED.inc()


def redis_breaker(*, open_: bool) -> None:
    REDIS_BREAKER_OPEN.set(1 if open_ else 0)


def reconciled(action: str) -> None:
    """`confirmed`, `released` (reservations) or `refunded` (pending refunds)."""
    RECONCILED.labels(action=action).inc()


# -- the endpoint -----------------------------------------------------------------------
class OutboxCollector(Collector):
    """Outbox depth and the age of its oldest email, as read for this scrape."""

    def __init__(self, depth: int, age: float | None) -> None:
        self.depth, self.age = depth, age

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth, age = self.depth, self.age
        yield GaugeMetricFamily(
            "orders_api_outbox_depth", "Emails waiting to be sent (dead letters excluded)", depth
        )
        yield GaugeMetricFamily(
            "orders_api_outbox_oldest_age_seconds",
            "Age of the oldest email waiting to be sent (0 when none)",
            age or 0.0,
        )


def metrics_endpoint(
    queue_depth: Callable[[], Awaitable[tuple[int, float | None]]],
    *,
    production: bool,
    token: str | None,
) -> Callable[[Request], Any]:
    """Open in development; in production only with `Authorization: Bearer METRICS_TOKEN`,
    and absent (404) when no token is configured."""
    expected = f"Bearer {token}".encode() if token else None

    async def metrics(request: Request) -> Response:
        if production:
            if expected is None:
                return Response("Not Found", status_code=404, media_type="text/plain")
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return Response(
                    "Unauthorized",
                    status_code=401,
                    media_type="text/plain",
                    headers={"WWW-Authenticate": "Bearer"},
                )
        local = CollectorRegistry(auto_describe=False)
        local.register(OutboxCollector(*await queue_depth()))
        body = generate_latest(REGISTRY) + generate_latest(local)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    return metrics


def counted_webhook(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
    async def webhook(request: Request) -> Response:
        response: Response = await handler(request)
        WEBHOOK_EVENTS.labels(status=str(response.status_code)).inc()
        return response

    return webhook
