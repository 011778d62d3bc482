"""Compiled plans for plain reads.

For a small lookup such as `order(code) { code status total { amount currency } }`,
graphql-core's executor and strawberry's per-field wrappers cost several times the
database lookup (scripts/bench). A document that only reads plain fields below a vetted
root field is therefore compiled once into a tree of closures and run directly:

- a plan is only built for a document that the same parser (token limit) and the same
  validation rules accepted: nothing the general path refuses ever reaches a plan;
- root fields call the very same strawberry resolvers (argument conversion included),
  with an `Info` whose context is the request's; fields below them come from the same
  resolvers or attributes and are serialised by the same graphql-core scalar/enum types;
- errors are located, null-propagated and masked as graphql-core and the masking
  extension do, and the operation is counted by the same metrics.

What a plan cannot express (fragments, directives, aliases of fields with arguments below
the root, abstract types, resolvers below the root that take `info` or arguments or are
async, field extensions or permissions, mutations and subscriptions) makes `compile_plan`
return None,
and the request takes the general path. `tests/api/test_compiled_plans.py` runs both
paths side by side and requires the same answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from inspect import isawaitable
from typing import Any, cast

import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    OperationDefinitionNode,
    OperationType,
    located_error,
)
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.pyutils import Undefined, inspect, is_iterable
from strawberry.types.arguments import convert_arguments
from strawberry.types.field import StrawberryField

from app.graphql.errors import mask_error, with_default_codes
from app.graphql.metrics import outcome_of
from app.metrics import LATENCY, REQUESTS, lookup_tally

_BACKREF = "strawberry-definition"

# Root fields whose resolvers read nothing from `info` but `info.context` (reviewed: each is
# a one-line call into its service). A new root field is not compiled until it is added.
VETTED_ROOT_FIELDS = frozenset({"order", "checkout", "returnRequest", "me"})

# (value, errors, path) -> JSON value; raises to propagate a null into a non-null parent
_Complete = Callable[[Any, list[GraphQLError], tuple[str | int, ...]], Any]


class _RawInfo:
    """The part of graphql-core's ResolveInfo a vetted resolver reads: the context."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


@dataclass(frozen=True)
class _RootField:
    key: str
    nodes: tuple[FieldNode, ...]
    graphql_field: GraphQLField
    field: StrawberryField
    complete: _Complete
    non_null: bool
    is_async: bool


@dataclass(frozen=True)
class Plan:
    """A compiled query: `run` answers like the general path would, or returns None when
    the variables do not coerce (before anything ran), leaving the answer to it."""

    operation: OperationDefinitionNode
    roots: tuple[_RootField, ...]
    metrics_name: str
    schema: strawberry.Schema

    async def run(
        self, context: Any, variables: dict[str, Any] | None, request_id: str | None
    ) -> dict[str, Any] | None:
        coerced = get_variable_values(
            self.schema._schema, self.operation.variable_definitions or (), variables or {}
        )
        if isinstance(coerced, list):
            return None  # variable errors: the general path words them
        started = time.perf_counter()
        errors: list[GraphQLError] = []
        data: dict[str, Any] | None = {}
        with lookup_tally():
            try:
                for root in self.roots:
                    assert data is not None
                    data[root.key] = await self._resolve_root(root, context, coerced, errors)
            except GraphQLError as error:  # a non-null root field came out null
                errors.append(error)
                data = None
            masked = [mask_error(error, request_id) for error in errors]
            REQUESTS.labels(operation=self.metrics_name, outcome=outcome_of(masked)).inc()
        LATENCY.labels(operation=self.metrics_name).observe(time.perf_counter() - started)
        response: dict[str, Any] = {"data": data}
        if masked:
            response["errors"] = [error.formatted for error in masked]
        return with_default_codes(response)

    async def _resolve_root(
        self, root: _RootField, context: Any, coerced: Any, errors: list[GraphQLError]
    ) -> Any:
        path: tuple[str | int, ...] = (root.key,)
        try:
            raw_args = get_argument_values(root.graphql_field, root.nodes[0], coerced)
            info = self.schema.config.info_class(_raw_info=_RawInfo(context), _field=root.field)  # type: ignore[arg-type]
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
            value = cast(Callable[..., Any], resolver.wrapped_func)(None, **kwargs)
            if root.is_async or isawaitable(value):
                value = await value
            return root.complete(value, errors, path)
        except Exception as raw:
            error = located_error(raw, list(root.nodes), list(path))
            if root.non_null:
                raise error from None
            errors.append(error)
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
    grouped = _group(operation.selection_set.selections)
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
    first = roots[0].nodes[0].name.value
    return Plan(operation=operation, roots=tuple(roots), metrics_name=first, schema=schema)


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
    field = graphql_field.extensions.get(_BACKREF)
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
    for argument in graphql_field.args.values():
        if not isinstance(_named(argument.type), GraphQLScalarType):
            return None  # inputs and enums need strawberry's conversion rules: general path
    complete = _completer(schema, graphql_field.type, nodes, query_type.name, name)
    if complete is None:
        return None
    return _RootField(
        key=key,
        nodes=nodes,
        graphql_field=graphql_field,
        field=field,
        complete=complete,
        non_null=isinstance(graphql_field.type, GraphQLNonNull),
        is_async=resolver.is_async,
    )


def _named(type_: Any) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def _group(selections: Any) -> dict[str, tuple[FieldNode, ...]] | None:
    """Fields by response key, in document order; None if anything but plain fields."""
    grouped: dict[str, list[FieldNode]] = {}
    for selection in selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        key = (selection.alias or selection.name).value
        grouped.setdefault(key, []).append(selection)
    return {key: tuple(nodes) for key, nodes in grouped.items()}


def _completer(
    schema: strawberry.Schema,
    type_: GraphQLOutputType,
    nodes: tuple[FieldNode, ...],
    parent_name: str,
    field_name: str,
) -> _Complete | None:
    """graphql-core's complete_value for one field's type, specialised at compile time."""
    if isinstance(type_, GraphQLNonNull):
        inner = _completer(schema, type_.of_type, nodes, parent_name, field_name)
        if inner is None:
            return None
        message = f"Cannot return null for non-nullable field {parent_name}.{field_name}."

        def non_null(value: Any, errors: list[GraphQLError], path: tuple[str | int, ...]) -> Any:
            completed = inner(value, errors, path)
            if completed is None:
                raise TypeError(message)
            return completed

        return non_null
    if isinstance(type_, GraphQLList):
        return _list_completer(schema, type_, nodes, parent_name, field_name)
    if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
        return _leaf_completer(type_, nodes)
    if isinstance(type_, GraphQLObjectType):
        return _object_completer(schema, type_, nodes)
    return None  # interfaces and unions: the general path resolves their type


def _list_completer(
    schema: strawberry.Schema,
    type_: GraphQLList[Any],
    nodes: tuple[FieldNode, ...],
    parent_name: str,
    field_name: str,
) -> _Complete | None:
    item = _completer(schema, type_.of_type, nodes, parent_name, field_name)
    if item is None:
        return None
    item_non_null = isinstance(type_.of_type, GraphQLNonNull)
    not_iterable = (
        f"Expected Iterable, but did not find one for field '{parent_name}.{field_name}'."
    )

    def complete_list(value: Any, errors: list[GraphQLError], path: tuple[str | int, ...]) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None:
            return None
        if not is_iterable(value):
            raise GraphQLError(not_iterable)
        out: list[Any] = []
        for index, element in enumerate(value):
            here = (*path, index)
            try:
                out.append(item(element, errors, here))
            except Exception as raw:
                error = located_error(raw, list(nodes), list(here))
                if item_non_null:
                    raise error from None
                errors.append(error)
                out.append(None)
        return out

    return complete_list


def _leaf_completer(
    type_: GraphQLScalarType | GraphQLEnumType, nodes: tuple[FieldNode, ...]
) -> _Complete | None:
    if any(node.selection_set for node in nodes):
        return None
    coerce = type_.coerce_output_value

    def complete_leaf(value: Any, errors: list[GraphQLError], path: tuple[str | int, ...]) -> Any:
        if isinstance(value, Exception):  # graphql-core raises a returned exception
            raise value
        if value is None or value is Undefined:
            return None
        coerced = coerce(value)
        if coerced is Undefined or coerced is None:
            raise TypeError(
                f"Expected `{inspect(type_)}.coerce_output_value({inspect(value)})` to return"
                f" non-nullable value, returned: {inspect(coerced)}"
            )
        return coerced

    return complete_leaf


def _object_completer(
    schema: strawberry.Schema, type_: GraphQLObjectType, nodes: tuple[FieldNode, ...]
) -> _Complete | None:
    if type_.is_type_of is not None:
        return None
    selections = [s for node in nodes if node.selection_set for s in node.selection_set.selections]
    grouped = _group(selections)
    if not grouped:
        return None
    runners: list[tuple[str, Callable[..., Any]]] = []
    for key, field_nodes in grouped.items():
        runner = _field_runner(schema, type_, key, field_nodes)
        if runner is None:
            return None
        runners.append((key, runner))

    def complete_object(value: Any, errors: list[GraphQLError], path: tuple[str | int, ...]) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        return {key: run(value, errors, path) for key, run in runners}

    return complete_object


def _field_runner(
    schema: strawberry.Schema,
    parent: GraphQLObjectType,
    key: str,
    nodes: tuple[FieldNode, ...],
) -> Callable[[Any, list[GraphQLError], tuple[str | int, ...]], Any] | None:
    name = nodes[0].name.value
    if any(node.arguments for node in nodes):
        return None
    if name == "__typename":
        type_name = parent.name
        return lambda _value, _errors, _path: type_name
    if name.startswith("__"):
        return None
    graphql_field = parent.fields[name]
    getter = _getter(graphql_field)
    complete = _completer(schema, graphql_field.type, nodes, parent.name, name)
    if getter is None or complete is None:
        return None
    non_null = isinstance(graphql_field.type, GraphQLNonNull)

    def run(source: Any, errors: list[GraphQLError], path: tuple[str | int, ...]) -> Any:
        here = (*path, key)
        try:
            return complete(getter(source), errors, here)
        except Exception as raw:
            error = located_error(raw, list(nodes), list(here))
            if non_null:
                raise error from None
            errors.append(error)
            return None

    return run


def _getter(graphql_field: GraphQLField) -> Callable[[Any], Any] | None:
    """How strawberry reads this field: its resolver with `self` only, or the attribute."""
    field = graphql_field.extensions.get(_BACKREF)
    if not isinstance(field, StrawberryField) or field.extensions or field.arguments:
        return None
    resolver = field.base_resolver
    if resolver is None:
        python_name = field.python_name
        return lambda source: getattr(source, python_name)
    others = {p for p in resolver.reserved_parameters.values() if p is not None}
    if resolver.is_async or others - {resolver.self_parameter}:
        return None
    function = cast(Callable[..., Any], resolver.wrapped_func)
    if resolver.self_parameter is None:
        return lambda _source: function()
    return function
