"""Counts and times every GraphQL operation for /metrics (app/metrics.py holds the
metrics); labels are root field names of the schema and error codes, never client input."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from app.errors import DomainError, ErrorCode
from app.metrics import (
    BAD_REQUEST,
    PARSE_FAILED,
    VALIDATION_FAILED,
    LookupTally,
    request_answered,
)

# Raised by strawberry's `Schema.execute` for a request it cannot run; the view turns them
# into HTTP 400 (app/main.py does not count them a second time).
REFUSED_BEFORE_EXECUTION = (
    MissingQueryError,
    CannotGetOperationTypeError,
    InvalidOperationTypeError,
)

_root_fields: set[str] = set()


def _root_field(execution_context: Any) -> str:
    document = execution_context.graphql_document
    if document is None:
        return "invalid"
    if not _root_fields:
        schema = execution_context.schema._schema
        for root in (schema.query_type, schema.mutation_type, schema.subscription_type):
            if root is not None:
                _root_fields.update(root.fields)
    wanted = execution_context.operation_name
    for definition in document.definitions:
        if not isinstance(definition, OperationDefinitionNode):
            continue
        if wanted is not None and (definition.name is None or definition.name.value != wanted):
            continue
        for selection in definition.selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                return name if name in _root_fields else "other"
        return "other"
    return "invalid"


def _is_subscription(execution_context: Any) -> bool:
    try:
        return bool(execution_context.operation_type is OperationType.SUBSCRIPTION)
    except RuntimeError:  # no document, or no operation of that name in it
        return False


def outcome_of(errors: list[GraphQLError] | None) -> str:
    if not errors:
        return "ok"
    error = errors[0]
    if isinstance(error.original_error, DomainError):
        return error.original_error.code.value
    code = (error.extensions or {}).get("code")
    return str(code) if isinstance(code, str) and code.isupper() else "INTERNAL"


class MetricsExtension(SchemaExtension):
    """Counts and times each operation; settles the `found` lookups of the operation.

    A request refused before execution is never `ok`: a document that does not parse is
    GRAPHQL_PARSE_FAILED, one that does not validate GRAPHQL_VALIDATION_FAILED (FORBIDDEN
    when the allow-list refused it), no query or no operation to run BAD_REQUEST; an
    operation cut off by the request time cap is SERVICE_UNAVAILABLE, as answered."""

    validation_failed = False

    def on_validate(self) -> Iterator[None]:
        yield
        self.validation_failed = bool(self.execution_context.pre_execution_errors)

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        outcome: str | None = None
        try:
            with LookupTally():
                yield
        except REFUSED_BEFORE_EXECUTION:
            outcome = BAD_REQUEST
            raise
        except asyncio.CancelledError:
            if not _is_subscription(self.execution_context):  # a stream ends by cancellation
                outcome = ErrorCode.SERVICE_UNAVAILABLE.value
            raise
        finally:
            context = self.execution_context
            operation = _root_field(context)
            if outcome is None:
                errors = getattr(context.result, "errors", None) or context.pre_execution_errors
                outcome = self._refusal(errors) or outcome_of(errors)
            request_answered(operation, outcome, time.perf_counter() - started)

    def _refusal(self, errors: list[GraphQLError] | None) -> str | None:
        """Why the document was refused before execution, if it was."""
        if not errors:
            return None
        if self.execution_context.graphql_document is None:
            return PARSE_FAILED
        if self.validation_failed:
            code = (errors[0].extensions or {}).get("code")
            return ErrorCode.FORBIDDEN.value if code == ErrorCode.FORBIDDEN else VALIDATION_FAILED
        return None
