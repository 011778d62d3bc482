"""Domain errors: the only exceptions whose message and code reach a client."""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    ORDER_NOT_FOUND = "ORDER_NOT_FOUND"
    INVALID_ORDER_CODE = "INVALID_ORDER_CODE"
    RATE_LIMITED = "RATE_LIMITED"
    BAD_USER_INPUT = "BAD_USER_INPUT"
    CONFLICT = "CONFLICT"
    SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


class DomainError(Exception):
    """A rule said no. `code` is from ErrorCode; `field` names the input at fault, if any."""

    code: ErrorCode = ErrorCode.BAD_USER_INPUT
    default_message = "The request was refused."
    # True: a mutation reports it in `userErrors` (something about the input to fix).
    # False: a top-level error (something about the caller or the door: auth, limits, codes).
    user_error = False

    def __init__(
        self,
        message: str | None = None,
        *,
        code: ErrorCode | None = None,
        field: str | None = None,
        retry_after: int | None = None,
        details: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message or self.default_message)
        self.message = message or self.default_message
        if code is not None:
            self.code = code
        self.field = field
        self.retry_after = retry_after
        self.details = details or {}


class Unauthenticated(DomainError):
    code = ErrorCode.UNAUTHENTICATED
    default_message = "Authentication required."


class Forbidden(DomainError):
    code = ErrorCode.FORBIDDEN
    default_message = "You are not allowed to do this."


class OrderNotFound(DomainError):
    """The one answer for "no such order" and "not yours": same code, same message."""

    code = ErrorCode.ORDER_NOT_FOUND
    default_message = "No order with this code was found for your account."


class InvalidOrderCode(DomainError):
    code = ErrorCode.INVALID_ORDER_CODE
    default_message = (
        "This is not a valid order code. Order codes have 16 characters like "
        "ABCD-EFGH-JKMN-PQRS; check for typos."
    )


class RateLimited(DomainError):
    code = ErrorCode.RATE_LIMITED
    default_message = "Too many attempts. Try again later."


class BadUserInput(DomainError):
    code = ErrorCode.BAD_USER_INPUT
    user_error = True


class Conflict(DomainError):
    code = ErrorCode.CONFLICT
    user_error = True


class ServiceUnavailable(DomainError):
    code = ErrorCode.SERVICE_UNAVAILABLE
    default_message = "The service is temporarily unavailable. Try again shortly."
