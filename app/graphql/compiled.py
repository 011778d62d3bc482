"""Compiled plans for reads.

graphql-core's executor and strawberry's per-field wrappers cost 10-15 µs per field: on the
order page (~150 fields) and a page of the order history (~400 fields) that is most of the
request (scripts/bench). A query below vetted root fields is therefore compiled once into a
tree of closures and run directly:

- a plan is only built for a document that the same parser (token limit) and the same
  validation rules accepted: nothing the general path refuses ever reaches a plan;
- root fields call the very same strawberry resolvers (argument conversion included;
  variables and arguments that coercion hands over as they are skip it:
  `plain_inputs`), with an `Info` whose context is the request's; fields below them
  come from the same resolvers (those taking `info` get the same kind of `Info`) or
  attributes, and are serialised by the same graphql-core scalar/enum types;
- async resolvers below the root (the loader fields: lines, shipments, events, returns,
  timeline) run in lockstep, breadth first: every resolver of one round is started before
  any is waited for, so each DataLoader gets the whole round's keys in one batch, as under
  graphql-core, without a task per field (`lockstep`, `drive`);
- errors are located, null-propagated and masked as graphql-core and the masking
  extension do, and the operation is counted by the same metrics.

What a plan cannot express (fragments, directives, aliases of fields with arguments below
the root, abstract types, resolvers below the root that take arguments, field extensions
or permissions, mutations and subscriptions) makes `compile_plan` return None, and the
request takes the general path. `tests/api/test_compiled_plans.py` runs both paths side by
side and requires the same answers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, cast

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    GraphQLField,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    OperationDefinitionNode,
    OperationType,
    located_error,
)
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from app.errors import ErrorCode
from app.graphql.completion import BACKREF, Complete, Execution, Path, completer, group, named
from app.graphql.errors import mask_error, with_default_codes
from app.graphql.lockstep import drive
from app.graphql.metrics import outcome_of
from app.graphql.plain_inputs import (
    PlainArguments,
    PlainVariables,
    coerce_plain_variables,
    convert_plain_arguments,
    plain_arguments,
    plain_variables,
)
from app.metrics import LookupTally, request_answered

# Root fields whose resolvers read nothing from `info` but `info.context` (reviewed: each is
# a one-line call into its service). A new root field is not compiled until it is added.
VETTED_ROOT_FIELDS = frozenset({"order", "checkout", "returnRequest", "me", "myOrders"})


class _RawInfo:
    """The part of graphql-core's ResolveInfo a vetted resolver reads: the context, and
    what strawberry's `Info.selected_fields` reads (the root's field nodes, the coerced
    variables; a plan has no fragments)."""

    __slots__ = ("context", "field_nodes", "fragments", "variable_values")

    def __init__(
        self,
        context: Any,
        field_nodes: list[FieldNode] | None = None,
        variable_values: dict[str, Any] | None = None,
    ) -> None:
        self.context = context
        self.field_nodes = field_nodes or []
        self.fragments: dict[str, Any] = {}
        self.variable_values = variable_values or {}


# -- plans ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RootField:
    key: str
    nodes: tuple[FieldNode, ...]
    graphql_field: GraphQLField
    field: StrawberryField
    complete: Complete
    non_null: bool
    is_async: bool
    plain_arguments: PlainArguments


@dataclass(frozen=True)
class Plan:
    """A compiled query: `run` answers like the general path would, or returns None when
    the variables do not coerce (before anything ran), leaving the answer to it."""

    operation: OperationDefinitionNode
    roots: tuple[_RootField, ...]
    metrics_name: str
    schema: strawberry.Schema
    plain_variables: PlainVariables | None

    async def run(
        self, context: Any, variables: dict[str, Any] | None, request_id: str | None
    ) -> dict[str, Any] | None:
        coerced: Any = None
        if self.plain_variables is not None:
            coerced = coerce_plain_variables(self.plain_variables, variables or {})
        if coerced is None:
            coerced = get_variable_values(
                self.schema._schema, self.operation.variable_definitions or (), variables or {}
            )
        if isinstance(coerced, list):
            return None  # variable errors: the general path words them
        started = time.perf_counter()
        execution = Execution(None)
        data: dict[str, Any] | None = {}
        with LookupTally():
            try:
                for root in self.roots:
                    assert data is not None
                    data[root.key] = await self._resolve_root(root, context, coerced, execution)
            except GraphQLError as error:  # a non-null root field came out null
                execution.errors.append(error)
                data = None
            except asyncio.CancelledError:  # the request time cap: counted as answered
                outcome = ErrorCode.SERVICE_UNAVAILABLE.value
                request_answered(self.metrics_name, outcome, time.perf_counter() - started)
                raise
            masked = [mask_error(error, request_id) for error in execution.errors]
        request_answered(self.metrics_name, outcome_of(masked), time.perf_counter() - started)
        response: dict[str, Any] = {"data": data}
        if masked:
            response["errors"] = [error.formatted for error in masked]
        return with_default_codes(response)

    async def _resolve_root(
        self, root: _RootField, context: Any, coerced: Any, execution: Execution
    ) -> Any:
        path: Path = (None, root.key)
        try:
            raw_args = get_argument_values(root.graphql_field, root.nodes[0], coerced)
            # a stand-in for graphql-core's ResolveInfo: vetted resolvers read only the
            # context and the selection from it (tests/unit/test_compiled_plan_internals.py
            # pins that)
            raw_info: Any = _RawInfo(context, list(root.nodes), coerced)
            info = self.schema.config.info_class(_raw_info=raw_info, _field=root.field)
            execution.info = info
            kwargs = convert_plain_arguments(root.plain_arguments, raw_args)
            if kwargs is None:
                kwargs = convert_arguments(
                    raw_args,
                    root.field.arguments,
                    scalar_registry=self.schema.schema_converter.scalar_registry,
                    config=self.schema.config,
                    info=info,
                )
            resolver = root.field.base_resolver
            assert resolver is not None and resolver.info_parameter is not None
            kwargs[resolver.info_parameter.name] = info
            value = cast("Callable[..., Any]", resolver.wrapped_func)(None, **kwargs)
            if root.is_async or isawaitable(value):
                value = await value
            completed = root.complete(value, execution, path)
            if isawaitable(completed):
                completed = await drive(cast("Coroutine[Any, Any, Any]", completed))
            return completed
        except Exception as raw:
            error = located_error(raw, list(root.nodes), [root.key])
            if root.non_null:
                raise error from None
            execution.errors.append(error)
            return None


def compile_plan(
    schema: strawberry.Schema, document: DocumentNode, operation_name: str | None
) -> Plan | None:
    """A plan for `document` (already parsed and validated without errors), or None."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != len(document.definitions):
        return None  # fragment definitions
    if operation_name is None:
        if len(operations) != 1:
            return None
        operation = operations[0]
    else:
        named = [o for o in operations if o.name is not None and o.name.value == operation_name]
        if len(named) != 1:
            return None
        operation = named[0]
    if operation.operation is not OperationType.QUERY or operation.directives:
        return None
    if getattr(schema, "exception_handlers", None):
        return None  # strawberry's handlers turn exceptions into values: the general path
    if any(d.directives for d in operation.variable_definitions or ()):
        return None
    query_type = schema._schema.query_type
    assert query_type is not None
    grouped = group(operation.selection_set.selections)
    if grouped is None:
        return None
    roots: list[_RootField] = []
    for key, nodes in grouped.items():
        name = nodes[0].name.value
        if name not in VETTED_ROOT_FIELDS:
            return None
        root = _root_field(schema, query_type, key, nodes)
        if root is None:
            return None
        roots.append(root)
    if len(roots) > 1 and any(root.non_null for root in roots):
        # a non-null root nulls the whole answer where it fails; graphql-core runs roots
        # concurrently and plans one after another, so which errors come with it may differ
        return None
    first = roots[0].nodes[0].name.value
    return Plan(
        operation=operation,
        roots=tuple(roots),
        metrics_name=first,
        schema=schema,
        plain_variables=plain_variables(schema._schema, operation.variable_definitions or ()),
    )


def _root_field(
    schema: strawberry.Schema,
    query_type: GraphQLObjectType,
    key: str,
    nodes: tuple[FieldNode, ...],
) -> _RootField | None:
    name = nodes[0].name.value
    if len(nodes) != 1:
        return None  # the same root field selected twice: merging arguments is not ours
    graphql_field = query_type.fields[name]
    field = graphql_field.extensions.get(BACKREF)
    if not isinstance(field, StrawberryField) or field.extensions:
        return None
    resolver = field.base_resolver
    if resolver is None or resolver.info_parameter is None or resolver.self_parameter is None:
        return None  # called as wrapped_func(None, info=...): exactly self and info
    if set(resolver.reserved_parameters.values()) - {None} != {
        resolver.self_parameter,
        resolver.info_parameter,
    }:
        return None
    for argument in nodes[0].arguments or ():
        if not isinstance(named(graphql_field.args[argument.name.value].type), GraphQLScalarType):
            return None  # inputs and enums need strawberry's conversion rules: general path
    compiled = completer(schema, graphql_field.type, nodes, query_type.name, name)
    if compiled is None:
        return None
    return _RootField(
        key=key,
        nodes=nodes,
        graphql_field=graphql_field,
        field=field,
        complete=compiled[0],
        non_null=isinstance(graphql_field.type, GraphQLNonNull),
        is_async=resolver.is_async,
        plain_arguments=plain_arguments(field, schema.config.name_converter.from_argument),
    )
