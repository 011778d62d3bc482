"""Codes and personal data never reach the logs (DESIGN §1.11)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest

from app.logging_setup import JsonFormatter, scrub
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
