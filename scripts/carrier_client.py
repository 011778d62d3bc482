#!/usr/bin/env python3
"""A sample carrier: signs one tracking event and posts it to POST /webhooks/carrier.

Standard library only, so a carrier's engineers can read it as the reference. The
signature is HMAC-SHA256 over f"{timestamp}.{body}" with the shared secret, sent as

    X-Carrier-Timestamp: <Unix seconds>
    X-Carrier-Signature: sha256=<hex digest>

Example (the development secret is the server's default):

    CARRIER_WEBHOOK_SECRET=... python scripts/carrier_client.py \\
        --carrier DHL --tracking-number 00340434161234567890 --status DELIVERED \\
        --city Berlin --postal-code 10115 --country DE \\
        --description "Delivered to the front door"

With --city/--postal-code/--country the location is sent structured (`{"city",
"postalCode", "country"}`): a public tracking link shows that town when it is a known
one. --location sends the older free-text string instead; the owner sees it, a public
link shows a town from it only when it is nothing but "[postal code] Town[, country]".
The description is for the owner only.

Exit status 0 when the server accepted the event (2xx), 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000/webhooks/carrier"
STATUSES = (
    "LABEL_CREATED",
    "IN_TRANSIT",
    "OUT_FOR_DELIVERY",
    "ATTEMPTED_DELIVERY",
    "DELAYED",
    "DELIVERED",
    "EXCEPTION",
)


def sign(secret: str, timestamp: str | int, body: bytes | str) -> str:
    """`sha256=<hex>`: HMAC-SHA256 of f"{timestamp}.{body}" under `secret`."""
    raw = body.encode() if isinstance(body, str) else body
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + raw, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "Content-Type": "application/json",
        "X-Carrier-Timestamp": stamp,
        "X-Carrier-Signature": sign(secret, stamp, body),
    }


def event_body(
    *,
    carrier: str,
    tracking_number: str,
    status: str,
    event_id: str | None = None,
    occurred_at: str | None = None,
    location: str | dict[str, str] = "",
    description: str = "",
    estimated_delivery: str | None = None,
) -> bytes:
    """The JSON body of one event; `location` is a string or {city, postalCode, country}."""
    payload: dict[str, Any] = {
        "eventId": event_id or f"evt-{uuid.uuid4().hex}",
        "carrier": carrier,
        "trackingNumber": tracking_number,
        "status": status,
        "occurredAt": occurred_at or datetime.now(UTC).isoformat(timespec="seconds"),
        "location": location,
        "description": description,
    }
    if estimated_delivery:
        payload["estimatedDelivery"] = estimated_delivery
    return json.dumps(payload, separators=(",", ":")).encode()


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 10.0) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("CARRIER_WEBHOOK_URL", DEFAULT_URL))
    parser.add_argument(
        "--secret",
        default=os.environ.get("CARRIER_WEBHOOK_SECRET"),
        help="shared secret (default: $CARRIER_WEBHOOK_SECRET)",
    )
    parser.add_argument("--carrier", required=True)
    parser.add_argument("--tracking-number", required=True)
    parser.add_argument("--status", required=True, choices=STATUSES)
    parser.add_argument("--event-id", help="the carrier's id of this event (default: random)")
    parser.add_argument("--occurred-at", help="ISO-8601 with time zone (default: now)")
    parser.add_argument("--location", default="", help="free text (older senders)")
    parser.add_argument("--city", help="structured location: the town")
    parser.add_argument("--postal-code", help="structured location: the postal code")
    parser.add_argument("--country", help="structured location: ISO 3166 code, e.g. DE")
    parser.add_argument("--description", default="")
    parser.add_argument("--estimated-delivery", help="YYYY-MM-DD")
    parser.add_argument(
        "--timestamp", type=int, help="signing time, Unix seconds (default: now; for tests)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.secret:
        print("error: pass --secret or set CARRIER_WEBHOOK_SECRET", file=sys.stderr)
        return 2
    place = {
        key: value
        for key, value in (
            ("city", args.city),
            ("postalCode", args.postal_code),
            ("country", args.country),
        )
        if value
    }
    if place and args.location:
        print("error: pass --location or --city/--postal-code/--country", file=sys.stderr)
        return 2
    body = event_body(
        carrier=args.carrier,
        tracking_number=args.tracking_number,
        status=args.status,
        event_id=args.event_id,
        occurred_at=args.occurred_at,
        location=place or args.location,
        description=args.description,
        estimated_delivery=args.estimated_delivery,
    )
    status, text = post(args.url, body, signed_headers(args.secret, body, args.timestamp))
    print(f"{status} {text}")
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    raise SystemExit(main())
