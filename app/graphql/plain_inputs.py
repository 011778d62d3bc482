"""Variables and root arguments that need no coercion, for compiled plans.

A customer's lookups send a code (`String!`) or a page size and cursor (`Int`, `String`):
graphql-core's `get_variable_values` and strawberry's `convert_arguments` answer such
values with the values themselves, after a walk over the definitions that was a tenth of
a small lookup. A plan works out once which of its variables and root arguments are of
that kind, and per request takes the values as they are when each one has exactly the
Python type the coercion would pass through; anything else (a wrong type, a null for a
non-null variable, a missing one, a default, an input object) goes to graphql-core and
strawberry as before, so every error is still theirs, word for word.
`tests/unit/test_compiled_plan_internals.py` holds both to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import (
    GraphQLBoolean,
    GraphQLError,
    GraphQLInt,
    GraphQLNonNull,
    GraphQLScalarType,
    GraphQLSchema,
    GraphQLString,
    VariableDefinitionNode,
)
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import VariableValues, VariableValueSource
from graphql.type.scalars import GRAPHQL_MAX_INT, GRAPHQL_MIN_INT
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.field import StrawberryField

# The built-in scalars whose input coercion returns a value of exactly this type as it is.
_PASSING: dict[GraphQLScalarType, type] = {
    GraphQLString: str,
    GraphQLInt: int,
    GraphQLBoolean: bool,
}


# (graphql-core's signature of the variable, the Python type that passes, non-null)
PlainVariables = tuple[tuple[GraphQLVariableSignature, type, bool], ...]
# GraphQL argument name -> (Python parameter name, its value passes as it is, may be null)
PlainArguments = dict[str, tuple[str, bool, bool]]


def plain_variables(
    schema: GraphQLSchema, definitions: Iterable[VariableDefinitionNode]
) -> PlainVariables | None:
    """The operation's variables if each is a String, Int or Boolean without a
    default (nullable or not), else None."""
    plain: list[tuple[GraphQLVariableSignature, type, bool]] = []
    for definition in definitions:
        signature = get_variable_signature(schema, definition)
        if isinstance(signature, GraphQLError) or signature.default is not None:
            return None
        type_: Any = signature.type
        non_null = isinstance(type_, GraphQLNonNull)
        passes = _PASSING.get(type_.of_type if non_null else type_)
        if passes is None:
            return None
        plain.append((signature, passes, non_null))
    return tuple(plain)


def coerce_plain_variables(plain: PlainVariables, given: Mapping[str, Any]) -> Any:
    """What `get_variable_values` answers for `given` (its `VariableValues`), or None
    when it is not sure to be the values as they are (then the caller asks graphql-core)."""
    sources: dict[str, Any] = {}
    coerced: dict[str, Any] = {}
    for signature, passes, non_null in plain:
        name = signature.name
        if name not in given:
            if non_null:
                return None  # graphql-core words the error
            # absent and nullable without a default: left out, as graphql-core does
            sources[name] = VariableValueSource(signature)
            continue
        value: Any = given[name]
        if value is None:
            if non_null:
                return None
        elif value.__class__ is not passes:
            return None
        elif passes is int and not GRAPHQL_MIN_INT <= given[name] <= GRAPHQL_MAX_INT:
            return None  # beyond 32 bits: graphql-core words the error
        sources[name] = VariableValueSource(signature, value)
        coerced[name] = value
    return VariableValues(sources, coerced)


def plain_arguments(field: StrawberryField, argument_name: Any) -> PlainArguments:
    """For each argument of a root field: its parameter name, whether strawberry's
    conversion hands its value over as it is (str, int, float or bool, optional or not),
    and whether it is optional (then a null is handed over as it is too). `argument_name`
    is the schema's `config.name_converter.from_argument`."""
    plain: PlainArguments = {}
    for argument in field.arguments:
        type_: Any = argument.type
        maybe = isinstance(type_, StrawberryMaybe)  # (wrapped in `Some` by strawberry)
        optional = isinstance(type_, StrawberryOptional) and not maybe
        if optional:
            type_ = type_.of_type
        passes = not maybe and any(type_ is kind for kind in (str, int, float, bool))
        assert argument.python_name is not None
        plain[argument_name(argument)] = (argument.python_name, passes, optional)
    return plain


def convert_plain_arguments(plain: PlainArguments, raw: Mapping[str, Any]) -> dict[str, Any] | None:
    """What `convert_arguments` answers for graphql-core's argument values `raw`, or None
    when one of them needs strawberry's conversion."""
    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        spec = plain.get(name)
        if spec is None:
            return None
        python_name, passes, optional = spec
        if not (passes or (value is None and optional)):
            return None
        kwargs[python_name] = value
    return kwargs
