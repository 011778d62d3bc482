"""Persisted queries: Apollo's automatic persisted queries protocol (open mode, the default)
and the allow-list-only mode (PERSISTED_QUERIES=allowlist) whose list is generated from
the example clients in examples/ and the staff console's modules."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from graphql import parse, print_ast
from sqlalchemy import func, select
from starlette.testclient import TestClient

from app.accounts.models import User
from app.console.routes import CONSOLE_DIR
from app.container import Services, build_services
from app.graphql.persisted import (
    ALLOWLIST_PATH,
    APQ_CACHE_SIZE,
    PersistedQueries,
    collect_documents,
    export_allowlist,
    load_allowlist,
    sha256_hex,
)
from app.main import create_app
from app.orders.service import OrderView
from app.schema import schema
from app.security.codes import display
from app.settings import Settings
from tests.conftest import FAST_PASSWORDS, PASSWORD, Account, db_session
from tests.support.subscriptions import wait_for_subscriber

ROOT = Path(__file__).resolve().parents[2]
ALLOWLIST = load_allowlist()
BY_NAME = {
    next(d.name.value for d in parse(text).definitions if hasattr(d, "operation")): text  # type: ignore[attr-defined]
    for text in ALLOWLIST.values()
}
LOGIN = BY_NAME["Login"]
ORDER = BY_NAME["Order"]
NOT_LISTED = "query Mine { me { email } }"
REGISTER = (
    'mutation { register(email: "new@example.com", password: "a-long-password-42", '
    'name: "New") { userErrors { code } } }'
)


def post(http: TestClient, body: dict[str, Any], token: str | None = None) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = http.post("/graphql", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def persisted(digest: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


def codes_of(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


# -- the allow-list ------------------------------------------------------------------------


def test_the_checked_in_allowlist_is_what_the_examples_and_the_console_contain() -> None:
    generated = export_allowlist([ROOT / "examples", CONSOLE_DIR], schema._schema)
    assert ALLOWLIST_PATH.read_text(encoding="utf-8") == generated, (
        "run: orders-api export-persisted-queries -o app/graphql/persisted_queries.json"
    )


def test_the_allowlist_holds_the_operations_of_both_example_clients() -> None:
    web = (ROOT / "examples/web/app.js").read_text(encoding="utf-8")
    mobile = (ROOT / "examples/mobile_client.py").read_text(encoding="utf-8")
    # the graphql-ws example's document (Apollo's gql`` documents are not collected: Apollo
    # Client adds __typename to every selection, so it never sends them as written)
    node = (ROOT / "examples/node/live.mjs").read_text(encoding="utf-8")
    for name in ("Login", "Refresh", "Logout", "MyOrders", "Order", "FollowOrder",
                 "ReturnEligibility", "RequestReturn", "CreateTrackingLink",
                 "RevokeTrackingLink", "TrackingLink"):  # fmt: skip
        assert f" {name}" in web
    assert {"Login", "Refresh", "MyOrders", "FollowOrder"} <= set(BY_NAME)
    assert {"Order", "ReturnEligibility", "RequestReturn", "Logout"} <= set(BY_NAME)
    # the web example's share tracking and its public tracking page
    assert {"CreateTrackingLink", "RevokeTrackingLink", "TrackingLink"} <= set(BY_NAME)
    # the console's documents (tests/browser/test_console_modules.py: the very texts the
    # browser sends)
    console = set(collect_documents([CONSOLE_DIR], schema._schema).values())
    assert {"ConsoleLogin", "SupportOrder", "PickList", "DeactivateUser"} <= set(BY_NAME)
    for text in ALLOWLIST.values():
        assert (
            text in web
            or text in node
            or text in mobile
            or repr(text)[1:-1] in mobile
            or text in console
        )


# -- the export reads JS template literals --------------------------------------------------

SELECTION = "email name role"


def exported_from(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / "screen.js").write_text(source, encoding="utf-8")
    return list(collect_documents([tmp_path], schema._schema).values())


def test_interpolated_module_constants_are_resolved_like_the_browser_does(
    tmp_path: Path,
) -> None:
    source = (
        "const FIELDS = `email ${INNER}`;\n"
        "const INNER = `name role`;\n"  # defined later: still a constant of the module
        "export const ME = `query Me { me { ${FIELDS} } }`;\n"
        "const SPACED = `query Spaced { me { ${ FIELDS } } }`;\n"
        "function f(x) {\n  return `query Inline { me { ${x} } }`;\n}\n"
    )
    assert sorted(exported_from(tmp_path, source)) == [
        "query Me { me { email name role } }",
        "query Spaced { me { email name role } }",
    ]


def test_an_operation_constant_with_another_interpolation_is_refused(tmp_path: Path) -> None:
    for expression in ("${fields()}", "${UNKNOWN}", "${A + B}"):
        query = f"const Q = `query Q {{ me {{ {expression} }} }}`;\n"
        source = "const A = `email`;\nconst B = `name`;\n" + query
        with pytest.raises(ValueError, match=r"Q interpolates .*cannot resolve"):
            exported_from(tmp_path, source)
    # a template that is no operation may interpolate anything: it is not collected
    assert exported_from(tmp_path, "const LABEL = `Order ${code}`;\n") == []


# -- open mode: automatic persisted queries ---------------------------------------------------


def test_an_unknown_hash_asks_for_the_text_then_the_hash_alone_works(
    http: TestClient, owner: Account
) -> None:
    query = "query Me { me { email role } }"
    digest = sha256_hex(query)
    # the hash alone, never seen: Apollo's PersistedQueryNotFound, so the client sends text
    first = post(http, {"extensions": persisted(digest)}, owner.token)
    assert first["errors"][0]["message"] == "PersistedQueryNotFound"
    assert codes_of(first) == ["BAD_USER_INPUT"] and "data" not in first
    # text and hash: served and remembered
    second = post(http, {"query": query, "extensions": persisted(digest)}, owner.token)
    assert second == {"data": {"me": {"email": owner.email, "role": "CUSTOMER"}}}
    # from now on the hash is enough
    third = post(http, {"extensions": persisted(digest)}, owner.token)
    assert third == second


def test_an_allowlisted_document_is_known_by_its_hash_without_registering(
    http: TestClient, owner: Account, place_order: Callable[..., OrderView]
) -> None:
    view = place_order(owner)
    body = {
        "extensions": persisted(sha256_hex(ORDER)),
        "variables": {"code": view.order.code},
        "operationName": "Order",
    }
    answer = post(http, body, owner.token)
    assert answer["data"]["order"]["code"] == display(view.order.code)
    assert answer["data"]["order"]["lines"][0]["sku"] == "MUG-001"


@pytest.mark.parametrize(
    ("extensions", "query", "message"),
    [
        (persisted(sha256_hex("{ me { email } }")), "{ me { name } }",
         "provided sha does not match query"),
        ({"persistedQuery": {"version": 2, "sha256Hash": "0" * 64}}, None,
         "Unsupported persisted query version."),
        (persisted("ABC"), None, "sha256Hash must be 64 lowercase hex digits."),
        ({"persistedQuery": "yes"}, None, "Unsupported persisted query version."),
    ],
)  # fmt: skip
def test_malformed_persisted_query_requests_get_a_clear_error(
    http: TestClient, extensions: dict[str, Any], query: str | None, message: str
) -> None:
    body: dict[str, Any] = {"extensions": extensions}
    if query is not None:
        body["query"] = query
    answer = post(http, body)
    assert answer == {"errors": [{"message": message, "extensions": {"code": "BAD_USER_INPUT"}}]}


def test_registered_documents_are_bounded_oldest_first() -> None:
    store = PersistedQueries({}, allowlist_only=False)
    texts = [f"{{ me {{ email }} }} # {i}" for i in range(APQ_CACHE_SIZE + 5)]
    for text in texts:
        assert store.resolve({"query": text, "extensions": persisted(sha256_hex(text))}) == text
    assert len(store._registered) == APQ_CACHE_SIZE
    newest = texts[-1]
    assert store.resolve({"extensions": persisted(sha256_hex(newest))}) == newest
    with pytest.raises(Exception, match="PersistedQueryNotFound"):
        store.resolve({"extensions": persisted(sha256_hex(texts[0]))})


# -- allow-list-only mode -----------------------------------------------------------------------


@pytest.fixture
def locked_services(settings: Settings) -> Services:
    """The allow-list deployment's own services (bound to its own app's event loop)."""
    return build_services(
        replace(settings, persisted_queries="allowlist"), passwords=FAST_PASSWORDS
    )


@pytest.fixture
def locked(settings: Settings, locked_services: Services) -> Iterator[TestClient]:
    app = create_app(replace(settings, persisted_queries="allowlist"), run_sender=False,
                     services=locked_services)  # fmt: skip
    with TestClient(app, client=("10.0.0.2", 50000)) as client:
        yield client


def users(services: Services) -> int:
    with db_session(services) as session:
        return int(session.execute(select(func.count()).select_from(User)).scalar_one())


def test_allowlist_mode_refuses_other_documents_and_runs_nothing(
    locked: TestClient, services: Services, owner: Account
) -> None:
    before = users(services)
    for query in (NOT_LISTED, REGISTER, "{ __schema { types { name } } }"):
        answer = post(locked, {"query": query}, owner.token)
        assert codes_of(answer) == ["FORBIDDEN"], (query, answer)
        assert answer.get("data") is None
    assert users(services) == before  # the mutation never ran


def test_allowlist_mode_serves_listed_documents_by_text_reformatted_text_or_hash(
    locked: TestClient, owner: Account
) -> None:
    variables = {"email": owner.email, "password": PASSWORD}
    by_text = post(locked, {"query": LOGIN, "variables": variables})
    assert by_text["data"]["login"]["tokens"]["accessToken"]
    reformatted = print_ast(parse(LOGIN))  # other whitespace, same document
    assert reformatted != LOGIN
    assert post(locked, {"query": reformatted, "variables": variables})["data"]["login"]["tokens"]
    by_hash = post(locked, {"extensions": persisted(sha256_hex(LOGIN)), "variables": variables})
    assert by_hash["data"]["login"]["tokens"]["accessToken"]


def test_allowlist_mode_refuses_to_register_new_documents(
    locked: TestClient, owner: Account
) -> None:
    body = {"query": NOT_LISTED, "extensions": persisted(sha256_hex(NOT_LISTED))}
    answer = post(locked, body, owner.token)
    assert codes_of(answer) == ["FORBIDDEN"]
    assert answer["errors"][0]["message"].startswith("PersistedQueryNotSupported")
    again = post(locked, {"extensions": persisted(sha256_hex(NOT_LISTED))}, owner.token)
    assert again["errors"][0]["message"] == "PersistedQueryNotFound"


def test_allowlist_mode_holds_for_websocket_subscriptions_too(
    locked: TestClient,
    locked_services: Services,
    owner: Account,
    place_order: Callable[..., OrderView],
) -> None:
    view = place_order(owner)
    code = display(view.order.code)
    unlisted = f'subscription {{ orderUpdates(code: "{code}") {{ type }} }}'
    auth = {"Authorization": f"Bearer {owner.token}"}
    with locked.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": auth})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": unlisted}})
        refused = ws.receive_json()
        assert refused["type"] == "error" and refused["id"] == "1"
        assert [e["extensions"]["code"] for e in refused["payload"]] == ["FORBIDDEN"]
        listed = {"query": BY_NAME["FollowOrder"], "variables": {"code": code}}
        ws.send_json({"id": "2", "type": "subscribe", "payload": listed})
        wait_for_subscriber(locked_services, view.order.id)
        cancel = locked_services.orders.cancel_order(owner.viewer, view.order.code, "10.0.0.2")
        assert locked.portal is not None
        locked.portal.call(lambda: cancel)
        update = ws.receive_json()
        assert update["type"] == "next" and update["id"] == "2"
        assert update["payload"]["data"]["orderUpdates"]["order"]["status"] == "CANCELLED"


RETURN_VARIABLES = {"code": "7QKM-3XD2-9HAV-P4T9", "lines": [{"skew": 1}], "reason": "BROKEN"}


def test_allowlist_mode_variable_errors_name_nothing_of_the_schema(
    locked: TestClient, owner: Account
) -> None:
    """A listed document with variables that do not fit: the variable is named (the
    client's own document has it), the input type, its fields and the enum are not."""
    body = {"query": BY_NAME["RequestReturn"], "variables": RETURN_VARIABLES}
    answer = post(locked, body, owner.token)
    messages = [e["message"] for e in answer["errors"]]
    assert messages == [
        "Variable '$lines' has an invalid value for this operation.",
        "Variable '$reason' has an invalid value for this operation.",
    ], messages
    assert codes_of(answer) == ["BAD_USER_INPUT", "BAD_USER_INPUT"]


def test_open_mode_variable_errors_stay_ordinary(http: TestClient, owner: Account) -> None:
    """The schema is public without the allow-list: GraphQL's own wording, which names the
    input type and the missing fields (but suggests nothing)."""
    body = {"query": BY_NAME["RequestReturn"], "variables": RETURN_VARIABLES}
    text = " ".join(e["message"] for e in post(http, body, owner.token)["errors"])
    assert "ReturnLineInput" in text and "'sku'" in text and "ReturnReason" in text, text
    assert "Did you mean" not in text


def test_an_unknown_setting_is_refused(settings: Settings) -> None:
    with pytest.raises(Exception, match="PERSISTED_QUERIES"):
        replace(settings, persisted_queries="closed").validate()


def test_export_command_writes_the_same_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "list.json"
    subprocess.run(
        [sys.executable, "-m", "app.cli", "export-persisted-queries", "-o", str(out)],
        cwd=ROOT,
        check=True,
    )
    assert json.loads(out.read_text()) == json.loads(ALLOWLIST_PATH.read_text())
