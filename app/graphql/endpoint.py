"""The /graphql route over HTTP: persisted queries first, then a compiled plan when the
document has one (app/graphql/compiled.py), else strawberry's view. WebSockets and the
GraphiQL page go to the view directly. Every answer is in the media type GuardMiddleware
negotiated (app/graphql/over_http.py); the plans answer through the view's own
`get_sub_response` and `create_response`, so the two paths cannot negotiate differently."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, cast

from graphql import GraphQLError
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse

from app.errors import ErrorCode
from app.graphql.compiled import Plan, compile_plan
from app.graphql.over_http import refusal
from app.graphql.persisted import PersistedQueries, PersistedQueryError
from app.http import media_type_of, parsed_body_of, request_id_of, with_body
from app.metrics import REQUESTS
from app.schema import OrdersSchema, parse_document, validate_cached


class GraphQLEndpoint:
    def __init__(
        self, view: GraphQL[Any, Any], persisted: PersistedQueries, *, plans: bool = True
    ) -> None:
        self.view = view
        self.persisted = persisted
        self.plans = plans
        schema = view.schema
        assert isinstance(schema, OrdersSchema)
        self.schema = schema

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.view(scope, receive, send)
            return
        body = parsed_body_of(scope)
        if not isinstance(body, dict):  # batches and the like: the view words the refusal
            await self.view(scope, receive, send)
            return
        try:
            query = self.persisted.resolve(body)
        except PersistedQueryError as error:
            REQUESTS.labels(operation="invalid", outcome=error.code.value).inc()
            # application/json keeps the 200 that Apollo's own servers answer (every APQ
            # client resends the text on it); graphql-response+json: a request error
            await refusal(
                media_type_of(scope),
                error.code,
                error.message,
                status=403 if error.code is ErrorCode.FORBIDDEN else 400,
                legacy_status=200,
            )(scope, receive, send)
            return
        if query is not body.get("query"):  # the text came from its hash: hand it on
            body = {**body, "query": query}
            receive = with_body(json.dumps(body).encode(), receive)
        operation_name = body.get("operationName")
        variables = body.get("variables")
        if (
            self.plans
            and isinstance(query, str)
            and isinstance(operation_name, str | None)
            and isinstance(variables, dict | None)
        ):
            plan = _plan_for(self.schema, query, operation_name)
            if plan is not None and await self._run(plan, variables, scope, receive, send):
                return
        await self.view(scope, receive, send)

    async def _run(
        self,
        plan: Plan,
        variables: dict[str, Any] | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> bool:
        """Answer with `plan`; False if it left the answer to the view (before running)."""
        request = Request(scope, receive)
        sub_response = await self.view.get_sub_response(request)
        context = await self.view.get_context(request, sub_response)
        result = await plan.run(context, variables, request_id_of(scope))
        if result is None:
            return False
        response = self.view.create_response(cast(GraphQLHTTPResponse, result), sub_response)
        await response(scope, receive, send)
        return True


@lru_cache(maxsize=512)
def _plan_for(schema: OrdersSchema, query: str, operation_name: str | None) -> Plan | None:
    """The compiled plan of a document the general path would accept, or None."""
    try:
        document = parse_document(query)
    except GraphQLError:
        return None
    if validate_cached(schema._schema, document, schema.rules):
        return None
    return compile_plan(schema, document, operation_name)
