"""The GraphQL schema, composed from each domain's Query and Mutation classes."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import strawberry
from graphql import (
    BREAK,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    Node,
    SelectionSetNode,
    ValidationRule,
    Visitor,
    parse,
    visit,
)
from graphql.validation import (
    ASTValidationRule,
    NoSchemaIntrospectionCustomRule,
    specified_rules,
)
from graphql.validation.validate import ValidationAbortedError
from strawberry.extensions import (
    MaxAliasesLimiter,
    QueryDepthLimiter,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from app.accounts.schema import AccountsMutation, AccountsQuery, StaffAdminMutation, StaffAdminQuery
from app.audit.schema import AuditQuery
from app.catalog.schema import CatalogQuery
from app.graphql.errors import DomainErrorMasking
from app.graphql.metrics import MetricsExtension
from app.notifications.schema import NotificationsMutation, NotificationsQuery
from app.orders.schema import OrdersMutation, OrdersQuery, OrdersSubscription
from app.returns.schema import ReturnsMutation, ReturnsQuery, ReturnsQueueQuery
from app.shipments.schema import ShipmentsMutation, ShipmentsQuery
from app.support.schema import SupportQuery, SupportSearchQuery
from app.tracking.schema import TrackingMutation, TrackingQuery


@strawberry.type
class Query(
    AccountsQuery,
    CatalogQuery,
    OrdersQuery,
    SupportQuery,
    AuditQuery,
    ShipmentsQuery,
    TrackingQuery,
    ReturnsQuery,
    NotificationsQuery,
    SupportSearchQuery,
    ReturnsQueueQuery,
    StaffAdminQuery,
):
    pass


@strawberry.type
class Mutation(
    AccountsMutation,
    OrdersMutation,
    ShipmentsMutation,
    TrackingMutation,
    ReturnsMutation,
    NotificationsMutation,
    StaffAdminMutation,
):
    pass


@strawberry.type
class Subscription(OrdersSubscription):
    pass


# Directive and field-duplication overloading (graphql-cop "Directive Overloading" and
# "Field Duplication", found by tests/security_stage): `__typename @aa@aa…` made one error per
# directive, and `__typename` x500 (or a field with a selection x150) was accepted after a
# validation pass that is quadratic in the duplicates. No real query puts more than two
# directives (@skip, @include) on one place or selects one field more than twice.
MAX_DIRECTIVES_PER_LOCATION = 5
MAX_FIELD_REPEATS = 5


class _OverloadFinder(Visitor):
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        super().__init__()
        self.fragments = fragments
        self.problem: str | None = None

    def enter(self, node: Node, *_: Any) -> Any:
        directives = getattr(node, "directives", None) or ()
        if len(directives) > MAX_DIRECTIVES_PER_LOCATION:
            self.problem = (
                f"{len(directives)} directives in one place; at most "
                f"{MAX_DIRECTIVES_PER_LOCATION} are allowed."
            )
            return BREAK
        if isinstance(node, SelectionSetNode):
            name, times = self._most_repeated(node)
            if times > MAX_FIELD_REPEATS:
                self.problem = (
                    f"Field '{name}' is selected {times} times in one selection; at most "
                    f"{MAX_FIELD_REPEATS} are allowed."
                )
                return BREAK
        return None

    def _most_repeated(self, selection_set: SelectionSetNode) -> tuple[str, int]:
        """Response keys as graphql-core merges them: through inline fragments and each
        named fragment (once) spread into this selection."""
        counts: Counter[str] = Counter()
        stack, spread = [selection_set], set()
        while stack:
            for selection in stack.pop().selections:
                if isinstance(selection, FieldNode):
                    counts[(selection.alias or selection.name).value] += 1
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name not in spread and name in self.fragments:
                        spread.add(name)
                        stack.append(self.fragments[name].selection_set)
        return counts.most_common(1)[0] if counts else ("", 0)


class OverloadLimits(ValidationRule):
    """Refuse overloaded documents with ONE error and stop validating there: raising
    ValidationAbortedError is graphql-core's own way to end `validate` early."""

    def enter_document(self, node: DocumentNode, *_: Any) -> None:
        fragments = {
            d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)
        }
        finder = _OverloadFinder(fragments)
        visit(node, finder)
        if finder.problem is not None:
            raise ValidationAbortedError(finder.problem)


class OrdersSchema(strawberry.Schema):
    rules: tuple[type[ASTValidationRule], ...] = ()  # set by build_schema

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Queries and mutations only: subscriptions are served over WebSocket. Strawberry
        lets POST carry them (for its streaming transports, which are off here) and a
        subscription then ran as a query and answered INTERNAL; now it is refused (400)."""
        allowed = set(allowed_operation_types or (OperationType.QUERY, OperationType.MUTATION))
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed - {OperationType.SUBSCRIPTION},
            operation_extensions,
        )

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # Errors are logged (once, masked) by DomainErrorMasking; skip strawberry's default
        # logger, which would print resolver arguments — order codes — into the logs.
        return None


# The validation rules are built ONCE. ValidationCache keys its LRU on the rule classes,
# and QueryDepthLimiter / MaxAliasesLimiter make a new class per instance: created per
# request (as extension factories do) they made every request a cache miss, and full
# validation was two thirds of the time of a lookup (scripts/bench).
_LIMIT_RULES: tuple[type[ASTValidationRule], ...] = (
    *QueryDepthLimiter(max_depth=10).validation_rules,
    *MaxAliasesLimiter(max_alias_count=30).validation_rules,
    OverloadLimits,
)


MAX_TOKENS = 2000


def validation_rules(
    *, production: bool, allowlist: type[ASTValidationRule] | None = None
) -> tuple[type[ASTValidationRule], ...]:
    """Every rule a document is validated with: graphql's own, our limits, no introspection
    in production, and the persisted-query allow-list when only that is accepted."""
    return (
        *((allowlist,) if allowlist is not None else ()),  # first: it ends validation early
        *specified_rules,
        *_LIMIT_RULES,
        *((NoSchemaIntrospectionCustomRule,) if production else ()),
    )


@lru_cache(maxsize=512)
def parse_document(query: str) -> DocumentNode:
    """Parse with the token limit, cached: clients send the same few documents."""
    return parse(query, max_tokens=MAX_TOKENS)


@lru_cache(maxsize=512)
def validate_cached(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    return validate_document(schema, document, rules)


class RequestPipeline(DomainErrorMasking):
    """Token limit, parse cache, our validation rules, validation cache and error masking
    in ONE extension. As five separate strawberry extensions their hooks alone cost more
    per request than the database lookup (scripts/bench); together the behaviour is the
    same: the token limit stops the parser early, rules are one shared tuple (so the
    validation cache hits). `build_schema` sets `rules` for the deployment."""

    rules: tuple[type[ASTValidationRule], ...] = ()

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.parse_options["max_tokens"] = MAX_TOKENS
        context.validation_rules = self.rules
        yield from super().on_operation()

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        assert context.query is not None
        # Raised here, before the hook yields, a syntax error would escape strawberry's
        # parse step and skip its pre-execution handling (the operation hooks then saw no
        # error: metrics counted it `ok`). Left unparsed, the document is parsed again by
        # strawberry with the same token limit, which reports the error as a parse error.
        with contextlib.suppress(GraphQLError):
            context.graphql_document = parse_document(context.query)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        assert context.graphql_document is not None
        context.pre_execution_errors = validate_cached(
            context.schema._schema, context.graphql_document, self.rules
        )
        yield


def build_schema(
    *, production: bool = False, allowlist: type[ASTValidationRule] | None = None
) -> OrdersSchema:
    """Batching stays off (StrawberryConfig's default): one operation per request, so every
    code lookup is one resolution the limiter sees. Introspection is off in production;
    `allowlist` (app/graphql/persisted.py) admits only the registered documents."""
    rules = validation_rules(production=production, allowlist=allowlist)
    pipeline = type(
        "RequestPipeline",
        (RequestPipeline,),
        {"rules": rules, "private_schema": allowlist is not None},
    )
    built = OrdersSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(),
        extensions=[
            MetricsExtension,  # first: times and counts everything, refusals included
            pipeline,
        ],
    )
    built.rules = rules
    return built


schema = build_schema()
