"""Counts and times every GraphQL operation for /metrics (app/metrics.py holds the
metrics); labels are root field names of the schema and error codes, never client input."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from graphql import FieldNode, GraphQLError, OperationDefinitionNode
from strawberry.extensions import SchemaExtension

from app.errors import DomainError
from app.metrics import LATENCY, REQUESTS, lookup_tally

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


def outcome_of(errors: list[GraphQLError] | None) -> str:
    if not errors:
        return "ok"
    error = errors[0]
    if isinstance(error.original_error, DomainError):
        return error.original_error.code.value
    code = (error.extensions or {}).get("code")
    return str(code) if isinstance(code, str) and code.isupper() else "INTERNAL"


class MetricsExtension(SchemaExtension):
    """Counts and times each operation; settles the `found` lookups of the operation."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            with lookup_tally():
                yield
        finally:
            context = self.execution_context
            operation = _root_field(context)
            errors = getattr(context.result, "errors", None) or context.pre_execution_errors
            REQUESTS.labels(operation=operation, outcome=outcome_of(errors)).inc()
            LATENCY.labels(operation=operation).observe(time.perf_counter() - started)
