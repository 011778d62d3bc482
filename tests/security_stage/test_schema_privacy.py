"""Schema privacy in allow-list mode (issue 14): a schema-recovery tool that works from
validation messages (clairvoyance-style: guess field, type, argument and enum names, read
"Cannot query field … on type …", "Did you mean …?", "Field … of required type … was not
provided") learns nothing from a `PERSISTED_QUERIES=allowlist` deployment.

The probe plays that tool against the real server in production mode, over HTTP and
WebSocket: unlisted documents built from a word list, the listed documents by hash with
variables of every wrong shape, a listed document with an unknown operation name, and
attempts to register new documents. It collects every name in every answer (messages,
paths, extension values, response keys) and keeps those that are names of the schema. In
allow-list mode it learns none beyond what it sent (and the listed documents, which the
deployment's own clients carry). The same probe against an open deployment — where the
schema is public (`schema.graphql`) and validation messages stay ordinary — learns type,
field and argument names, so the probe does find what it looks for.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import websockets
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    build_schema,
    parse,
    visit,
)
from graphql.language import Visitor
from websockets.typing import Subprotocol

from app.errors import ErrorCode
from app.graphql.persisted import load_allowlist, sha256_hex
from tests.security_stage.conftest import (
    DEMO_PASSWORD,
    ROOT,
    Server,
    record,
    stage_server,
)

GRAPHQL_WS = Subprotocol("graphql-transport-ws")
ALLOWLIST = load_allowlist()
LOGIN_HASH = "c9f7c5b7f9887ddc614aa2bf5333f22af78d40a0acaf2d3ce8baa36ecbc58ef1"
RETURN_HASH = "274bbc274ea653d80a1f23f33c4407d39e3dfe29b0c8bdd32a8ddff37a1e25f1"
MY_ORDERS_HASH = "f0c452c8aaa27aabb76678ecf3c9ca6f869dc2e61edec3d6270720ef50fd8f1e"
NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]*")

# What a recovery tool guesses: common GraphQL names, some of them real here. Type-like
# guesses are capitalised; the root types' names (Query, Mutation) are not guessed, so an
# open deployment gives them away in "… on type 'Query'".
WORDS = (
    "order",
    "orders",
    "user",
    "users",
    "me",
    "viewer",
    "product",
    "products",
    "shipment",
    "payment",
    "email",
    "id",
    "name",
    "status",
    "address",
    "admin",
    "login",
    "token",
    "sku",
    "price",
    "customer",
    "audit",
    "password",
    "secret",
    "refund",
    "node",
    "items",
    "total",
    "search",
    "debug",
)
WORD_REASONS = frozenset(word.upper() for word in WORDS)
TYPE_WORDS = ("Order", "User", "Product", "Shipment", "Payment", "Customer", "Admin")


# What an allow-list deployment may answer to the probe, whatever it sent.
PRIVATE_MESSAGES = tuple(
    re.compile(p)
    for p in (
        r"Only the registered operations are accepted by this deployment \(see the "
        r"persisted queries in the README\)\.",
        r"Variable '\$(code|lines|reason|comment|first)' has an invalid value for this "
        r"operation\.",
        r"The request does not fit the registered operation\.",
        r'Unknown operation named "(order|products)"\.',
        r"PersistedQueryNotSupported: only the registered operations are accepted\.",
    )
)


def schema_names() -> frozenset[str]:
    """Every name of the schema: types, fields, arguments, input fields, enum values."""
    schema = build_schema((ROOT / "schema.graphql").read_text(encoding="utf-8"))
    names: set[str] = set()
    for type_name, type_ in schema.type_map.items():
        if type_name.startswith("__"):
            continue
        names.add(type_name)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in type_.fields.items():
                names.add(field_name)
                names.update(field.args)
        elif isinstance(type_, GraphQLInputObjectType):
            names.update(type_.fields)
        elif isinstance(type_, GraphQLEnumType):
            names.update(type_.values)
    return frozenset(names)


def document_names(text: str) -> set[str]:
    """The names a document itself spells out (what a client shipping it gives away)."""
    found: set[str] = set()

    class Names(Visitor):
        def enter_name(self, node: Any, *_: Any) -> None:
            found.add(node.value)

    visit(parse(text), Names())
    return found


def names_in(answer: Any) -> set[str]:
    """Every name an answer shows: in error messages, paths and extension values, and the
    keys of `data` (response keys)."""
    found: set[str] = set()
    if isinstance(answer, list):
        for item in answer:
            found |= names_in(item)
        return found
    if not isinstance(answer, dict):
        return found
    for error in answer.get("errors") or []:
        if not isinstance(error, dict):
            continue
        found.update(NAME.findall(str(error.get("message", ""))))
        found.update(str(part) for part in error.get("path") or [] if isinstance(part, str))
        for value in (error.get("extensions") or {}).values():
            if isinstance(value, str):
                found.update(NAME.findall(value))
    found |= _keys(answer.get("data"))
    return found


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return {str(k) for k in value} | {n for v in value.values() for n in _keys(v)}
    if isinstance(value, list):
        return {n for v in value for n in _keys(v)}
    return set()


class Probe:
    """The recovery tool: sends guesses, remembers every name it sent and every answer."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.sent: set[str] = set()
        self.answers: list[Any] = []
        self.unlisted: list[tuple[int, str]] = []  # (status, body) of unlisted documents
        self.word_shaped: list[str] = []  # answers to a listed document, a guess per variable
        self.client = httpx.Client(timeout=30.0)
        for text in ALLOWLIST.values():  # the deployment's own clients carry these
            self.sent |= document_names(text)
        # the error codes are the documented protocol (README), not something to recover
        self.sent |= {code.value for code in ErrorCode}

    def post(self, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
        self.sent.update(NAME.findall(json.dumps(body)))
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(self.server.graphql_url, json=body, headers=headers)
        answer: dict[str, Any] = response.json()
        self.answers.append(answer)
        return answer

    def guess(self, query: str, token: str | None) -> None:
        """An unlisted document."""
        self.sent.update(NAME.findall(query))
        headers = {"authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(self.server.graphql_url, json={"query": query}, headers=headers)
        self.answers.append(response.json())
        self.unlisted.append((response.status_code, response.text))

    def learned(self) -> set[str]:
        shown: set[str] = set()
        for answer in self.answers:
            shown |= names_in(answer)
        return (shown & schema_names()) - self.sent


def guessed_documents() -> Iterator[str]:
    for word in WORDS:
        yield f"query {{ {word} }}"
        yield f"query {{ {word} {{ id }} }}"
        yield f"mutation {{ {word} }}"
        yield f'query {{ order(code: "7QKM-3XD2-9HAV-P4T9") {{ {word} }} }}'
        yield f"query {{ myOrders({word}: 1) {{ edges {{ cursor }} }} }}"
        yield f"query {{ myOrders(filter: {{ {word}: 1 }}) {{ edges {{ cursor }} }} }}"
        enum = word.upper()
        yield f"query {{ myOrders(filter: {{ status: [{enum}] }}) {{ edges {{ cursor }} }} }}"
    for type_word in TYPE_WORDS:
        yield f"query Q($v: {type_word}) {{ __typename }}"
        yield f"fragment F on {type_word} {{ id }} query {{ ...F }}"
        yield f'query {{ __type(name: "{type_word}") {{ name fields {{ name }} }} }}'
    yield "query { __schema { types { name } } }"
    yield "query { __typename }"
    yield "query { order { code } }"  # a real field without its argument
    yield "query { order(code: 1) { code } }"  # an argument of the wrong type


def listed_with_wrong_variables() -> Iterator[dict[str, Any]]:
    """The allow-listed documents by hash, with variables of every wrong shape."""
    hashed = {"persistedQuery": {"version": 1, "sha256Hash": RETURN_HASH}}
    shapes: list[dict[str, Any]] = [
        {},
        {"code": 1, "lines": 1, "reason": 1},
        {"code": "7QKM-3XD2-9HAV-P4T9", "lines": [{}], "reason": "X"},
        {"code": "7QKM-3XD2-9HAV-P4T9", "lines": [{"id": 1}], "reason": "DAMAGED"},
        {"code": "7QKM-3XD2-9HAV-P4T9", "lines": [{"sku": "A"}], "reason": "status"},
        {"code": "7QKM-3XD2-9HAV-P4T9", "lines": "all", "reason": ["x"]},
    ]
    shapes += [
        {"code": "7QKM-3XD2-9HAV-P4T9", "lines": [{word: 1}], "reason": word.upper()}
        for word in WORDS
    ]
    for variables in shapes:
        yield {"extensions": hashed, "variables": variables}
    for first in ("ten", {"n": 1}, [1], 2**40):
        yield {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": MY_ORDERS_HASH}},
            "variables": {"first": first},
        }
    yield {"extensions": hashed, "variables": {}, "operationName": "order"}
    yield {"query": ALLOWLIST[MY_ORDERS_HASH], "operationName": "products"}
    # registering a new document by hash and text
    new = "query { products(first: 1) { edges { node { sku } } } }"
    yield {
        "query": new,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(new)}},
    }


async def _over_websocket(
    server: Server, token: str, documents: list[tuple[str, dict[str, Any]]]
) -> list[Any]:
    answers: list[Any] = []
    async with websockets.connect(server.ws_url, subprotocols=[GRAPHQL_WS]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for number, (query, variables) in enumerate(documents):
            payload = {"query": query, "variables": variables}
            await ws.send(json.dumps({"id": str(number), "type": "subscribe", "payload": payload}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                if message.get("type") == "error":
                    answers.append({"errors": message["payload"]})
                    break
                if message.get("type") == "next":
                    answers.append(message["payload"])
                if message.get("type") == "complete":
                    break
    return answers


def run_probe(server: Server) -> Probe:
    probe = Probe(server)
    login = probe.post(
        {
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": LOGIN_HASH}},
            "variables": {"email": "bob@example.com", "password": DEMO_PASSWORD},
        }
    )
    token = login["data"]["login"]["tokens"]["accessToken"]
    for query in guessed_documents():
        probe.guess(query, token)
    for body in listed_with_wrong_variables():
        answer = probe.post(body, token)
        reason = body.get("variables", {}).get("reason")
        if isinstance(reason, str) and reason in WORD_REASONS:
            probe.word_shaped.append(json.dumps(answer, sort_keys=True))
    over_ws: list[tuple[str, dict[str, Any]]] = [
        (f"subscription {{ {word} }}", {}) for word in WORDS[:8]
    ]
    over_ws += [('subscription { orderUpdates(code: "7QKM-3XD2-9HAV-P4T9") { status } }', {})]
    over_ws += [("subscription { orderUpdates { type } }", {})]
    listed = next(text for text in ALLOWLIST.values() if "subscription OrderUpdates" in text)
    over_ws += [(listed, {"code": {"id": 1}}), (listed, {}), (listed, {"code": ["x"]})]
    for query, variables in over_ws:
        probe.sent.update(NAME.findall(query + json.dumps(variables)))
    probe.answers += asyncio.run(_over_websocket(server, token, over_ws))
    probe.client.close()
    return probe


@pytest.fixture(scope="module")
def allowlist_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with stage_server(tmp_path_factory, "stage-allowlist", PERSISTED_QUERIES="allowlist") as server:
        yield server


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with stage_server(tmp_path_factory, "stage-open") as server:
        yield server


def test_a_recovery_tool_learns_no_schema_name_from_an_allowlist_deployment(
    allowlist_server: Server,
) -> None:
    probe = run_probe(allowlist_server)
    learned = probe.learned()
    record(
        "schema-privacy-allowlist.txt",
        [
            f"answers: {len(probe.answers)}, guessed names: {len(probe.sent)}",
            f"schema names learned beyond what was sent: {sorted(learned)}",
        ],
    )
    assert learned == set()
    # Every unlisted document got the very same answer: existing and made-up names alike.
    assert len(probe.unlisted) > 200
    assert len(set(probe.unlisted)) == 1, set(probe.unlisted)
    status, body = probe.unlisted[0]
    assert status == 200  # application/json (no Accept): GraphQL-over-HTTP legacy answer
    assert [e["extensions"]["code"] for e in json.loads(body)["errors"]] == ["FORBIDDEN"]
    # A guessed input field answers like any other, real (sku) or not: neither the
    # message nor the number of errors tells them apart.
    assert len(probe.word_shaped) == len(WORDS)
    assert len(set(probe.word_shaped)) == 1, set(probe.word_shaped)
    # No answer anywhere suggests a name.
    text = json.dumps(probe.answers)
    assert not re.search(r"did you mean|suggest|similar", text, re.IGNORECASE)
    # Every message is one of a few that name only what the client sent: not even the
    # input types and fields of the listed documents (which the name count above cannot
    # tell from the documents' own selections).
    messages = {
        error["message"]
        for answer in probe.answers
        for error in (answer.get("errors") or [] if isinstance(answer, dict) else [])
    }
    assert messages, probe.answers[:3]
    odd = {m for m in messages if not any(p.fullmatch(m) for p in PRIVATE_MESSAGES)}
    assert odd == set(), odd


def test_the_same_probe_learns_the_schema_from_an_open_deployment(open_server: Server) -> None:
    """The schema is public in the open mode: its validation messages name types, fields
    and arguments (suggestions stay off). This is also the probe's own check: it finds
    what it looks for when the answers show it."""
    probe = run_probe(open_server)
    learned = probe.learned()
    record(
        "schema-privacy-open.txt",
        [
            f"answers: {len(probe.answers)}, guessed names: {len(probe.sent)}",
            f"schema names learned beyond what was sent: {sorted(learned)}",
        ],
    )
    assert {"Query", "Mutation", "OrderStatus", "OrderFilterInput"} <= learned, learned
    assert len(learned) >= 5, learned


def test_listed_documents_still_run_in_allowlist_mode(allowlist_server: Server) -> None:
    """The control: an allow-listed document by hash works (the probe's refusals are not
    a server that refuses everything)."""
    body = httpx.post(
        allowlist_server.graphql_url,
        json={
            "extensions": {"persistedQuery": {"version": 1, "sha256Hash": LOGIN_HASH}},
            "variables": {"email": "alice@example.com", "password": DEMO_PASSWORD},
        },
        timeout=30.0,
    ).json()
    assert body["data"]["login"]["tokens"]["accessToken"], body
