"""The GraphQL schema, composed from each domain's Query and Mutation classes."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext

from app.accounts.schema import AccountsMutation, AccountsQuery
from app.catalog.schema import CatalogQuery
from app.graphql.errors import DomainErrorMasking
from app.orders.schema import OrdersMutation, OrdersQuery, OrdersSubscription


@strawberry.type
class Query(AccountsQuery, CatalogQuery, OrdersQuery):
    pass


@strawberry.type
class Mutation(AccountsMutation, OrdersMutation):
    pass


@strawberry.type
class Subscription(OrdersSubscription):
    pass


class OrdersSchema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors are logged (once, masked) by DomainErrorMasking; skip strawberry's default
        # logger, which would print resolver arguments — order codes — into the logs.
        return None


def build_schema(*, production: bool = False) -> strawberry.Schema:
    """Batching stays off (StrawberryConfig's default): one operation per request, so every
    code lookup is one resolution the limiter sees. Introspection is off in production."""
    extensions: list[Any] = [DisableIntrospection] if production else []
    return OrdersSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(),
        extensions=[
            *extensions,
            lambda: MaxTokensLimiter(max_token_count=2000),  # first: stops the parser early
            lambda: ParserCache(maxsize=512),
            lambda: QueryDepthLimiter(max_depth=10),
            lambda: MaxAliasesLimiter(max_alias_count=30),
            lambda: ValidationCache(maxsize=512),
            DomainErrorMasking,
        ],
    )


schema = build_schema()
