"""GraphQL over HTTP (the GraphQL Foundation's draft spec, which `graphql-http`'s audit
checks): the status and body of a GraphQL response in the media type negotiated by
GuardMiddleware (app/http.py). The view (strawberry's path) and the compiled plans answer
through the same `create_response`, so both paths negotiate alike.

| answer                                 | application/json  | …graphql-response+json |
|----------------------------------------|-------------------|------------------------|
| data (field errors included)           | 200               | 200                    |
| parse, validation, coercion errors     | 200, `data: null` | 400 (403 FORBIDDEN)    |
| whole request RATE_LIMITED             | 429, null fields  | 429, no `data`         |
| no query, unknown operation, bad types | 400               | 400                    |
| persisted query not found / refused    | 200               | 400 / 403              |

Refusals never carry `data` in application/graphql-response+json. application/json keeps
the answers its clients had before the newer media type existed (the spec asks for 200
there, so that such clients read the errors); a client that asks for
application/graphql-response+json reads every error body whatever the status (Apollo
Client 4 reads a non-2xx body only then)."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

from app.errors import ErrorCode
from app.http import GRAPHQL_RESPONSE, JSON, error_document

_FORBIDDEN = ErrorCode.FORBIDDEN.value


def whole_request_retry_after(response_data: Any) -> int | None:
    """Retry-After of a request refused as a whole by the limiter (no data, only
    RATE_LIMITED errors), else None."""
    if not isinstance(response_data, dict):
        return None
    errors = response_data.get("errors") or []
    data = response_data.get("data")
    nothing = data is None or (isinstance(data, dict) and all(v is None for v in data.values()))
    codes = [e.get("extensions", {}).get("code") for e in errors if isinstance(e, dict)]
    if not errors or not nothing or any(code != "RATE_LIMITED" for code in codes):
        return None
    return max(int(e.get("extensions", {}).get("retryAfter") or 1) for e in errors)


def is_request_error(response_data: Any) -> bool:
    """Refused before execution (parse, validation, variable coercion, unknown operation):
    no data, and no error with a `path` (a field error always has one)."""
    if not isinstance(response_data, dict) or response_data.get("data") is not None:
        return False
    errors = response_data.get("errors") or []
    return bool(errors) and all(isinstance(e, dict) and not e.get("path") for e in errors)


def request_error_status(errors: list[Any]) -> int:
    """400, or 403 when every error is FORBIDDEN (the allow-list): 'not permitted'."""
    codes = {(e.get("extensions") or {}).get("code") for e in errors if isinstance(e, dict)}
    return 403 if codes == {_FORBIDDEN} else 400


def shape(response_data: Any, media_type: str) -> tuple[int, Any, int | None]:
    """(status, body, retry-after) of a GraphQL response in `media_type`."""
    retry = whole_request_retry_after(response_data)
    if media_type != GRAPHQL_RESPONSE:
        return (200 if retry is None else 429), response_data, retry
    if retry is not None:
        return 429, _without_data(response_data), retry
    if is_request_error(response_data):
        return request_error_status(response_data["errors"]), _without_data(response_data), None
    return 200, response_data, None


def _without_data(response_data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in response_data.items() if key != "data"}


def refusal(
    media_type: str,
    code: ErrorCode,
    message: str,
    *,
    status: int,
    legacy_status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """A request refused before any operation ran: one error, no `data`. `legacy_status`
    is what application/json answers if it differs (persisted queries keep 200 there)."""
    if media_type != GRAPHQL_RESPONSE and legacy_status is not None:
        status = legacy_status
    return Response(
        json.dumps(error_document(code.value, message)),
        status_code=status,
        media_type=media_type if media_type == GRAPHQL_RESPONSE else JSON,
        headers=headers,
    )
