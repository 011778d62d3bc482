"""POST /webhooks/carrier: tracking events pushed by carriers.

Authentication is an HMAC-SHA256 over `f"{timestamp}.{body}"` with the shared secret
(`CARRIER_WEBHOOK_SECRET`), sent as

    X-Carrier-Timestamp: 1764300000            (Unix seconds)
    X-Carrier-Signature: sha256=<hex digest>

and compared in constant time. A timestamp more than 5 minutes away from our clock is
refused, so a captured request cannot be replayed later; within the window, the carrier's
event id makes a repeat harmless (recorded once).

`location` is a string (free text, older senders) or `{"city", "postalCode", "country"}`;
`description` is free text. Both are shown to the order's owner; a public tracking link
shows only a recognised town (app/tracking/places.py), never the carrier's text.

Every authenticated, well-formed event is answered `202 {"status": "accepted"}`: recorded,
a repeat, or a tracking number we do not know. The answer never tells whether a tracking
number exists. `scripts/carrier_client.py` is a sample client.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from app.errors import BadUserInput, ServiceUnavailable
from app.shipments.inputs import EventInput, Place
from app.shipments.service import ShipmentService

log = logging.getLogger("app.shipments.webhook")

TIMESTAMP_HEADER = "x-carrier-timestamp"
SIGNATURE_HEADER = "x-carrier-signature"
TOLERANCE_SECONDS = 300
ACCEPTED = {"status": "accepted"}


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def verify(secret: str, timestamp: str | None, signed: str | None, body: bytes, now: float) -> None:
    """Raise Refused unless the request is signed with `secret` and fresh."""
    if not timestamp or not signed:
        raise Refused(401, "INVALID_SIGNATURE", "Sign the request (X-Carrier-Signature).")
    expected = signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signed.strip().encode()):
        raise Refused(401, "INVALID_SIGNATURE", "The signature does not match.")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise Refused(401, "INVALID_SIGNATURE", "X-Carrier-Timestamp is Unix seconds.") from None
    if abs(now - sent_at) > TOLERANCE_SECONDS:
        raise Refused(
            401, "STALE_TIMESTAMP", "The timestamp is more than 5 minutes away; sign it anew."
        )


def _text(payload: dict[str, Any], key: str, *, required: bool) -> str:
    value = payload.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise BadUserInput(f"`{key}` must be a string.", field=key)
    return value


def _location(payload: dict[str, Any]) -> tuple[str, Place | None]:
    """`location` as a string (older senders: free text) or as an object
    `{city, postalCode, country}` (the structured place a public link may take a town
    from). Other keys of the object are ignored and never stored."""
    value = payload.get("location")
    if not isinstance(value, dict):
        return _text(payload, "location", required=False), None
    parts: dict[str, str] = {}
    for key in ("city", "postalCode", "country"):
        part = value.get(key)
        if part is not None and not isinstance(part, str):
            raise BadUserInput(f"`location.{key}` must be a string.", field=f"location.{key}")
        parts[key] = part or ""
    return "", Place(parts["city"], parts["postalCode"], parts["country"])


def parse_event(body: bytes) -> tuple[str, str, EventInput]:
    """(carrier, tracking number, event) from the JSON body, or BadUserInput."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadUserInput("The body must be a JSON object.") from None
    if not isinstance(payload, dict):
        raise BadUserInput("The body must be a JSON object.")
    occurred_raw = _text(payload, "occurredAt", required=True)
    estimate_raw = _text(payload, "estimatedDelivery", required=False)
    try:
        occurred_at = datetime.fromisoformat(occurred_raw)
    except ValueError:
        raise BadUserInput("`occurredAt` must be ISO-8601.", field="occurredAt") from None
    if occurred_at.tzinfo is None:
        raise BadUserInput("`occurredAt` needs a time zone (e.g. Z).", field="occurredAt")
    try:
        estimate = date.fromisoformat(estimate_raw) if estimate_raw else None
    except ValueError:
        raise BadUserInput(
            "`estimatedDelivery` must be a date (YYYY-MM-DD).", field="estimatedDelivery"
        ) from None
    location, place = _location(payload)
    return (
        _text(payload, "carrier", required=True),
        _text(payload, "trackingNumber", required=True),
        EventInput(
            status=_text(payload, "status", required=True),
            occurred_at=occurred_at,
            location=location,
            place=place,
            description=_text(payload, "description", required=False),
            estimated_delivery=estimate,
            event_id=_text(payload, "eventId", required=True),
        ),
    )


def _error(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": code, "message": message}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def carrier_webhook(
    shipments: ShipmentService, secret: str, clock: Callable[[], float] = time.time
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint, bound to the service and the shared secret."""

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        try:
            verify(
                secret,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
                body,
                clock(),
            )
        except Refused as refused:
            log.warning("carrier webhook refused", extra={"outcome": refused.code})
            return _error(refused.status, refused.code, refused.message)
        try:
            carrier, tracking, event = parse_event(body)
            outcome = await shipments.record_carrier_event(carrier, tracking, event)
        except BadUserInput as error:
            return _error(400, error.code.value, error.message, error.field)
        except ServiceUnavailable as error:  # the carrier retries later
            return _error(503, error.code.value, error.message)
        log.info("carrier event", extra={"outcome": outcome.value})
        return JSONResponse(ACCEPTED, status_code=202)

    return endpoint
