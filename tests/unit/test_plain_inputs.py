"""Compiled plans take variables and root arguments as they are where graphql-core's
`get_variable_values` and strawberry's `convert_arguments` would hand them over unchanged
(app/graphql/plain_inputs.py). Whatever the fast path answers must be exactly what those
two answer (graphql-core's `VariableValues` with its sources included), for any value a
client can send; and it must actually answer for the lookups' own variables."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import OperationDefinitionNode, parse
from graphql.execution.values import get_variable_values
from hypothesis import given
from hypothesis import strategies as st
from strawberry.types.arguments import convert_arguments

from app.graphql.compiled import VETTED_ROOT_FIELDS
from app.graphql.completion import BACKREF
from app.graphql.plain_inputs import (
    coerce_plain_variables,
    convert_plain_arguments,
    plain_arguments,
    plain_variables,
)
from app.schema import build_schema

SCHEMA = build_schema(production=False)
_QUERY_TYPE = SCHEMA._schema.query_type
assert _QUERY_TYPE is not None
QUERY_TYPE = _QUERY_TYPE

# What a client can put into a variable or an argument: JSON values.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**40), max_value=2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)

VARIABLES = "$s: String!, $n: Int, $b: Boolean, $i: Int!, $t: String"


def _comparable(values: Any) -> Any:
    """graphql-core's `VariableValues` with each type by its name (`String!`): it makes a
    new non-null wrapper per call, which compares by identity."""
    return values.coerced, {
        name: (source.signature._replace(type=str(source.signature.type)), source.value)
        for name, source in values.sources.items()
    }


def _definitions(text: str) -> Any:
    operation = parse(f"query Q({text}) {{ me {{ email }} }}").definitions[0]
    assert isinstance(operation, OperationDefinitionNode)
    return operation.variable_definitions


@given(st.dictionaries(st.sampled_from(["s", "n", "b", "i", "t", "extra"]), JSON))
def test_variables_taken_as_they_are_are_what_graphql_core_makes_of_them(
    given_values: dict[str, Any],
) -> None:
    definitions = _definitions(VARIABLES)
    plain = plain_variables(SCHEMA._schema, definitions)
    assert plain is not None
    fast = coerce_plain_variables(plain, given_values)
    if fast is not None:
        assert _comparable(fast) == _comparable(
            get_variable_values(SCHEMA._schema, definitions, given_values)
        )


@pytest.mark.parametrize(
    "given_values",
    [
        {"s": "ABCD-2345", "i": 7},
        {"s": "", "i": 0, "n": 20, "b": False, "t": None},
        {"s": "x", "i": 2**31 - 1, "n": -(2**31), "extra": [1]},
    ],
)
def test_the_lookups_own_variables_take_the_fast_path(given_values: dict[str, Any]) -> None:
    definitions = _definitions(VARIABLES)
    plain = plain_variables(SCHEMA._schema, definitions)
    assert plain is not None
    fast = coerce_plain_variables(plain, given_values)
    assert fast is not None
    assert _comparable(fast) == _comparable(
        get_variable_values(SCHEMA._schema, definitions, given_values)
    )


@pytest.mark.parametrize(
    "given_values",
    [
        {"i": 7},  # a missing non-null variable
        {"s": None, "i": 7},  # null for a non-null one
        {"s": 5, "i": 7},  # an Int for a String
        {"s": "x", "i": 7, "n": 2**31},  # beyond 32 bits
        {"s": "x", "i": 7, "n": True},  # a Boolean for an Int
        {"s": "x", "i": 7.0},  # a float for an Int: graphql-core makes it 7
        {"s": "x", "i": 7, "b": 1},  # an Int for a Boolean
    ],
)
def test_anything_else_is_left_to_graphql_core(given_values: dict[str, Any]) -> None:
    plain = plain_variables(SCHEMA._schema, _definitions(VARIABLES))
    assert plain is not None
    assert coerce_plain_variables(plain, given_values) is None


@pytest.mark.parametrize(
    "text", ['$s: String = "x"', "$l: [String!]", "$e: OrderStatus", "$d: DateTime", "$i: ID"]
)
def test_defaults_lists_enums_and_other_scalars_are_never_taken_as_they_are(text: str) -> None:
    assert plain_variables(SCHEMA._schema, _definitions(text)) is None


def _convert(field: Any, raw: dict[str, Any]) -> dict[str, Any]:
    return convert_arguments(
        raw,
        field.arguments,
        scalar_registry=SCHEMA.schema_converter.scalar_registry,
        config=SCHEMA.config,
    )


@pytest.mark.parametrize("name", sorted(VETTED_ROOT_FIELDS))
@given(values=st.lists(JSON, min_size=3, max_size=3))
def test_arguments_taken_as_they_are_are_what_strawberry_makes_of_them(
    name: str, values: list[Any]
) -> None:
    field = QUERY_TYPE.fields[name].extensions[BACKREF]
    plain = plain_arguments(field, SCHEMA.config.name_converter.from_argument)
    raw = dict(zip(QUERY_TYPE.fields[name].args, values, strict=False))
    fast = convert_plain_arguments(plain, raw)
    if fast is not None:
        assert fast == _convert(field, raw)


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("order", {"code": "ABCD-2345"}),
        ("checkout", {"code": "ABCD-2345"}),
        ("returnRequest", {"rma": "R-1"}),
        ("me", {}),
        ("myOrders", {"first": 20, "after": None, "filter": None}),
        ("myOrders", {"first": 5, "after": "cursor"}),
    ],
)
def test_the_lookups_own_arguments_take_the_fast_path(name: str, raw: dict[str, Any]) -> None:
    field = QUERY_TYPE.fields[name].extensions[BACKREF]
    plain = plain_arguments(field, SCHEMA.config.name_converter.from_argument)
    fast = convert_plain_arguments(plain, raw)
    assert fast is not None
    assert fast == _convert(field, raw)


def test_an_input_object_argument_is_left_to_strawberry() -> None:
    field = QUERY_TYPE.fields["myOrders"].extensions[BACKREF]
    plain = plain_arguments(field, SCHEMA.config.name_converter.from_argument)
    assert convert_plain_arguments(plain, {"first": 5, "filter": {"text": "mug"}}) is None
