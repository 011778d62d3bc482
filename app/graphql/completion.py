"""Completion: the closures a compiled plan is made of (app/graphql/compiled.py). For each
field below a root, a completer that serialises its value with graphql-core's own scalar and
enum types, descends into lists and objects, runs async resolvers in lockstep
(app/graphql/lockstep.py), and locates, records or propagates errors as graphql-core does."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from enum import Enum
from inspect import isawaitable
from operator import attrgetter
from types import CoroutineType
from typing import Any, cast

import strawberry
from graphql import (
    FieldNode,
    GraphQLBoolean,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLString,
    located_error,
)
from graphql.pyutils import Undefined, inspect, is_iterable
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from strawberry.types.field import StrawberryField

from app.graphql.lockstep import Waiting, close_unstarted, fill, resumed, step

BACKREF = "strawberry-definition"  # where strawberry keeps a GraphQL field's definition

# A response path as graphql-core's Path: (parent, key), None above the root. Built for every
# field and turned into a list only for an error.
Path = tuple[Any, str | int] | None


class Execution:
    """One run of a plan: the errors so far and the `Info` resolvers below the root get."""

    __slots__ = ("errors", "info")

    def __init__(self, info: Any) -> None:
        self.errors: list[GraphQLError] = []
        self.info = info


# (value, execution, path) -> JSON value, or an awaitable of it where the type below has
# async resolvers; raises to propagate a null into a non-null parent
Complete = Callable[[Any, Execution, Path], Any]
# a completer and whether it may return an awaitable
Compiled = tuple[Complete, bool]
# (error, execution, path of the field or item) -> None, or raises to null the parent
Failed = Callable[[Exception, Execution, Path], None]

# Built-in scalars whose coercion returns a value of this exact type unchanged (graphql-core's
# serialize_string/_id/_boolean; serialize_int too, within 32 bits): a leaf holding one is
# answered as it is, without the calls of the general completion (most of a page's fields).
# tests/unit/test_compiled_plan_internals.py pins each of these.
PASS_THROUGH: dict[GraphQLScalarType, type] = {
    GraphQLString: str,
    GraphQLID: str,
    GraphQLBoolean: bool,
    GraphQLInt: int,
}


def as_list(path: Path) -> list[str | int]:
    keys: list[str | int] = []
    while path is not None:
        path, key = path
        keys.append(key)
    keys.reverse()
    return keys


def named(type_: Any) -> Any:
    while isinstance(type_, GraphQLNonNull | GraphQLList):
        type_ = type_.of_type
    return type_


def group(selections: Any) -> dict[str, tuple[FieldNode, ...]] | None:
    """Fields by response key, in document order; None if anything but plain fields."""
    grouped: dict[str, list[FieldNode]] = {}
    for selection in selections:
        if not isinstance(selection, FieldNode) or selection.directives:
            return None
        key = (selection.alias or selection.name).value
        grouped.setdefault(key, []).append(selection)
    return {key: tuple(nodes) for key, nodes in grouped.items()}


def completer(
    schema: strawberry.Schema,
    type_: GraphQLOutputType,
    nodes: tuple[FieldNode, ...],
    parent_name: str,
    field_name: str,
) -> Compiled | None:
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
) -> Compiled | None:
    compiled = completer(schema, type_.of_type, nodes, parent_name, field_name)
    if compiled is None:
        return None
    inner, inner_async = compiled
    message = f"Cannot return null for non-nullable field {parent_name}.{field_name}."

    def non_null(value: Any, execution: Execution, path: Path) -> Any:
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
) -> Compiled | None:
    compiled = completer(schema, type_.of_type, nodes, parent_name, field_name)
    if compiled is None:
        return None
    item, item_async = compiled
    item_non_null = isinstance(type_.of_type, GraphQLNonNull)
    node_list = list(nodes)
    not_iterable = (
        f"Expected Iterable, but did not find one for field '{parent_name}.{field_name}'."
    )

    def item_failed(raw: Exception, execution: Execution, here: Path) -> None:
        error = located_error(raw, node_list, as_list(here))
        if item_non_null:
            raise error from None
        execution.errors.append(error)

    def complete_list(value: Any, execution: Execution, path: Path) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None:
            return None
        if value.__class__ is not list and not is_iterable(value):  # (an ABC check)
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
        pending: list[Waiting] = []
        try:
            for index, element in enumerate(value):
                here = (path, index)
                try:
                    completed = item(element, execution, here)
                    if isawaitable(completed):
                        completed = step(cast("Coroutine[Any, Any, Any]", completed))
                except Exception as raw:
                    item_failed(raw, execution, here)
                    completed = None
                if type(completed) is Waiting:
                    at.append(index)
                    pending.append(completed)
                    completed = None
                out.append(completed)
        except BaseException:
            close_unstarted([waiting.coroutine for waiting in pending])
            raise
        if not pending:
            return out

        def fail(index: int, raw: Exception) -> None:
            item_failed(raw, execution, (path, at[index]))

        return fill(out, at, pending, fail)

    return complete_list, item_async


def _leaf_completer(
    type_: GraphQLScalarType | GraphQLEnumType, nodes: tuple[FieldNode, ...]
) -> Compiled | None:
    if any(node.selection_set for node in nodes):
        return None
    coerce = type_.coerce_output_value

    def complete_leaf(value: Any, execution: Execution, path: Path) -> Any:
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
) -> Compiled | None:
    if type_.is_type_of is not None:
        return None
    selections = [s for node in nodes if node.selection_set for s in node.selection_set.selections]
    grouped = group(selections)
    if not grouped:
        return None
    runners: list[tuple[str, Callable[..., Any], bool, Failed]] = []
    for key, field_nodes in grouped.items():
        runner = _field_runner(schema, type_, key, field_nodes)
        if runner is None:
            return None
        runners.append((key, *runner))
    if not any(may_wait for _, _, may_wait, _ in runners):
        plain = [(key, run) for key, run, _, _ in runners]

        def complete_plain(value: Any, execution: Execution, path: Path) -> Any:
            if isinstance(value, Exception):
                raise value
            if value is None or value is Undefined:
                return None
            return {key: run(value, execution, path) for key, run in plain}

        return complete_plain, False

    def complete_object(value: Any, execution: Execution, path: Path) -> Any:
        if isinstance(value, Exception):
            raise value
        if value is None or value is Undefined:
            return None
        out: dict[str, Any] = {}
        keys: list[str] = []
        pending: list[Waiting] = []
        failed: list[Failed] = []
        try:
            for key, run, may_wait, field_failed in runners:
                completed = run(value, execution, path)  # (its first step taken)
                if may_wait and completed.__class__ is Waiting:
                    keys.append(key)
                    pending.append(completed)
                    failed.append(field_failed)
                    completed = None
                out[key] = completed
        except BaseException:
            close_unstarted([waiting.coroutine for waiting in pending])
            raise
        if not pending:
            return out

        def fail(index: int, raw: Exception) -> None:
            failed[index](raw, execution, (path, keys[index]))

        return fill(out, keys, pending, fail)

    return complete_object, True


def _never_fails(raw: Exception, execution: Execution, here: Path) -> None:
    raise AssertionError("__typename cannot fail")  # pragma: no cover


def _field_runner(
    schema: strawberry.Schema,
    parent: GraphQLObjectType,
    key: str,
    nodes: tuple[FieldNode, ...],
) -> tuple[Callable[[Any, Execution, Path], Any], bool, Failed] | None:
    """(run, may wait, failed): one field of an object. `run` handles the errors it
    raises itself, and answers the completed value or — where the field may wait — a
    `Waiting` whose errors are left to `failed`, called by `fill` (the field's error
    boundary)."""
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
    compiled = completer(schema, graphql_field.type, nodes, parent.name, name)
    if getter is None or compiled is None:
        return None
    get, get_async, read = getter
    complete, complete_async = compiled
    non_null = isinstance(graphql_field.type, GraphQLNonNull)
    node_list = list(nodes)

    def failed(raw: Exception, execution: Execution, here: Path) -> None:
        error = located_error(raw, node_list, as_list(here))
        if non_null:
            raise error from None
        execution.errors.append(error)

    leaf = graphql_field.type.of_type if non_null else graphql_field.type  # not in a list
    if read is not None and not get_async and isinstance(leaf, GraphQLScalarType | GraphQLEnumType):
        return _leaf_runner(read, leaf, complete, key, failed), False, failed

    if get_async:

        def run_async(source: Any, execution: Execution, path: Path) -> Any:
            """The resolver's first step taken here: its completed value when it answers
            at once (a page's order answering from rows fetched with the page), else a
            `Waiting` that finishes it. Raises only what `failed` raises on."""
            here = (path, key)
            coroutine = get(source, execution)
            try:
                waits_for = coroutine.send(None)
            except StopIteration as done:
                try:
                    completed = complete(done.value, execution, here)
                    if complete_async and completed.__class__ is CoroutineType:
                        return step(completed)
                    return completed
                except Exception as raw:
                    failed(raw, execution, here)
                    return None
            except Exception as raw:
                failed(raw, execution, here)
                return None
            return step(finish(coroutine, waits_for, execution, here))

        async def finish(
            coroutine: Coroutine[Any, Any, Any], waits_for: Any, execution: Execution, here: Path
        ) -> Any:
            completed = complete(await resumed(coroutine, waits_for), execution, here)
            if complete_async and isawaitable(completed):
                completed = await completed
            return completed

        return run_async, True, failed

    def run(source: Any, execution: Execution, path: Path) -> Any:
        here = (path, key)
        try:
            completed = complete(get(source, execution), execution, here)
            if complete_async and completed.__class__ is CoroutineType:
                return step(completed)
            return completed
        except Exception as raw:
            failed(raw, execution, here)
            return None

    return run, complete_async, failed


GENERAL = object()  # a leaf's quick answer declined: the general completion words it


def _quick_answer(leaf: GraphQLScalarType | GraphQLEnumType) -> Callable[[Any], Any]:
    """What a leaf answers for a value without the general completion, or GENERAL: for
    String, Boolean and Int a value of exactly that type (an Int within 32 bits) as it is;
    for other scalars and enums (dates, times, statuses) its coercion, unless the value is
    None, an error returned as a value, or coerces to nothing."""
    passes = PASS_THROUGH.get(leaf) if isinstance(leaf, GraphQLScalarType) else None
    if passes is int:
        return lambda v: (
            v if type(v) is int and GRAPHQL_MIN_INT <= v <= GRAPHQL_MAX_INT else GENERAL
        )
    if passes is not None:
        return lambda v: v if type(v) is passes else GENERAL
    coerce = leaf.coerce_output_value
    names = _member_names(leaf)
    if names is not None:
        # A status or a role: the member's name, as its coercion gave it at compile time.
        member_of = next(iter(names)).__class__
        return lambda v: names[v] if type(v) is member_of else GENERAL

    def coerced(value: Any) -> Any:
        if value is None or value is Undefined or isinstance(value, Exception):
            return GENERAL
        answer = coerce(value)
        return GENERAL if answer is None or answer is Undefined else answer

    return coerced


def _member_names(leaf: GraphQLScalarType | GraphQLEnumType) -> dict[Any, str] | None:
    """For strawberry's enum types (resolvers return members of the Python enum it wraps):
    each member's GraphQL name, from the type's own coercion, asked once per member (it is a
    pure function, and a linear search over the values per call). None for anything else."""
    wrapped = getattr(leaf, "wrapped_cls", None)
    if not isinstance(leaf, GraphQLEnumType) or not isinstance(wrapped, type):
        return None
    if not issubclass(wrapped, Enum) or not len(wrapped):
        return None
    names = {member: leaf.coerce_output_value(member) for member in wrapped}
    if not all(isinstance(name, str) for name in names.values()):
        return None
    return names


def _leaf_runner(
    read: Callable[[Any], Any],
    leaf: GraphQLScalarType | GraphQLEnumType,
    complete: Complete,
    key: str,
    failed: Failed,
) -> Callable[[Any, Execution, Path], Any]:
    """`run` for a leaf read without `info`: its quick answer (`_quick_answer`), else the
    general completion (which calls the same pure coercion again to word what went
    wrong). String, ID and Boolean test their value's type in `run` itself: most of a
    page's leaves, and a call fewer each."""
    passes = PASS_THROUGH.get(leaf) if isinstance(leaf, GraphQLScalarType) else None
    if passes is str or passes is bool:

        def run_passing(source: Any, execution: Execution, path: Path) -> Any:
            try:
                value = read(source)
                if value.__class__ is passes:
                    return value
                return complete(value, execution, (path, key))
            except Exception as raw:
                failed(raw, execution, (path, key))
                return None

        return run_passing
    quick = _quick_answer(leaf)

    def run(source: Any, execution: Execution, path: Path) -> Any:
        try:
            value = read(source)
            answer = quick(value)
            if answer is not GENERAL:
                return answer
            return complete(value, execution, (path, key))
        except Exception as raw:
            failed(raw, execution, (path, key))
            return None

    return run


Getter = tuple[Callable[[Any, Execution], Any], bool, Callable[[Any], Any] | None]


def _getter(graphql_field: GraphQLField) -> Getter | None:
    """(get, is async, read): how strawberry reads this field — its resolver, given `self`
    and `info` where it takes them, or the attribute; `read(source)` does the same in one
    call where no `info` is needed."""
    field = graphql_field.extensions.get(BACKREF)
    if not isinstance(field, StrawberryField) or field.extensions or field.arguments:
        return None
    resolver = field.base_resolver
    if resolver is None:
        read = attrgetter(field.python_name)
        return (lambda source, _execution: read(source)), False, read
    others = {p for p in resolver.reserved_parameters.values() if p is not None}
    info = resolver.info_parameter
    if others - {resolver.self_parameter, info}:
        return None
    function = cast(Callable[..., Any], resolver.wrapped_func)
    if resolver.self_parameter is None and info is None:
        return (lambda _source, _execution: function()), resolver.is_async, None
    if resolver.self_parameter is None:
        return None  # info without self: not a shape this schema has
    if info is None:
        return (lambda source, _execution: function(source)), resolver.is_async, function
    info_name = info.name
    return (
        (lambda source, execution: function(source, **{info_name: execution.info})),
        resolver.is_async,
        None,
    )
