"""Codes and personal data never reach the logs (DESIGN §1.11)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.logging_setup import JsonFormatter, mask_user, scrub
from app.security import codes
from tests.conftest import Account, GraphQLClient

PLACE = """
mutation {
  placeOrder(lines: [{sku: "MUG-001", quantity: 1}], paymentToken: "tok_visa",
    idempotencyKey: "log-test-key-1",
    shippingAddress: {name: "Zacharias Privacy", line1: "77 Secret Lane", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code } userErrors { message }
  }
}
"""


def test_a_full_journey_logs_no_code_email_or_address(
    gql: GraphQLClient,
    owner: Account,
    catalog: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    place_order: Callable[..., Any],
) -> None:
    caplog.set_level(logging.DEBUG)
    # given a journey with lookups that succeed, fail and are invalid, and an internal error
    code = gql.data(PLACE, token=owner.token)["placeOrder"]["order"]["code"]
    gql.data("query($c:String!){ order(code:$c){ code } }", {"c": code}, token=owner.token)
    gql("query($c:String!){ order(code:$c){ code } }", {"c": codes.generate()}, token=owner.token)
    gql("query($c:String!){ order(code:$c){ code } }", {"c": "bad-code"}, token=owner.token)
    gql(
        "mutation($c:String!){ cancelOrder(code:$c){ order { status } } }",
        {"c": code},
        token=owner.token,
    )
    from app.orders.service import OrderService

    def explode(*_: object, **__: object) -> None:
        raise RuntimeError(f"failed for {owner.email} at 77 Secret Lane, code {code}")

    monkeypatch.setattr(OrderService, "reorder", explode)
    gql("query($c:String!){ reorder(code:$c){ total { amount } } }", {"c": code}, token=owner.token)
    # when the records are formatted as they are in production
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    # then
    assert caplog.records, "the journey should have logged something"
    canonical = codes.normalise(code)
    assert canonical not in text and code not in text
    assert owner.email not in text
    assert "Secret Lane" not in text and "Zacharias" not in text
    assert '"exc_type": "RuntimeError"' in text  # the failure is still visible
    assert codes.mask(canonical) in text  # codes do appear, masked


def test_scrub_masks_codes_and_emails_anywhere() -> None:
    code = codes.display(codes.generate())
    out = scrub(f"user bob@example.com looked up {code} and {code.replace('-', '')}")
    assert "bob@example.com" not in out
    assert code not in out and code.replace("-", "") not in out


def test_request_ids_survive_scrubbing(http: object) -> None:
    from starlette.testclient import TestClient

    assert isinstance(http, TestClient)
    request_id = http.post("/graphql", json={"query": "{ __typename }"}).headers["x-request-id"]
    assert scrub(f"failed, request id {request_id}") == f"failed, request id {request_id}"


def test_json_lines_carry_no_ansi_and_one_masked_user_field() -> None:
    # given a record as uvicorn writes it (a colour copy of its message) with a user on it
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        "",
        0,
        "Uvicorn running on %s",
        ("\x1b[1mhttp://h\x1b[0m",),
        None,
    )
    record.color_message = "Uvicorn running on \x1b[1m%s\x1b[0m"
    record.user = "Ab_3-xYz9Qw8_Rt7"
    # when it is formatted as in production
    line = JsonFormatter().format(record)
    # then
    data = json.loads(line)
    assert "\x1b" not in line and "\\u001b" not in line
    assert "color_message" not in data and data["message"] == "Uvicorn running on http://h"
    assert data["user"] == mask_user("Ab_3-xYz9Qw8_Rt7") and "Ab_3" not in line
    # public ids of any shape mask alike (scrubbing used to mask only the alphanumeric ones)
    assert re.fullmatch(r"u-[0-9a-f]{8}", mask_user("ABCDEFGHJKMNPQRS") or "")
    assert re.fullmatch(r"u-[0-9a-f]{8}", mask_user("a-b_cdefghjkmnpq") or "")


def test_every_log_line_about_a_user_names_it_in_the_user_field() -> None:
    """The formatter masks `user`: a public id logged under any other name would be raw."""
    app = Path(__file__).resolve().parents[2] / "app"
    offenders = []
    for path in app.rglob("*.py"):
        for match in re.finditer(r"extra=\{[^}]*\}", path.read_text()):
            for key in re.findall(r"\"(\w+)\":\s*[\w.]*public_id", match.group(0)):
                if key != "user":
                    offenders.append(f"{path.name}: {key}")
    assert offenders == []
    assert "public_id" in (app / "security" / "lookups.py").read_text()  # the scan sees them
