"""products: public, paginated by SKU, only active products, page size capped."""

from __future__ import annotations

from app.catalog.models import Product
from tests.conftest import Account, GraphQLClient, error_codes

PRODUCTS = """
query P($first: Int, $after: String) {
  products(first: $first, after: $after) {
    edges { cursor node { sku name price { amount currency } inStock } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


def test_anonymous_can_page_through_active_products(
    gql: GraphQLClient, catalog: dict[str, Product]
) -> None:
    first = gql.data(PRODUCTS, {"first": 2})["products"]
    second = gql.data(PRODUCTS, {"first": 2, "after": first["pageInfo"]["endCursor"]})["products"]
    skus = [e["node"]["sku"] for e in first["edges"] + second["edges"]]
    assert skus == ["LAMP-DESK", "MUG-001", "TEE-BLK-M"]  # sorted, RETIRED-1 hidden
    assert first["pageInfo"]["hasNextPage"] is True
    assert second["pageInfo"]["hasNextPage"] is False
    assert first["edges"][1]["node"]["price"] == {"amount": 1299, "currency": "EUR"}


def test_customers_see_the_same_list(
    gql: GraphQLClient, owner: Account, catalog: dict[str, Product]
) -> None:
    def nodes(token: str | None) -> list[dict[str, object]]:
        edges = gql.data(PRODUCTS, {}, token=token)["products"]["edges"]
        return [edge["node"] for edge in edges]

    assert nodes(owner.token) == nodes(None)
    assert len(nodes(None)) == 3


def test_page_size_is_capped(gql: GraphQLClient, catalog: dict[str, Product]) -> None:
    assert error_codes(gql(PRODUCTS, {"first": 10_000})) == ["BAD_USER_INPUT"]
