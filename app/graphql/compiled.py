"""Compiled plans for reads.

graphql-core's executor and strawberry's per-field wrappers cost 10-15 µs per field: on the
order page (~150 fields) and a page of the order history (~400 fields) that is most of the
request (scripts/bench). A query below vetted root fields is therefore compiled once into a
tree of closures and run directly:

- a plan is only built for a document that the same parser (token limit) and the same
  validation rules accepted: nothing the general path refuses ever reaches a plan;
- root fields call the very same strawberry resolvers (argument conversion included),
  with an `Info` whose context is the request's; fields below them come from the same
  resolvers (those taking `info` get the same kind of `Info`) or attributes, and are
  serialised by the same graphql-core scalar/enum types;
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

from app.errors import ErrorCode
from app.graphql.errors import mask_error, with_default_codes
from app.graphql.lockstep import close_unstarted, drive, fill
from app.graphql.metrics import outcome_of
from app.metrics import LATENCY, REQUESTS, lookup_tally

_BACKREF = "strawberry-definition"

# Root fields whose resolvers read nothing from `info` but `info.context` (reviewed: each is
# a one-line call into its service). A new root field is not compiled until it is added.
VETTED_ROOT_FIELDS = frozenset({"order", "checkout", "returnRequest", "me", "myOrders"})

# A response path as graphql-core's Path: (parent, key), None above the root. Built for every
# field and turned into a list only for an error.
_Path = tuple[Any, str | int] | None


class _Execution:
    """One run of a plan: the errors so far and the `Info` resolvers below the root get."""

    __slots__ = ("errors", "info")

    def __init__(self, info: Any) -> None:
        self.errors: list[GraphQLError] = []
        self.info = info


# (value, execution, path) -> JSON value, or an awaitable of it where the type below has
# async resolvers; raises to propagate a null into a non-null parent
_Complete = Callable[[Any, _Execution, _Path], Any]
# a completer and whether it may return an awaitable
_Compiled = tuple[_Complete, bool]
# (error, execution, path of the field or item) -> None, or raises to null the parent
_Failed = Callable[[Exception, _Execution, _Path], None]
# (index among the awaited, error) -> None, or raises to null the parent


def _as_list(path: _Path) -> list[str | int]:
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    return keys


class _RawInfo:
    """The part of graphql-core's ResolveInfo a vetted resolver reads: the context."""

    __slots__ = ("context",)

    def __init__(self, context: Any) -> None:
        self.context = context


# -- plans ----------------------------------------------------------------------------------


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
        execution = _Execution(None)
        data: dict[str, Any] | None = {}
        with lookup_tally():
            try:
                for root in self.roots:
                    assert data is not None
                    data[root.key] = await self._resolve_root(root, context, coerced, execution)
            except GraphQLError as error:  # a non-null root field came out null
                execution.errors.append(error)
                data = None
            except asyncio.CancelledError:  # the request time cap: counted as answered
                outcome = ErrorCode.SERVICE_UNAVAILABLE.value
                REQUESTS.labels(operation=self.metrics_name, outcome=outcome).inc()
                LATENCY.labels(operation=self.metrics_name).observe(time.perf_counter() - started)
                raise
            masked = [mask_error(error, request_id) for error in execution.errors]
            REQUESTS.labels(operation=self.metrics_name, outcome=outcome_of(masked)).inc()
        LATENCY.labels(operation=self.metrics_name).observe(time.perf_counter() - started)
        response: dict[str, Any] = {"data": data}
        if masked:
            response["errors"] = [error.formatted for error in masked]
        return with_default_codes(response)

    async def _resolve_root(
        self, root: _RootField, context: Any, coerced: Any, execution: _Execution
    ) -> Any:
        path: _Path = (None, root.key)
        try:
            raw_args = get_argument_values(root.graphql_field, root.nodes[0], coerced)
            # a stand-in for graphql-core's ResolveInfo: vetted resolvers read only the
            # context from it (tests/unit/test_compiled_plan_internals.py pins that)
            raw_info: Any = _RawInfo(context)
            info = self.schema.config.info_class(_raw_info=raw_info, _field=root.field)
            execution.info = info
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
            completed = root.complete(value, execution, path)
            if isawaitable(completed):
                completed = await drive(cast(Coroutine[Any, Any, Any], completed))
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
    if len(roots) > 1 and any(root.non_null for root in roots):
        # a non-null root nulls the whole answer where it fails; graphql-core runs roots
        # concurrently and plans one after another, so which errors come with it may differ
        return None
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
    for argument in nodes[0].arguments or ():
        if not isinstance(_named(graphql_field.args[argument.name.value].type), GraphQLScalarType):
            return None  # inputs and enums need strawberry's conversion rules: general path
    compiled = _completer(schema, graphql_field.type, nodes, query_type.name, name)
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
) -> _Compiled | None:
    """graphql-core's complete_value for one field's type, specialised at compile time."""
    if isinstance(type_, GraphQLNonNull):
        return _non_null_completer(schema, type_, nodes, parent_name, field_name)
    if isinstance(type_, GraphQLList):
        return _list_completer(schema, type_, nodes, parent_name, field_name)
    if isinstance(type_, GraphQLScalarType | GraphQLEnumType):
        return _leaf_completer(type_, nodes)
    if isinstance(type_, GraphQLObjectType):
        return _object_completer(schema, type_, nodes)
    return None  # interfaces and unions: the general path resolves their type


def _non_null_completer(
    schema: strawberry.Schema,
    type_: GraphQLNonNull[Any],
    nodes: tuple[FieldNode, ...],
    parent_name: str,
    field_name: str,
) -> _Compiled | None:
    compiled = _completer(schema, type_.of_type, nodes, parent_name, field_name)
    if compiled is None:
        return None
    inner, inner_async = compiled
    message = f"Cannot return null for non-nullable field {parent_name}.{field_name}."

    def non_null(value: Any, execution: _Execution, path: _Path) -> Any:
        completed = inner(value, execution, path)
        if inner_async and isawaitable(completed):
            return completed  # `fill`: it never answers None
        if completed is None:
            raise TypeError(message)
        return completed

    return non_null, inner_async


def _list_completer(
    schema: strawberry.Schema,
    type_: GraphQLList[Any],
    nodes: tuple[FieldNode, ...],
    parent_name: str,
    field_name: str,
) -> _Compiled | None:
    compiled = _completer(schema, type_.of_type, nodes, parent_name, field_name)
    if compiled is None:
        return None
    item, item_async = compiled
    item_non_null = isinstance(type_.of_type, GraphQLNonNull)
    node_list = list(nodes)
    not_iterable = (
        f"Expected Iterable, but did not find one for field '{parent_name}.{field_name}'."
    )

    def item_failed(raw: Exception, execution: _Execution, here: _Path) -> None:
        error = located_error(raw, node_list, _as_list(here))
        if item_non_null:
            raise error from None
        execution.errors.append(error)

    def complete_list(value: Any, execution: _Execution, path: _Path) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None:
            return None
        if not is_iterable(value):
            raise GraphQLError(not_iterable)
        out: list[Any] = []
        if not item_async:
            for index, element in enumerate(value):
                try:
                    out.append(item(element, execution, (path, index)))
                except Exception as raw:
                    item_failed(raw, execution, (path, index))
                    out.append(None)
            return out
        at: list[int] = []
        pending: list[Coroutine[Any, Any, Any]] = []
        try:
            for index, element in enumerate(value):
                here = (path, index)
                try:
                    completed = item(element, execution, here)
                except Exception as raw:
                    item_failed(raw, execution, here)
                    completed = None
                if isawaitable(completed):
                    at.append(index)
                    pending.append(cast(Coroutine[Any, Any, Any], completed))
                    completed = None
                out.append(completed)
        except BaseException:
            close_unstarted(pending)
            raise
        if not pending:
            return out

        def fail(index: int, raw: Exception) -> None:
            item_failed(raw, execution, (path, at[index]))

        return fill(out, at, pending, fail)

    return complete_list, item_async


def _leaf_completer(
    type_: GraphQLScalarType | GraphQLEnumType, nodes: tuple[FieldNode, ...]
) -> _Compiled | None:
    if any(node.selection_set for node in nodes):
        return None
    coerce = type_.coerce_output_value

    def complete_leaf(value: Any, execution: _Execution, path: _Path) -> Any:
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

    return complete_leaf, False


def _object_completer(
    schema: strawberry.Schema, type_: GraphQLObjectType, nodes: tuple[FieldNode, ...]
) -> _Compiled | None:
    if type_.is_type_of is not None:
        return None
    selections = [s for node in nodes if node.selection_set for s in node.selection_set.selections]
    grouped = _group(selections)
    if not grouped:
        return None
    runners: list[tuple[str, Callable[..., Any], bool, _Failed]] = []
    for key, field_nodes in grouped.items():
        runner = _field_runner(schema, type_, key, field_nodes)
        if runner is None:
            return None
        runners.append((key, *runner))
    if not any(is_async for _, _, is_async, _ in runners):
        plain = [(key, run) for key, run, _, _ in runners]

        def complete_plain(value: Any, execution: _Execution, path: _Path) -> Any:
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                return None
            return {key: run(value, execution, path) for key, run in plain}

        return complete_plain, False

    def complete_object(value: Any, execution: _Execution, path: _Path) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        out: dict[str, Any] = {}
        keys: list[str] = []
        pending: list[Coroutine[Any, Any, Any]] = []
        failed: list[_Failed] = []
        try:
            for key, run, is_async, field_failed in runners:
                completed = run(value, execution, path)
                if is_async and isawaitable(completed):
                    keys.append(key)
                    pending.append(cast(Coroutine[Any, Any, Any], completed))
                    failed.append(field_failed)
                    completed = None
                out[key] = completed
        except BaseException:
            close_unstarted(pending)
            raise
        if not pending:
            return out

        def fail(index: int, raw: Exception) -> None:
            failed[index](raw, execution, (path, keys[index]))

        return fill(out, keys, pending, fail)

    return complete_object, True


def _never_fails(raw: Exception, execution: _Execution, here: _Path) -> None:
    raise AssertionError("__typename cannot fail")  # pragma: no cover


def _field_runner(
    schema: strawberry.Schema,
    parent: GraphQLObjectType,
    key: str,
    nodes: tuple[FieldNode, ...],
) -> tuple[Callable[[Any, _Execution, _Path], Any], bool, _Failed] | None:
    """(run, may return an awaitable, failed): one field of an object. `run` handles the
    errors it raises itself; an awaitable it returns leaves them to `failed`, called by
    `fill` (the field's error boundary)."""
    name = nodes[0].name.value
    if any(node.arguments for node in nodes):
        return None
    if name == "__typename":
        type_name = parent.name
        return (lambda _value, _execution, _path: type_name), False, _never_fails
    if name.startswith("__"):
        return None
    graphql_field = parent.fields[name]
    getter = _getter(graphql_field)
    compiled = _completer(schema, graphql_field.type, nodes, parent.name, name)
    if getter is None or compiled is None:
        return None
    get, get_async = getter
    complete, complete_async = compiled
    non_null = isinstance(graphql_field.type, GraphQLNonNull)
    node_list = list(nodes)

    def failed(raw: Exception, execution: _Execution, here: _Path) -> None:
        error = located_error(raw, node_list, _as_list(here))
        if non_null:
            raise error from None
        execution.errors.append(error)

    if get_async:

        async def run_async(source: Any, execution: _Execution, path: _Path) -> Any:
            here = (path, key)
            completed = complete(await get(source, execution), execution, here)
            if complete_async and isawaitable(completed):
                completed = await completed
            return completed

        return run_async, True, failed

    def run(source: Any, execution: _Execution, path: _Path) -> Any:
        here = (path, key)
        try:
            return complete(get(source, execution), execution, here)
        except Exception as raw:
            failed(raw, execution, here)
            return None

    return run, complete_async, failed


def _getter(
    graphql_field: GraphQLField,
) -> tuple[Callable[[Any, _Execution], Any], bool] | None:
    """(get, is async): how strawberry reads this field — its resolver, given `self` and
    `info` where it takes them, or the attribute."""
    field = graphql_field.extensions.get(_BACKREF)
    if not isinstance(field, StrawberryField) or field.extensions or field.arguments:
        return None
    resolver = field.base_resolver
    if resolver is None:
        python_name = field.python_name
        return (lambda source, _execution: getattr(source, python_name)), False
    others = {p for p in resolver.reserved_parameters.values() if p is not None}
    info = resolver.info_parameter
    if others - {resolver.self_parameter, info}:
        return None
    function = cast(Callable[..., Any], resolver.wrapped_func)
    if resolver.self_parameter is None and info is None:
        return (lambda _source, _execution: function()), resolver.is_async
    if resolver.self_parameter is None:
        return None  # info without self: not a shape this schema has
    if info is None:
        return (lambda source, _execution: function(source)), resolver.is_async
    info_name = info.name
    return (
        lambda source, execution: function(source, **{info_name: execution.info})
    ), resolver.is_async
