"""What the compiled-plan fast path borrows from strawberry and graphql-core, pinned.

app/graphql/compiled.py (and the plan path of app/graphql/endpoint.py) calls strawberry's
resolvers without strawberry's executor, and re-states a few steps of graphql-core's. It
therefore relies on private or semi-private behaviour of both libraries. Each test below
pins ONE such assumption, on a tiny schema of its own where it can (fast, no database) and
on the app's schema where the assumption is about the app. Its docstring names the place
in compiled.py / endpoint.py that depends on it: when an upgrade breaks a test here, fix
that place (or drop the fast path), never the test alone.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import enum
import inspect
import json
import textwrap
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, date, datetime
from types import SimpleNamespace
from typing import Any, NewType, cast

import pytest
import strawberry
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLError,
    GraphQLField,
    GraphQLInt,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    located_error,
    parse,
)
from graphql.execution import executor as graphql_executor
from graphql.execution.values import get_argument_values, get_variable_values
from graphql.pyutils import Undefined, is_iterable
from graphql.pyutils import inspect as graphql_inspect
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from graphql.validation import specified_rules
from starlette.requests import Request
from starlette.responses import Response
from strawberry.asgi import GraphQL
from strawberry.extensions import SchemaExtension
from strawberry.http import process_result
from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.permission import BasePermission
from strawberry.schema import schema as strawberry_schema_module
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema_converter import (
    CustomGraphQLEnumType,
    GraphQLCoreConverter,
    get_arguments,
)
from strawberry.types import ExecutionResult
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import get_object_definition
from strawberry.types.field import StrawberryField
from strawberry.types.fields.resolver import (
    CLS_PARAMSPEC,
    INFO_PARAMSPEC,
    PARENT_PARAMSPEC,
    ROOT_PARAMSPEC,
    SELF_PARAMSPEC,
)
from strawberry.types.nodes import SelectedField

from app.graphql import compiled
from app.graphql.common import fields_at
from app.graphql.compiled import VETTED_ROOT_FIELDS, _RawInfo, compile_plan
from app.graphql.completion import BACKREF as _BACKREF
from app.graphql.completion import GENERAL, PASS_THROUGH, _quick_answer
from app.graphql.metrics import MetricsExtension
from app.main import OrdersGraphQL
from app.orders.models import OrderStatus
from app.schema import RequestPipeline, parse_document, validate_cached
from app.schema import schema as app_schema

# -- a tiny schema of the tests' own --------------------------------------------------------


@strawberry.enum
class Shade(enum.Enum):
    LIGHT = "light"
    DARK = "dark"


Blank = NewType("Blank", str)
BLANK = strawberry.scalar(
    name="Blank",
    serialize=lambda _value: None,  # a broken serializer: graphql-core words the error
    parse_value=str,
)


class Deny(BasePermission):
    message = "No."

    def has_permission(self, source: Any, info: strawberry.Info, **kwargs: Any) -> bool:
        return False


@strawberry.interface
class Named:
    name: str


@strawberry.type
class Labelled(Named):
    pass


@strawberry.type
class Box:
    some_value: int = 3

    @strawberry.field
    def shade(self) -> Shade:
        return Shade.DARK

    @strawberry.field
    @staticmethod
    def constant() -> int:
        return 7

    @strawberry.field
    @classmethod
    def kind(cls) -> str:
        return cls.__name__

    @strawberry.field
    def with_info(self, info: strawberry.Info) -> str:
        return str(info.field_name)

    @strawberry.field
    def with_root(root) -> int:  # `root`, strawberry's reserved name, in place of self
        return int(root.some_value)

    @strawberry.field
    def with_parent(self, parent: strawberry.Parent[Any]) -> int:
        return int(parent.some_value)

    @strawberry.field
    async def later(self) -> int:
        return 1

    @strawberry.field
    def sized(self, n: int) -> int:
        return n

    @strawberry.field(permission_classes=[Deny])  # type: ignore[untyped-decorator]
    def guarded(self) -> int:
        return 1

    # for the comparisons with graphql-core's own words
    @strawberry.field
    def blank(self) -> Blank:
        return Blank("x")

    @strawberry.field
    def absent(self) -> int:
        return None  # type: ignore[return-value]

    @strawberry.field
    def not_a_list(self) -> list[int] | None:
        return 5  # type: ignore[return-value]

    @strawberry.field
    def undefined_value(self) -> str | None:
        return Undefined  # type: ignore[return-value]

    # values the pass-through leaves (completion.PASS_THROUGH) hand to the general coercion
    @strawberry.field
    def too_big(self) -> int | None:
        return 2**31

    @strawberry.field
    def number_as_text(self) -> str:
        return 5  # type: ignore[return-value]

    @strawberry.field
    def flag_from_number(self) -> bool | None:
        return 2  # type: ignore[return-value]


@strawberry.type
class TinyQuery:
    # named like vetted root fields: compile_plan only compiles below those
    @strawberry.field
    async def order(
        self, info: strawberry.Info, some_code: str, limit: int = 5, note: str | None = None
    ) -> Box | None:
        assert info.context == {"request": "tiny"}
        return Box()

    @strawberry.field
    async def me(self, info: strawberry.Info) -> Labelled | None:
        return Labelled(name="l")


@pytest.fixture(scope="module")
def tiny() -> Iterator[strawberry.Schema]:
    yield strawberry.Schema(query=TinyQuery, config=StrawberryConfig(scalar_map={Blank: BLANK}))


def _field(schema: strawberry.Schema, type_name: str, name: str) -> GraphQLField:
    type_ = schema._schema.get_type(type_name)
    assert isinstance(type_, GraphQLObjectType)
    field: GraphQLField = type_.fields[name]
    return field


def _definition(schema: strawberry.Schema, type_name: str, name: str) -> StrawberryField:
    field = _field(schema, type_name, name).extensions[_BACKREF]
    assert isinstance(field, StrawberryField)
    return field


def _operation(query: str) -> tuple[DocumentNode, OperationDefinitionNode, FieldNode]:
    document = parse(query)
    operation = document.definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    root = operation.selection_set.selections[0]
    assert isinstance(root, FieldNode)
    return document, operation, root


# -- strawberry: the schema and its backrefs ------------------------------------------------


def test_a_strawberry_schema_holds_its_graphql_core_schema_in__schema(
    tiny: strawberry.Schema,
) -> None:
    """`schema._schema`: compile_plan reads `schema._schema.query_type`, Plan.run coerces
    variables against it, endpoint._plan_for validates against it."""
    assert isinstance(tiny._schema, GraphQLSchema)
    assert tiny._schema._strawberry_schema is tiny  # type: ignore[attr-defined]
    assert tiny._schema.query_type is not None
    assert tiny._schema.query_type.name == "TinyQuery"
    assert isinstance(app_schema._schema, GraphQLSchema)
    assert app_schema._schema.query_type is not None
    assert app_schema._schema.query_type.name == "Query"


def test_graphql_fields_point_back_at_their_strawberry_field(tiny: strawberry.Schema) -> None:
    """`_BACKREF` ("strawberry-definition") in GraphQLField.extensions: _root_field and
    _getter find the StrawberryField (resolver, arguments, extensions) through it."""
    assert _BACKREF == GraphQLCoreConverter.DEFINITION_BACKREF == "strawberry-definition"
    for type_name, cls in (("Box", Box), ("TinyQuery", TinyQuery)):
        definition = get_object_definition(cls, strict=True)
        by_python_name = {field.python_name: field for field in definition.fields}
        type_ = tiny._schema.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType)
        for name, graphql_field in type_.fields.items():
            backref = graphql_field.extensions[_BACKREF]
            assert isinstance(backref, StrawberryField), name
            assert backref is by_python_name[backref.python_name], name


def test_base_resolver_is_none_for_attributes_and_set_for_resolver_methods(
    tiny: strawberry.Schema,
) -> None:
    """`StrawberryField.base_resolver`: _getter reads attributes when it is None and calls
    the resolver otherwise; _root_field requires one (with an info parameter)."""
    assert _definition(tiny, "Box", "someValue").base_resolver is None
    assert _definition(tiny, "Box", "shade").base_resolver is not None
    assert _definition(tiny, "TinyQuery", "order").base_resolver is not None


def test_attribute_fields_are_read_with_getattr_of_their_python_name(
    tiny: strawberry.Schema,
) -> None:
    """`StrawberryField.python_name` and `StrawberryConfig.default_resolver`: _getter reads
    a resolver-less field as `getattr(source, field.python_name)`, which is only what
    strawberry does while the configured default resolver is `getattr`."""
    field = _definition(tiny, "Box", "someValue")
    assert field.python_name == "some_value"  # not the GraphQL name
    assert tiny.config.default_resolver is getattr
    assert app_schema.config.default_resolver is getattr
    box = Box(some_value=42)
    assert field.get_result(box, info=None, args=[], kwargs={}) == 42
    assert getattr(box, field.python_name) == 42


def test_wrapped_func_is_the_undecorated_function_called_with_self_and_keywords(
    tiny: strawberry.Schema,
) -> None:
    """`StrawberryResolver.wrapped_func`: Plan._resolve_root calls it as
    `wrapped_func(None, **kwargs)` and _getter as `wrapped_func(source)` (or
    `wrapped_func()` without a self parameter) - what strawberry's own call,
    `base_resolver(*args, **kwargs)`, does with the source as the only positional."""
    root = _definition(tiny, "TinyQuery", "order").base_resolver
    assert root is not None
    assert inspect.iscoroutinefunction(root.wrapped_func)
    assert list(inspect.signature(root.wrapped_func).parameters) == [
        "self",
        "info",
        "some_code",
        "limit",
        "note",
    ]
    field = _definition(tiny, "TinyQuery", "order")
    info = strawberry.Info(_raw_info=_RawInfo({"request": "tiny"}), _field=field)  # type: ignore[arg-type]
    call = cast(Callable[..., Any], root.wrapped_func)
    value = asyncio.run(call(None, info=info, some_code="c", limit=1, note=None))
    assert isinstance(value, Box)

    shade = _definition(tiny, "Box", "shade")
    assert shade.base_resolver is not None
    box = Box()
    assert cast(Callable[..., Any], shade.base_resolver.wrapped_func)(box) is Shade.DARK
    assert shade.get_result(box, info=None, args=[box], kwargs={}) is Shade.DARK

    constant = _definition(tiny, "Box", "constant").base_resolver
    assert constant is not None and constant.self_parameter is None
    assert cast(Callable[..., Any], constant.wrapped_func)() == 7  # no self to pass


def test_reserved_parameters_name_every_special_parameter(tiny: strawberry.Schema) -> None:
    """`StrawberryResolver.reserved_parameters` and `.self_parameter`, `.info_parameter`,
    `.root_parameter`, `.parent_parameter`: _getter refuses a resolver with any reserved
    parameter but `self` (so cls, root, info and parent must all be listed there), and
    _root_field requires `info` and refuses `root` and `parent`."""
    expected = {
        "shade": {"self"},
        "constant": set(),
        "kind": {"cls"},
        "withInfo": {"self", "info"},
        "withRoot": {"root"},
        "withParent": {"self", "parent"},
    }
    for name, reserved in expected.items():
        resolver = _definition(tiny, "Box", name).base_resolver
        assert resolver is not None, name
        parameters = resolver.reserved_parameters
        assert set(parameters) >= {
            SELF_PARAMSPEC,
            CLS_PARAMSPEC,
            ROOT_PARAMSPEC,
            INFO_PARAMSPEC,
            PARENT_PARAMSPEC,
        }
        found = {p.name for p in parameters.values() if p is not None}
        assert found == reserved, name
        assert resolver.self_parameter is parameters[SELF_PARAMSPEC]
        assert resolver.info_parameter is parameters[INFO_PARAMSPEC]
        assert resolver.root_parameter is parameters[ROOT_PARAMSPEC]
        assert resolver.parent_parameter is parameters[PARENT_PARAMSPEC]
    root = _definition(tiny, "TinyQuery", "order").base_resolver
    assert root is not None and root.info_parameter is not None
    assert root.info_parameter.name == "info"
    assert root.self_parameter is not None
    assert root.root_parameter is None and root.parent_parameter is None


def test_is_async_tells_coroutine_resolvers_apart(tiny: strawberry.Schema) -> None:
    """`StrawberryResolver.is_async`: Plan._resolve_root awaits a root resolver's result
    only when it is set; _getter refuses async resolvers below the root."""
    later = _definition(tiny, "Box", "later")
    shade = _definition(tiny, "Box", "shade")
    assert later.base_resolver is not None and later.base_resolver.is_async
    assert shade.base_resolver is not None and not shade.base_resolver.is_async
    # without field extensions strawberry decides the same way for the whole field
    assert later.is_async and not shade.is_async


def test_arguments_are_the_resolvers_non_reserved_parameters(tiny: strawberry.Schema) -> None:
    """`StrawberryField.arguments`: _getter refuses a field below the root that has any;
    Plan._resolve_root hands them to convert_arguments."""
    assert _definition(tiny, "Box", "shade").arguments == []
    assert _definition(tiny, "Box", "withInfo").arguments == []
    assert [a.python_name for a in _definition(tiny, "Box", "sized").arguments] == ["n"]
    order = _definition(tiny, "TinyQuery", "order")
    assert [a.python_name for a in order.arguments] == ["some_code", "limit", "note"]
    assert list(_field(tiny, "TinyQuery", "order").args) == ["someCode", "limit", "note"]


def test_permission_classes_and_field_extensions_show_in_field_extensions(
    tiny: strawberry.Schema,
) -> None:
    """`StrawberryField.extensions`: _root_field and _getter refuse a field whose list is
    not empty - permission classes live there, and the plan would skip them."""
    assert _definition(tiny, "Box", "guarded").extensions
    assert not _definition(tiny, "Box", "shade").extensions
    assert not _definition(tiny, "Box", "someValue").extensions
    compilable = 'query { order(someCode: "c") { shade } }'
    assert compile_plan(tiny, parse(compilable), None) is not None
    assert compile_plan(tiny, parse(compilable.replace("shade", "guarded")), None) is None


# -- strawberry: arguments, Info and the call convention -----------------------------------


def test_convert_arguments_turns_raw_arguments_into_the_resolvers_keywords(
    tiny: strawberry.Schema,
) -> None:
    """`strawberry.types.arguments.convert_arguments(value, arguments, scalar_registry=,
    config=, info=)` with `schema.schema_converter.scalar_registry` and `schema.config`:
    Plan._resolve_root turns graphql-core's raw arguments (GraphQL names) into the
    resolver's keyword arguments (Python names) with it, as strawberry's get_arguments does."""
    parameters = inspect.signature(convert_arguments).parameters
    assert list(parameters) == ["value", "arguments", "scalar_registry", "config", "info"]
    assert tiny.schema_converter.config is tiny.config
    assert isinstance(tiny.schema_converter.scalar_registry, dict)
    field = _definition(tiny, "TinyQuery", "order")
    info = strawberry.Info(_raw_info=_RawInfo(None), _field=field)  # type: ignore[arg-type]
    converted = convert_arguments(
        {"someCode": "AB-CD", "limit": 2, "note": None},
        field.arguments,
        scalar_registry=tiny.schema_converter.scalar_registry,
        config=tiny.config,
        info=info,
    )
    assert converted == {"some_code": "AB-CD", "limit": 2, "note": None}
    absent = convert_arguments(
        {"someCode": "x"},
        field.arguments,
        scalar_registry=tiny.schema_converter.scalar_registry,
        config=tiny.config,
        info=info,
    )
    assert absent == {"some_code": "x"}  # an argument left out is left to the default


def test_strawberry_passes_the_source_as_self_and_info_by_its_parameter_name(
    tiny: strawberry.Schema,
) -> None:
    """strawberry's `get_arguments` (schema_converter): the source goes in positionally as
    `self` and `info` by keyword under `info_parameter.name` - the call Plan._resolve_root
    repeats as `wrapped_func(None, **kwargs)` with `kwargs[info_parameter.name] = info`."""
    field = _definition(tiny, "TinyQuery", "order")
    info = strawberry.Info(_raw_info=_RawInfo(None), _field=field)  # type: ignore[arg-type]
    source = object()
    args, kwargs = get_arguments(
        field=field,
        source=source,
        info=info,
        kwargs={"someCode": "x", "limit": 5, "note": None},
        config=tiny.config,
        scalar_registry=tiny.schema_converter.scalar_registry,
    )
    assert args == [source]
    assert kwargs == {"some_code": "x", "limit": 5, "note": None, "info": info}


def test_info_reads_the_context_from_any_raw_info_that_has_one(
    tiny: strawberry.Schema,
) -> None:
    """`strawberry.Info(_raw_info=..., _field=...)` built on `_RawInfo` (only `.context`):
    Plan._resolve_root gives vetted root resolvers this Info. It must be a plain dataclass
    of those two fields whose `.context` reads `_raw_info.context`, and strawberry must use
    that very class (StrawberryConfig.info_class) on the app's schema."""
    assert [f.name for f in dataclasses.fields(strawberry.Info)] == ["_raw_info", "_field"]
    field = _definition(tiny, "TinyQuery", "order")
    context = object()
    info = strawberry.Info(_raw_info=_RawInfo(context), _field=field)  # type: ignore[arg-type]
    assert info.context is context
    assert info.python_name == "order"  # reads the field, not the raw info
    with pytest.raises(AttributeError):
        _ = info.field_name  # anything else is not there: vetted resolvers must not ask
    assert tiny.config.info_class is strawberry.Info
    assert app_schema.config.info_class is strawberry.Info


def test_the_general_path_gives_root_resolvers_none_as_self() -> None:
    """Plan._resolve_root passes None as `self` of a root resolver: strawberry's view
    passes `await view.get_root_value(request)`, None unless the app overrides it."""
    assert OrdersGraphQL.get_root_value is GraphQL.get_root_value
    assert asyncio.run(GraphQL.get_root_value(None, None)) is None  # type: ignore[arg-type]


def test_the_app_schema_adds_no_per_field_machinery_that_plans_would_skip() -> None:
    """Plans call resolvers directly, around no strawberry extension, directive or
    exception handler: `Schema.exception_handlers`, `Schema.directives` (strawberry adds
    DirectivesExtension for them), `SchemaExtension._implements_resolve` (field
    middleware) and `get_results` (response `extensions`) must stay unused, and the
    schema's extensions must be the two compiled.py re-implements (metrics; parse,
    validation and masking)."""
    assert tuple(app_schema.exception_handlers) == ()
    assert not app_schema.directives
    extensions = list(app_schema.extensions)
    assert len(extensions) == 2
    assert extensions[0] is MetricsExtension
    assert isinstance(extensions[1], type) and issubclass(extensions[1], RequestPipeline)
    for extension in extensions:
        assert isinstance(extension, type) and issubclass(extension, SchemaExtension)
        assert not extension._implements_resolve(), extension
        assert extension.get_results is SchemaExtension.get_results, extension


# -- graphql-core: variables, arguments, errors --------------------------------------------


def test_get_variable_values_returns_a_list_of_errors_or_else_variable_values(
    tiny: strawberry.Schema,
) -> None:
    """`graphql.execution.values.get_variable_values(schema, definitions, inputs)`:
    Plan.run hands the request to the general path when the result `isinstance(..., list)`
    (coercion errors) and passes anything else on to get_argument_values."""
    _, operation, _ = _operation("query($c: String!) { order(someCode: $c) { someValue } }")
    definitions = operation.variable_definitions or ()
    good = get_variable_values(tiny._schema, definitions, {"c": "AB"})
    assert not isinstance(good, list)
    assert good.coerced == {"c": "AB"}
    for bad in ({"c": 5}, {}, {"c": None}):
        errors = get_variable_values(tiny._schema, definitions, bad)
        assert isinstance(errors, list) and errors, bad
        assert all(isinstance(error, GraphQLError) for error in errors)
    assert not isinstance(get_variable_values(tiny._schema, (), {}), list)


def test_get_argument_values_takes_those_variable_values_and_answers_graphql_names(
    tiny: strawberry.Schema,
) -> None:
    """`get_argument_values(field, node, variable_values)`: Plan._resolve_root passes
    get_variable_values' result and expects a dict by GraphQL name, defaults applied,
    literals coerced - convert_arguments' input."""
    _, operation, root = _operation(
        "query($c: String!) { order(someCode: $c, limit: 9) { someValue } }"
    )
    definitions = operation.variable_definitions or ()
    variables = get_variable_values(tiny._schema, definitions, {"c": "AB"})
    assert not isinstance(variables, list)
    raw = get_argument_values(_field(tiny, "TinyQuery", "order"), root, variables)
    assert raw == {"someCode": "AB", "limit": 9, "note": None}
    _, operation, root = _operation('{ order(someCode: "lit") { someValue } }')
    variables = get_variable_values(tiny._schema, (), {})
    assert not isinstance(variables, list)
    raw = get_argument_values(_field(tiny, "TinyQuery", "order"), root, variables)
    assert raw == {"someCode": "lit", "limit": 5, "note": None}


def test_located_error_wraps_once_and_keeps_an_already_located_error() -> None:
    """`graphql.located_error(raw, nodes, path)`: Plan._resolve_root, complete_list and
    _field_runner locate every failure with it, as the executor does; a non-null child's
    error re-raised through its parents must keep the child's path (it is returned as it
    is), and a domain error's `.message` becomes the message."""
    assert vars(graphql_executor)["located_error"] is located_error
    _, _, node = _operation('{ order(someCode: "x") { someValue } }')
    raw = ValueError("boom")
    wrapped = located_error(raw, [node], ["order", "someValue"])
    assert isinstance(wrapped, GraphQLError)
    assert wrapped.message == "boom" and wrapped.original_error is raw
    assert wrapped.path == ["order", "someValue"]
    assert wrapped.locations is not None and len(wrapped.locations) == 1
    assert located_error(wrapped, [node], ["order"]) is wrapped

    class WithMessage(Exception):
        message = "from .message"

    assert located_error(WithMessage("str"), [node], ["order"]).message == "from .message"
    unlocated = GraphQLError("no path yet")
    relocated = located_error(unlocated, [node], ["order"])
    assert relocated.path == ["order"] and relocated.message == "no path yet"


def test_is_iterable_is_the_executors_own_test_for_list_values() -> None:
    """`graphql.pyutils.is_iterable`: complete_list refuses a value it rejects, with the
    executor's message - only equal while the executor uses this very function."""
    assert vars(graphql_executor)["is_iterable"] is is_iterable
    assert is_iterable([1]) and is_iterable((1,)) and is_iterable(x for x in (1,))
    assert not is_iterable("ab") and not is_iterable(b"ab") and not is_iterable({"a": 1})
    assert not is_iterable(5) and not is_iterable(None)


def test_undefined_is_the_executors_own_sentinel() -> None:
    """`graphql.pyutils.Undefined`: complete_leaf and complete_object treat it as null,
    as the executor does with the same object."""
    assert vars(graphql_executor)["Undefined"] is Undefined
    assert Undefined is not None and not Undefined


def test_coerce_output_value_serialises_leaves_as_the_executor_does() -> None:
    """`GraphQLScalarType.coerce_output_value` / `GraphQLEnumType.coerce_output_value`:
    _leaf_completer calls it for every leaf. The executor calls the same method (not the
    legacy `serialize`); strawberry's enum type maps the Python enum members resolvers
    return to their names, and strawberry's scalars format dates and times."""
    source = inspect.getsource(graphql_executor.Executor.complete_leaf_value)
    assert "return_type.coerce_output_value(result)" in source
    types = app_schema._schema.type_map
    status = types["OrderStatus"]
    assert isinstance(status, CustomGraphQLEnumType)
    assert status.coerce_output_value(OrderStatus.PLACED) == "PLACED"
    moment = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    date_time = types["DateTime"]
    assert isinstance(date_time, GraphQLScalarType)
    assert date_time.coerce_output_value(moment) == "2024-05-06T07:08:09+00:00"
    date_type = types["Date"]
    assert isinstance(date_type, GraphQLScalarType)
    assert date_type.coerce_output_value(date(2024, 5, 6)) == "2024-05-06"
    string, integer = types["String"], types["Int"]
    assert isinstance(string, GraphQLScalarType) and isinstance(integer, GraphQLScalarType)
    assert string.coerce_output_value("x") == "x"
    with pytest.raises(GraphQLError):
        integer.coerce_output_value("x")


def test_the_pass_through_scalars_answer_their_own_values_unchanged() -> None:
    """completion.PASS_THROUGH: a leaf of String, ID, Boolean or Int holding a value of
    exactly the listed type (an Int within 32 bits) is answered without coercion, which is
    only right while graphql-core's coercion returns such a value as it is. These are the
    schema's own scalar objects (what `named(field.type)` finds), not copies (the schema
    has no ID today)."""
    types = app_schema._schema.type_map
    assert {"String", "Boolean", "Int"} <= {scalar.name for scalar in PASS_THROUGH}
    for scalar, python_type in PASS_THROUGH.items():
        assert types.get(scalar.name, scalar) is scalar, scalar.name
        samples: dict[type, list[Any]] = {str: ["", "x", "Ä-1"], bool: [True, False], int: [0, -7]}
        for value in samples[python_type]:
            assert type(value) is python_type
            assert scalar.coerce_output_value(value) is value, (scalar.name, value)
    for edge in (GRAPHQL_MIN_INT, GRAPHQL_MAX_INT):
        assert GraphQLInt.coerce_output_value(edge) == edge
    for beyond in (GRAPHQL_MIN_INT - 1, GRAPHQL_MAX_INT + 1):  # the general path refuses
        with pytest.raises(GraphQLError):
            GraphQLInt.coerce_output_value(beyond)


def test_every_enum_below_a_vetted_root_maps_its_members_to_their_names() -> None:
    """_leaf_completer on the app: every enum a plan can reach from a vetted root is
    strawberry's CustomGraphQLEnumType, whose coerce_output_value turns each member of the
    Python enum the resolvers return into its GraphQL name."""
    enums = [t for t in _types_below_vetted_roots() if isinstance(t, GraphQLEnumType)]
    assert {e.name for e in enums} >= {"OrderStatus", "Role", "ReturnStatus", "ReturnReason"}
    for enum_type in enums:
        assert isinstance(enum_type, CustomGraphQLEnumType), enum_type.name
        member: enum.Enum
        for member in enum_type.wrapped_cls:
            assert enum_type.coerce_output_value(member) in enum_type.values, member


def test_an_enum_leaf_answers_the_name_its_coercion_gives_without_asking_it_again() -> None:
    """completion._quick_answer for an enum: each member's name is its coercion's answer,
    asked once at compile time; anything but a member of the wrapped enum (its raw value,
    None) goes to the general completion, which words what is wrong."""
    enums = [t for t in _types_below_vetted_roots() if isinstance(t, GraphQLEnumType)]
    for enum_type in enums:
        assert isinstance(enum_type, CustomGraphQLEnumType), enum_type.name
        quick = _quick_answer(enum_type)
        member: enum.Enum
        for member in enum_type.wrapped_cls:
            assert quick(member) == enum_type.coerce_output_value(member), member
            assert quick(member.value) is GENERAL, member
        assert quick(None) is GENERAL


def test_is_type_of_is_only_set_for_types_that_implement_an_interface(
    tiny: strawberry.Schema,
) -> None:
    """`GraphQLObjectType.is_type_of`: the executor checks results against it; plans do
    not, so _object_completer refuses types that have one. Strawberry sets it only for
    types with interfaces (or an explicit is_type_of), so plain types still compile."""
    box = tiny._schema.get_type("Box")
    labelled = tiny._schema.get_type("Labelled")
    assert isinstance(box, GraphQLObjectType) and box.is_type_of is None
    assert isinstance(labelled, GraphQLObjectType) and labelled.is_type_of is not None
    assert compile_plan(tiny, parse("{ me { name } }"), None) is None
    assert compile_plan(tiny, parse('{ order(someCode: "x") { someValue } }'), None) is not None


@pytest.mark.parametrize(
    "selection",
    [
        "blank",
        "absent someValue",
        "notAList",
        "undefinedValue",
        "shade constant",
        "tooBig numberAsText flagFromNumber",
    ],
)
def test_the_plans_copies_of_graphql_core_messages_are_word_for_word(
    tiny: strawberry.Schema, selection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor's messages that compiled.py re-states: _completer's "Cannot return null
    for non-nullable field", complete_list's "Expected Iterable", _leaf_completer's
    "Expected `T.coerce_output_value(v)` to return non-nullable value" (with
    `graphql.pyutils.inspect`), and null for Undefined. Unmasked, so the words compare."""
    monkeypatch.setattr(compiled, "mask_error", lambda error, _request_id: error)
    query = f'query {{ order(someCode: "x") {{ {selection} }} }}'
    plan = compile_plan(tiny, parse(query), None)
    assert plan is not None
    context = {"request": "tiny"}
    answer = asyncio.run(plan.run(context, None, "rid"))
    reference = asyncio.run(tiny.execute(query, context_value=context))
    assert answer is not None
    assert answer["data"] == reference.data

    def words(error: Mapping[str, Any]) -> tuple[Any, ...]:
        return error["message"], error.get("path"), error.get("locations")

    expected = [words(error.formatted) for error in reference.errors or []]
    assert [words(error) for error in answer.get("errors", [])] == expected
    assert bool(expected) == (
        selection in ("blank", "absent someValue", "notAList") or selection.startswith("tooBig")
    )
    if selection.startswith("tooBig"):  # coerced by graphql-core's own rules, not passed
        assert answer["data"] == {
            "order": {"tooBig": None, "numberAsText": "5", "flagFromNumber": True}
        }
    if selection == "blank":
        assert expected[0][0] == (
            f"Expected `Blank.coerce_output_value({graphql_inspect('x')})` to return"
            " non-nullable value, returned: None"
        )


# -- strawberry's view and validation: the plan path of endpoint.py --------------------------


def test_process_result_leaves_out_empty_errors_and_extensions() -> None:
    """strawberry.http.process_result (the view's `process_result`): Plan.run writes the
    response body by hand as {"data"} plus "errors" only when there are some, and no
    "extensions" (the app's schema extensions return none, see above); the app's view
    adds nothing else but default codes, and has no `_handle_errors` hook."""
    assert process_result(ExecutionResult(data={"a": 1}, errors=None, extensions={})) == {
        "data": {"a": 1}
    }
    error = GraphQLError("bad", path=["a"])
    assert process_result(ExecutionResult(data=None, errors=[error], extensions={})) == {
        "data": None,
        "errors": [error.formatted],
    }
    assert OrdersGraphQL._handle_errors is AsyncBaseHTTPView._handle_errors


def test_the_view_hooks_the_endpoint_calls_keep_their_shape(tiny: strawberry.Schema) -> None:
    """GraphQLEndpoint._run builds the answer with the view's `get_sub_response(request)`
    and `get_context(request, response)` (awaited) and `create_response(response_data,
    sub_response)` (not awaited): a 200 JSON response carrying the sub-response's headers."""
    for hook in (GraphQL.get_sub_response, GraphQL.get_context, OrdersGraphQL.get_context):
        assert inspect.iscoroutinefunction(hook), hook
    assert not inspect.iscoroutinefunction(GraphQL.create_response)
    assert list(inspect.signature(OrdersGraphQL.get_context).parameters) == [
        "self",
        "request",
        "response",
    ]
    assert list(inspect.signature(OrdersGraphQL.create_response).parameters) == [
        "self",
        "response_data",
        "sub_response",
    ]
    view = GraphQL(tiny)
    request = Request({"type": "http", "method": "POST", "headers": [], "path": "/graphql"})
    sub_response = asyncio.run(view.get_sub_response(request))
    sub_response.headers["x-from-resolver"] = "1"
    response = view.create_response({"data": {"a": 1}}, sub_response)
    assert isinstance(response, Response)
    assert response.status_code == 200
    assert response.media_type == "application/json"
    assert json.loads(bytes(response.body)) == {"data": {"a": 1}}
    assert response.headers["x-from-resolver"] == "1"


def test_the_apps_sub_response_is_strawberrys_empty_one_in_the_negotiated_media_type(
    tiny: strawberry.Schema,
) -> None:
    """OrdersGraphQL.get_sub_response builds strawberry's sub-response (no status, no
    headers, no body, no background) without going through Response(): the same state, in
    the media type the guard negotiated; what a resolver sets on it reaches the answer."""
    scope = {
        "type": "http",
        "method": "POST",
        "headers": [],
        "path": "/graphql",
        "state": {"graphql_media_type": "application/graphql-response+json"},
    }
    view = object.__new__(OrdersGraphQL)  # the hooks read nothing of the view's own
    ours = asyncio.run(view.get_sub_response(Request(scope)))
    theirs = asyncio.run(GraphQL(tiny).get_sub_response(Request(scope)))
    for attribute in ("status_code", "raw_headers", "body", "background"):
        assert getattr(ours, attribute) == getattr(theirs, attribute), attribute
    assert ours.media_type == "application/graphql-response+json"

    ours.headers["x-from-resolver"] = "1"
    ours.status_code = 202
    response = view.create_response({"data": {"a": 1}}, ours)
    assert response.status_code == 202
    assert response.media_type == "application/graphql-response+json"
    assert response.headers["x-from-resolver"] == "1"
    assert response.headers["content-length"] == str(len(response.body))
    assert json.loads(bytes(response.body)) == {"data": {"a": 1}}


def test_validate_document_is_strawberrys_validation_with_its_own_rules_added(
    tiny: strawberry.Schema,
) -> None:
    """`strawberry.schema.schema.validate_document(schema, document, rules)` behind
    app.schema.validate_cached: endpoint._plan_for compiles only a document it returns no
    errors for. The general path validates the same way because strawberry skips its own
    `_run_validation` once an extension (RequestPipeline.on_validate) has set
    `pre_execution_errors`, and the pipeline's rules are `schema.rules`."""
    validate = strawberry_schema_module.validate_document
    assert list(inspect.signature(validate).parameters) == [
        "schema",
        "document",
        "validation_rules",
    ]
    good = parse('{ order(someCode: "x") { someValue } }')
    bad = parse("{ order { nope } }")
    rules = tuple(specified_rules)
    assert validate(tiny._schema, good, rules) == []
    errors = validate(tiny._schema, bad, rules)
    assert isinstance(errors, list) and errors
    assert validate(tiny._schema, bad, ()) == []  # only the rules it is given, and its own
    assert all(isinstance(error, GraphQLError) for error in errors)

    already: list[GraphQLError] = []
    context = SimpleNamespace(
        validation_rules=(object,), pre_execution_errors=already, graphql_document=None
    )
    strawberry_schema_module._run_validation(context)  # type: ignore[arg-type]
    assert context.pre_execution_errors is already  # not validated a second time

    pipeline = app_schema.extensions[1]
    assert isinstance(pipeline, type) and issubclass(pipeline, RequestPipeline)
    assert pipeline.rules is app_schema.rules
    document = parse_document("query($c: String!) { order(code: $c) { code } }")
    assert validate_cached(app_schema._schema, document, app_schema.rules) == []


# -- the app's vetted root fields -----------------------------------------------------------


def _types_below_vetted_roots() -> list[Any]:
    query_type = app_schema._schema.query_type
    assert query_type is not None
    seen: dict[str, Any] = {}
    stack = [query_type.fields[name].type for name in VETTED_ROOT_FIELDS]
    while stack:
        type_ = stack.pop()
        while isinstance(type_, GraphQLNonNull | GraphQLList):
            type_ = type_.of_type
        if type_.name in seen:
            continue
        seen[type_.name] = type_
        if isinstance(type_, GraphQLObjectType):
            stack.extend(field.type for field in type_.fields.values())
    return list(seen.values())


def _reads_only_info_context(
    function: Any,
    info_name: str,
    allowed: frozenset[str] = frozenset({"context"}),
    helpers: frozenset[str] = frozenset(),
) -> bool:
    """Every use of `info` in `function` is `info.<one of allowed>` or the first argument
    of a call to one of `helpers` (functions whose own reads are pinned elsewhere)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == info_name]

    def allowed_use(use: ast.Name) -> bool:
        parent = parents.get(use)
        if isinstance(parent, ast.Attribute):
            return parent.attr in allowed
        return (
            isinstance(parent, ast.Call)
            and isinstance(parent.func, ast.Name)
            and parent.func.id in helpers
            and parent.args[:1] == [use]
        )

    return all(allowed_use(use) for use in uses)


# What a vetted root resolver may read of its Info: the context, and the selection below it
# (Plan._resolve_root's _RawInfo carries the root's field nodes and the coerced variables).
ROOT_READS = frozenset({"context", "selected_fields"})
# ...or through app/graphql/common.py `fields_at`, which reads the _RawInfo's field nodes and
# fragments (test_a_plans_info_selects_what_the_executors_info_selects pins it).
ROOT_HELPERS = frozenset({"fields_at"})


@pytest.mark.parametrize("name", sorted(VETTED_ROOT_FIELDS))
def test_every_vetted_root_field_is_what_a_plan_can_call(name: str) -> None:
    """VETTED_ROOT_FIELDS and _root_field / Plan._resolve_root on the app's schema: each
    vetted field exists on Query, is a strawberry field without extensions whose resolver
    takes `self` (Plan passes None) and `info` (an Info on _RawInfo) and no cls, root or
    parent, reads nothing of `info` but `info.context` and `info.selected_fields`, is async
    (awaited), takes only
    scalar arguments, and returns a nullable plain object type (no is_type_of): so roots
    are never nulled as a whole, and running them one after another (graphql-core runs
    them concurrently) changes no answer's shape."""
    query_type = app_schema._schema.query_type
    assert query_type is not None
    assert name in query_type.fields
    graphql_field = query_type.fields[name]
    field = graphql_field.extensions.get(_BACKREF)
    assert isinstance(field, StrawberryField)
    assert not field.extensions
    resolver = field.base_resolver
    assert resolver is not None
    assert resolver.self_parameter is not None
    assert resolver.info_parameter is not None
    assert resolver.root_parameter is None and resolver.parent_parameter is None
    assert resolver.reserved_parameters[CLS_PARAMSPEC] is None
    assert resolver.is_async
    assert _reads_only_info_context(
        resolver.wrapped_func, resolver.info_parameter.name, ROOT_READS, ROOT_HELPERS
    )
    for argument in graphql_field.args.values():
        named = argument.type
        while isinstance(named, GraphQLNonNull | GraphQLList):
            named = named.of_type
        # an input or enum argument is optional: a plan is only built for a document that
        # leaves it out (the resolver's default applies, as on the general path)
        assert isinstance(named, GraphQLScalarType) or not isinstance(
            argument.type, GraphQLNonNull
        ), argument
    returned = graphql_field.type
    if isinstance(returned, GraphQLNonNull):  # compiled only as the document's one root
        returned = returned.of_type
    assert isinstance(returned, GraphQLObjectType)
    assert returned.is_type_of is None


def test_every_resolver_below_a_vetted_root_that_takes_info_reads_only_its_context() -> None:
    """Plans hand resolvers below the root an Info on _RawInfo (the context only): a
    resolver reading more of `info` (or passing it on) must not be reachable by a plan."""
    checked = 0
    for type_ in _types_below_vetted_roots():
        if not isinstance(type_, GraphQLObjectType):
            continue
        for graphql_field in type_.fields.values():
            field = graphql_field.extensions.get(_BACKREF)
            resolver = getattr(field, "base_resolver", None)
            if resolver is None or resolver.info_parameter is None:
                continue
            name = resolver.info_parameter.name
            assert _reads_only_info_context(resolver.wrapped_func, name), (type_, graphql_field)
            checked += 1
    assert checked >= 7  # order: lines, shipments, timeline, returns; parcel: lines, events;
    # return: lines


def test_the_static_check_of_info_use_catches_other_reads() -> None:
    """Guards the check above: a resolver that reads more of `info` is caught."""

    async def reads_more(self: Any, info: Any) -> Any:
        return info.context, info.field_name

    async def passes_it_on(self: Any, info: Any) -> Any:
        return print(info)

    async def fine(self: Any, info: Any) -> Any:
        return await info.context.viewer()

    async def looks_below(self: Any, info: Any) -> Any:
        return info.selected_fields

    assert not _reads_only_info_context(reads_more, "info")
    assert not _reads_only_info_context(passes_it_on, "info")
    assert _reads_only_info_context(fine, "info")

    async def asks_a_helper(self: Any, info: Any) -> Any:
        return fields_at(info, ("order",))

    async def gives_a_helper_more(self: Any, info: Any) -> Any:
        return fields_at(info, info.path)

    assert not _reads_only_info_context(looks_below, "info")  # below a root: context only
    assert _reads_only_info_context(looks_below, "info", ROOT_READS)
    assert not _reads_only_info_context(reads_more, "info", ROOT_READS)
    assert not _reads_only_info_context(asks_a_helper, "info", ROOT_READS)
    assert _reads_only_info_context(asks_a_helper, "info", ROOT_READS, ROOT_HELPERS)
    assert not _reads_only_info_context(gives_a_helper_more, "info", ROOT_READS, ROOT_HELPERS)
    assert not _reads_only_info_context(passes_it_on, "info", ROOT_READS, ROOT_HELPERS)


def test_a_plans_info_selects_what_the_executors_info_selects() -> None:
    """`Info.selected_fields` (strawberry's convert_selections) on Plan._resolve_root's
    _RawInfo reads only `field_nodes`, `fragments` and `variable_values`, and
    app/graphql/common.py `fields_at` only `_raw_info.field_nodes` and `.fragments`: a
    vetted root resolver sees the same selection through a plan as under graphql-core's
    executor, and `fields_at` names what `selected_fields` does, through named and inline
    fragments too (those only under the executor: plans refuse fragments)."""
    seen: list[tuple[Any, set[str]]] = []

    @strawberry.type
    class SelectionQuery:
        @strawberry.field
        async def order(self, info: strawberry.Info, some_code: str) -> Box | None:
            seen.append((info.selected_fields, fields_at(info, ("order",))))
            return Box()

    schema = strawberry.Schema(
        query=SelectionQuery, config=StrawberryConfig(scalar_map={Blank: BLANK})
    )
    query = "query($c: String!) { order(someCode: $c) { someValue shade constant __typename } }"
    plan = compile_plan(schema, parse(query), None)
    assert plan is not None
    planned = asyncio.run(plan.run({}, {"c": "x"}, "rid"))
    reference = asyncio.run(schema.execute(query, variable_values={"c": "x"}))
    assert planned is not None and reference.errors is None
    assert planned["data"] == reference.data
    with_fragments = (
        '{ order(someCode: "x") { ...Named ... on Box { shade } constant @skip(if: true) } }'
        " fragment Named on Box { someValue }"
    )
    assert asyncio.run(schema.execute(with_fragments)).errors is None
    (through_plan, plan_names), (through_executor, executor_names), (_, fragment_names) = seen
    assert through_plan == through_executor
    (root,) = through_plan
    assert isinstance(root, SelectedField) and root.name == "order"
    assert root.arguments == {"someCode": "x"}
    selected = [s.name for s in root.selections if isinstance(s, SelectedField)]
    assert selected == ["someValue", "shade", "constant", "__typename"]
    assert plan_names == executor_names == set(selected)
    # whatever their conditions (an extra name only costs an unused statement)
    assert fragment_names == {"someValue", "shade", "constant"}
