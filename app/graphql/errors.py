"""How errors reach clients: domain errors keep their code and message; validation errors
stay readable; anything else is masked to a generic message with the request id."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from app.errors import DomainError, ErrorCode

log = logging.getLogger("app.graphql")

strawberry.enum(
    ErrorCode,
    name="ErrorCode",
    description="Every error code the API answers with (extensions.code and userErrors).",
)


@strawberry.type(description="A problem with the input of a mutation, to show next to a field.")
class UserError:
    field: str | None
    message: str
    code: ErrorCode


def to_user_error(error: DomainError) -> UserError:
    return UserError(field=error.field, message=error.message, code=error.code)


T = TypeVar("T")


async def run_mutation(
    work: Callable[[], Awaitable[T]], on_error: Callable[[list[UserError]], T]
) -> T:
    """Await a use case; input errors become `userErrors`, door errors stay top-level."""
    try:
        return await work()
    except DomainError as error:
        if not error.user_error:
            raise
        return on_error([to_user_error(error)])


# "Cannot query field 'ordr'. Did you mean 'order'?" would let a caller map the schema
# without introspection; the suggestion is cut, the rest of the message stays readable.
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?")
_CODES = frozenset(code.value for code in ErrorCode)


class DomainErrorMasking(MaskErrors):
    # True for an allow-list deployment (PERSISTED_QUERIES=allowlist), whose schema is
    # private: GraphQL's own messages are reduced to ones that name nothing of it
    private_schema: bool = False

    def __init__(self) -> None:
        super().__init__(error_message="Internal error.")

    def _process_result(self, result: object) -> None:
        # The base class tests a runtime-checkable Protocol on every result, which is slow
        # on the hot path; an attribute lookup does the same job.
        errors = getattr(result, "errors", None)
        if errors:
            # `result` is typed `object` by the base class; it has `errors` (read just above)
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        request_id = getattr(self.execution_context.context, "request_id", None)
        private = self.private_schema
        masked: list[GraphQLError] = []
        said: set[str] = set()
        for error in errors:
            if private and _graphql_own(error):
                # once per variable: how many errors a variable got would tell how many
                # fields of its input type were missing or unknown
                message = private_message(error.message)
                if message in said:
                    continue
                said.add(message)
            masked.append(mask_error(error, request_id, private=private))
        return masked


# In a private schema, variable coercion errors keep the variable's name (the client's own
# document has it) and lose the rest: "Expected value of type 'ReturnLineInput' to include
# required field 'sku'" would name an input type and its fields.
_VARIABLE = re.compile(r"^Variable '\$([_A-Za-z][_0-9A-Za-z]*)'")


def _graphql_own(error: GraphQLError) -> bool:
    """Syntax, validation and variable-coercion errors (not a resolver's, not our rules')."""
    original = error.original_error
    code = (error.extensions or {}).get("code")
    return (original is None or isinstance(original, GraphQLError)) and code not in _CODES


def private_message(message: str) -> str:
    """A GraphQL request error's message for an allow-list deployment: nothing of the
    schema, no suggestion, nothing the client did not send."""
    variable = _VARIABLE.match(message)
    if variable:
        return f"Variable '${variable.group(1)}' has an invalid value for this operation."
    return "The request does not fit the registered operation."


def mask_error(
    error: GraphQLError, request_id: str | None, *, private: bool = False
) -> GraphQLError:
    """What a client may see of `error`: a domain error's code and message, a readable
    validation message without schema suggestions (`private`: a message naming nothing of
    the schema), or a generic INTERNAL with the request id (the real error is logged, type
    and frames only)."""
    original = error.original_error
    if isinstance(original, DomainError):
        extensions: dict[str, Any] = {"code": original.code.value}
        if original.retry_after is not None:
            extensions["retryAfter"] = original.retry_after
        if original.field:
            extensions["field"] = original.field
        return GraphQLError(
            original.message, nodes=error.nodes, path=error.path, extensions=extensions
        )
    if original is None or isinstance(original, GraphQLError):
        # syntax, validation and variable-coercion errors: readable, never sensitive; our
        # own validation rules may name a code (the allow-list answers FORBIDDEN)
        code = (error.extensions or {}).get("code")
        if private and _graphql_own(error):
            message = private_message(error.message)
        else:
            message = _SUGGESTION.sub("", error.message)
        return GraphQLError(
            message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code if code in _CODES else ErrorCode.BAD_USER_INPUT.value},
        )
    log.error(
        "unhandled resolver error",
        exc_info=(type(original), original, original.__traceback__),
        extra={"request_id": request_id},
    )
    return GraphQLError(
        f"Internal error. Quote request id {request_id} when reporting it.",
        nodes=error.nodes,
        path=error.path,
        extensions={"code": ErrorCode.INTERNAL.value, "requestId": request_id},
    )


def with_default_codes(response: dict[str, Any]) -> dict[str, Any]:
    """Errors raised before execution (syntax, the token limit) skip the masking; they
    still get a code, so every error a client sees has one."""
    for error in response.get("errors") or []:
        extensions = error.setdefault("extensions", {})
        extensions.setdefault("code", ErrorCode.BAD_USER_INPUT.value)
    return response
