"""The README runs: every ```graphql and ```sh block of README.md, in the order a reader
meets them, against the real server process (`live_server`: migrated, demo-seeded, over
HTTP and WebSocket).

How the README is read:

* Every GraphQL operation is run on its own. It must be named and say what it is
  (`query`, `mutation`, `subscription`); `STEPS` below says who runs it (a demo login or
  anonymous) and which real values its variables get (`$code`, `$rma`, `$token`, …: demo
  orders, and what earlier examples created). An answer with `errors`, or with a non-empty
  `userErrors` anywhere, fails the test, and so does an operation without a step (a new
  example needs one) or a step without an operation (a removed example).
* Every shell block runs under `bash -euo pipefail` from the repository root with
  `http://127.0.0.1:8000` pointed at the live server; a non-zero exit fails the test. A line
  that is only a comment right after a command (`# 202 {"status":"accepted"}`) is the
  output the command must print.
* A block that cannot run here is marked in the README by the line before it:
  `<!-- readme-test: skip (why) -->`. The reason is required; the test lists every such
  block, so nothing is skipped silently. Blocks in other languages (js, python, json, text)
  are not commands of this test; the summary counts them too.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from graphql import OperationDefinitionNode, parse

from app.security import codes
from tests.e2e.conftest import DEMO_PASSWORD, THROUGH_REDIS, LiveServer

# On Redis: the subscription example waits until Redis counts the subscription.
pytestmark = [pytest.mark.e2e, THROUGH_REDIS]

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
README_URL = "http://127.0.0.1:8000"
RUN_LANGUAGES = {"graphql", "sh"}
MARKER = re.compile(
    r"^<!--\s*readme-test:\s*(?P<directive>[\w-]+)\s*(?:\((?P<reason>.*)\))?\s*-->$"
)
SHELL_TIMEOUT = 60.0


# -- reading the README ---------------------------------------------------------------------


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    language: str
    text: str
    skip: str | None  # the reason, when marked `readme-test: skip (…)`

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.language or 'no language'})"


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of `text`, each with the marker on the line before it (if any)."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("```"):
            i += 1
            continue
        start, language = i, lines[i][3:].strip()
        end = next(j for j in range(start + 1, len(lines)) if lines[j].startswith("```"))
        skip = None
        marker = MARKER.match(lines[start - 1].strip()) if start > 0 else None
        if marker:
            assert marker["directive"] == "skip", (
                f"README.md:{start}: unknown readme-test directive {marker['directive']!r}"
            )
            reason = (marker["reason"] or "").strip()
            assert reason, f"README.md:{start}: `readme-test: skip` needs a reason: skip (why)"
            skip = reason
        blocks.append(Block(start + 1, language, "\n".join(lines[start + 1 : end]), skip))
        i = end + 1
    return blocks


@dataclass
class Operation:
    name: str
    kind: str  # query, mutation, subscription
    text: str
    variables: set[str]
    block: Block


def operations_of(block: Block) -> list[Operation]:
    document = parse(block.text)
    found: list[Operation] = []
    for definition in document.definitions:
        assert isinstance(definition, OperationDefinitionNode), (
            f"{block.where}: only operations, no fragments or type definitions"
        )
        assert definition.loc is not None
        text = block.text[definition.loc.start : definition.loc.end]
        kind = definition.operation.value
        assert definition.name is not None, f"{block.where}: name every operation ({text[:40]}…)"
        assert text.startswith(kind), (
            f"{block.where}: {definition.name.value} must start with `{kind}` (its kind "
            "should be clear from the example)"
        )
        variables = {v.variable.name.value for v in definition.variable_definitions or ()}
        found.append(Operation(definition.name.value, kind, text, variables, block))
    return found


def shell_commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each command of a shell block."""
    commands: list[tuple[str, list[str]]] = []
    pending: list[str] = []
    for line in block.text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") and not pending and commands:
            commands[-1][1].append(stripped.lstrip("#").strip())
            continue
        if not stripped or stripped.startswith("#"):
            continue
        pending.append(line)
        if not line.rstrip().endswith("\\"):
            commands.append(("\n".join(pending), []))
            pending = []
    assert not pending, f"{block.where}: a command ends with a backslash"
    return commands


# -- running it ----------------------------------------------------------------------------


@dataclass
class Reader:
    """Someone following the README: logins, the demo data, and what the examples made."""

    server: LiveServer
    tokens: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    def token(self, user: str) -> str:
        if user not in self.tokens:
            data = self.post(
                None,
                "mutation($e: String!, $p: String!) "
                "{ login(email: $e, password: $p) { tokens { accessToken } } }",
                {"e": f"{user}@example.com", "p": DEMO_PASSWORD},
            )
            self.tokens[user] = data["login"]["tokens"]["accessToken"]
        return self.tokens[user]

    def post(self, user: str | None, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        response = httpx.post(
            self.server.graphql_url,
            json={"query": query, "variables": variables},
            headers=headers,
            timeout=30,
        )
        body = response.json()
        assert response.status_code == 200 and "errors" not in body, (
            f"HTTP {response.status_code}: {body}"
        )
        problems = list(_user_errors(body["data"]))
        assert not problems, f"userErrors: {problems}"
        data: dict[str, Any] = body["data"]
        return data

    def demo_order(self, user: str, status: str) -> str:
        """The code of `user`'s demo order in `status`."""
        key = f"{user}:{status}"
        if key not in self.values:
            data = self.post(
                user,
                "query($s: [OrderStatus!]) "
                "{ myOrders(first: 50, filter: {status: $s}) { edges { node { code } } } }",
                {"s": [status]},
            )
            edges = data["myOrders"]["edges"]
            assert edges, f"the demo data has no {status} order of {user}"
            self.values[key] = edges[-1]["node"]["code"]  # newest first: the oldest is seeded
        return self.values[key]

    def follow(
        self, user: str, operation: str, variables: dict[str, Any], trigger: Callable[[], None]
    ) -> dict[str, Any]:
        """Run a subscription over graphql-transport-ws; return its first event after `trigger`."""
        url = self.server.base_url.replace("http://", "ws://") + "/graphql"

        async def first() -> dict[str, Any]:
            transport = WebsocketsTransport(
                url=url,
                init_payload={"Authorization": f"Bearer {self.token(user)}"},
                subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
            )
            following = await self.server.following(variables["code"])
            async with Client(transport=transport) as session:
                updates = session.subscribe(GraphQLRequest(operation, variable_values=variables))
                waiting = asyncio.ensure_future(updates.__anext__())
                await self.server.wait_until_following(variables["code"], following + 1)
                await asyncio.to_thread(trigger)
                update: dict[str, Any] = await asyncio.wait_for(waiting, timeout=10)
                await updates.aclose()
                return update

        return asyncio.run(first())


def _user_errors(value: Any) -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "userErrors" and item:
                yield item
            else:
                yield from _user_errors(item)
    elif isinstance(value, list):
        for item in value:
            yield from _user_errors(item)


def as_typed(code: str) -> str:
    """How a customer might type it: lower case, spaces for hyphens."""
    return code.lower().replace("-", " ")


# -- what each example needs ----------------------------------------------------------------


@dataclass
class Step:
    user: str | None  # demo login (alice, bob, support, warehouse, admin) or anonymous
    variables: Callable[[Reader], dict[str, Any]] = lambda _: {}
    before: Callable[[Reader], None] | None = None
    then: Callable[[Reader, dict[str, Any]], None] | None = None


def _remember(name: str, path: str) -> Callable[[Reader, dict[str, Any]], None]:
    def then(reader: Reader, data: dict[str, Any]) -> None:
        value: Any = data
        for key in path.split("."):
            value = value[key]
        assert isinstance(value, str) and value, f"{path} is empty"
        reader.values[name] = value

    return then


def _expect(path: str, expected: Any) -> Callable[[Reader, dict[str, Any]], None]:
    def then(_: Reader, data: dict[str, Any]) -> None:
        value: Any = data
        for key in path.split("."):
            value = value[key]
        assert value == expected, f"{path}: {value!r}, expected {expected!r}"

    return then


def _bought(reader: Reader) -> dict[str, Any]:
    return {"code": reader.values["bought"]}


def _delivered(reader: Reader) -> dict[str, Any]:
    return {"code": reader.demo_order("alice", "DELIVERED")}


def _rma(reader: Reader) -> dict[str, Any]:
    return {"rma": reader.values["rma"]}


def _placed_from_checkout(reader: Reader, data: dict[str, Any]) -> None:
    order = data["placeOrder"]["order"]
    assert order["code"] == reader.values["checkout"], "the order has the summary's code"
    reader.values["bought"] = order["code"]


def _in_queue(reader: Reader, data: dict[str, Any]) -> None:
    queued = {edge["node"]["code"] for edge in data["fulfillmentQueue"]["edges"]}
    assert reader.values["bought"] in queued


def _packed(_: Reader, data: dict[str, Any]) -> None:
    payload = data["packOrder"]
    assert payload["order"]["status"] == "PACKED", payload
    assert payload["missing"] == [] and payload["unexpected"] == [], payload


def _second_return(reader: Reader) -> None:
    """RejectReturn needs a return of its own (the first one goes on to be refunded)."""
    data = reader.post(
        "alice",
        'mutation($code: String!) { requestReturn(code: $code, lines: [{sku: "NOTE-A5", '
        "quantity: 1}], reason: NO_LONGER_NEEDED) { returnRequest { rma } userErrors { code } } }",
        _delivered(reader),
    )
    reader.values["rma2"] = data["requestReturn"]["returnRequest"]["rma"]


def _deliver_bought(reader: Reader) -> None:
    reader.post(
        "warehouse",
        'mutation($code: String!) { addTrackingEvent(code: $code, carrier: "DHL", '
        'trackingNumber: "JJD0001234", status: DELIVERED, location: "Berlin", '
        'eventId: "readme-delivered") { recorded userErrors { code message } } }',
        _bought(reader),
    )


def _timeline(reader: Reader, data: dict[str, Any]) -> None:
    returns = data["order"]["returns"]
    assert {r["status"] for r in returns} == {"REFUNDED", "REJECTED"}, returns
    assert any(event["kind"] == "REFUNDED" for event in data["order"]["timeline"]), data


def _found_alice(reader: Reader, data: dict[str, Any]) -> None:
    found = [row["code"] for row in data["supportSearch"]]
    assert {reader.values["bought"], reader.values["direct"]} <= set(found), found


STEPS: dict[str, Step] = {
    "Login": Step(None, then=_remember("login", "login.tokens.accessToken")),
    "StartCheckout": Step("alice", then=_remember("checkout", "startCheckout.checkout.code")),
    "PlaceCheckout": Step(
        "alice", lambda r: {"checkoutCode": r.values["checkout"]}, then=_placed_from_checkout
    ),
    "PlaceOrder": Step("alice", then=_remember("direct", "placeOrder.order.code")),
    "Order": Step(
        "alice",
        lambda r: {"code": as_typed(r.values["bought"])},
        then=lambda r, d: _expect("order.code", r.values["bought"])(r, d),
    ),
    "MyOrders": Step(
        "alice", then=lambda _, d: None if d["myOrders"]["edges"] else pytest.fail("no mug")
    ),
    "CancelOrder": Step(
        "alice",
        lambda r: {"code": r.values["direct"]},
        then=_expect("cancelOrder.order.status", "CANCELLED"),
    ),
    "Reorder": Step(
        "alice",
        _delivered,
        then=lambda _, d: None if d["reorder"]["lines"] else pytest.fail("no lines"),
    ),
    "FulfillmentQueue": Step("warehouse", then=_in_queue),
    "PickList": Step("warehouse", _bought),
    "PackOrder": Step("warehouse", _bought, then=_packed),
    "ShipOrder": Step("warehouse", _bought, then=_expect("shipOrder.order.status", "SHIPPED")),
    "AddTrackingEvent": Step("warehouse", _bought, then=_expect("addTrackingEvent.recorded", True)),
    "ReturnEligibility": Step(
        "alice", _delivered, then=_expect("returnEligibility.canReturn", True)
    ),
    "RequestReturn": Step(
        "alice", _delivered, then=_remember("rma", "requestReturn.returnRequest.rma")
    ),
    "ReturnRequest": Step("alice", _rma, then=_expect("returnRequest.status", "REQUESTED")),
    "ApproveReturn": Step(
        "support", _rma, then=_expect("approveReturn.returnRequest.status", "APPROVED")
    ),
    "RejectReturn": Step(
        "support",
        lambda r: {"rma": r.values["rma2"]},
        before=_second_return,
        then=_expect("rejectReturn.returnRequest.status", "REJECTED"),
    ),
    "ReceiveReturn": Step(
        "warehouse", _rma, then=_expect("receiveReturn.returnRequest.status", "RECEIVED")
    ),
    "RefundReturn": Step(
        "admin", _rma, then=_expect("refundReturn.returnRequest.status", "REFUNDED")
    ),
    "OrderTimeline": Step("alice", _delivered, then=_timeline),
    "CreateTrackingLink": Step(
        "alice", _bought, then=_remember("link", "createTrackingLink.link.token")
    ),
    "TrackingLink": Step(
        None,
        lambda r: {"token": r.values["link"]},
        then=lambda _, d: None if d["trackingLink"]["shipments"] else pytest.fail("no parcel"),
    ),
    "RevokeTrackingLink": Step(
        "alice", lambda r: {"token": r.values["link"]}, then=_expect("revokeTrackingLink.ok", True)
    ),
    "SupportOrder": Step(
        "support", _bought, then=_expect("supportOrder.customer.email", "alice@example.com")
    ),
    # the staff console's API
    "SupportSearch": Step("support", lambda _: {"email": "alice@example.com"}, then=_found_alice),
    "ReturnForCustomer": Step(
        "support", _delivered, then=_remember("rma3", "requestReturn.returnRequest.rma")
    ),
    "ReturnsQueue": Step(
        "support",
        then=lambda r, d: (
            None
            if r.values["rma3"] in [e["node"]["rma"] for e in d["returnsQueue"]["edges"]]
            else pytest.fail("the return for the customer is not in the queue")
        ),
    ),
    "CreateStaffUser": Step("admin", then=_expect("createStaffUser.user.active", True)),
}
# Subscriptions: the event that makes the first update come.
TRIGGERS: dict[str, tuple[Callable[[Reader], dict[str, Any]], Callable[[Reader], None]]] = {
    "FollowOrder": (_bought, _deliver_bought),
}


def _shipped_before(reader: Reader) -> None:
    reader.demo_order("alice", "SHIPPED")  # found while it is still SHIPPED


def _shell_check_delivered(reader: Reader) -> None:
    """The carrier line delivers alice's shipped demo order (tracking number DEMO-ALICE-2)."""
    data = reader.post(
        "alice",
        "query($c: String!) { order(code: $c) { status } }",
        {"c": reader.values["alice:SHIPPED"]},
    )
    assert data["order"]["status"] == "DELIVERED", data


# Shell blocks with something to check afterwards, by a text in the block; `prepare` runs first.
SHELL_CHECKS: dict[str, tuple[Callable[[Reader], None], Callable[[Reader], None]]] = {
    "scripts/carrier_client.py": (_shipped_before, _shell_check_delivered),
}


def run_operation(reader: Reader, operation: Operation) -> None:
    if operation.kind == "subscription":
        variables_of, trigger = TRIGGERS[operation.name]
        variables = variables_of(reader)
        update = reader.follow("alice", operation.text, variables, lambda: trigger(reader))
        assert update["orderUpdates"]["type"], update
        return
    step = STEPS[operation.name]
    if step.before is not None:
        step.before(reader)
    variables = step.variables(reader)
    assert set(variables) == operation.variables, (
        f"{operation.name}: the README declares {sorted(operation.variables)}, the test "
        f"supplies {sorted(variables)}"
    )
    data = reader.post(step.user, operation.text, variables)
    if step.then is not None:
        step.then(reader, data)


def run_shell(reader: Reader, block: Block) -> int:
    checks = [check for key, check in SHELL_CHECKS.items() if key in block.text]
    for prepare, _ in checks:
        prepare(reader)
    env = dict(os.environ)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    commands = shell_commands(block)
    for command, expected in commands:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command.replace(README_URL, reader.server.base_url)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SHELL_TIMEOUT,
            check=False,
        )
        assert result.returncode == 0, (
            f"exit {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
        for line in expected:
            assert line in result.stdout, f"expected {line!r} in the output, got {result.stdout!r}"
    for _, check in checks:
        check(reader)
    return len(commands)


def test_every_example_of_the_readme_runs(live_server: LiveServer) -> None:
    blocks = readme_blocks(README.read_text())
    reader = Reader(live_server)
    ran: list[str] = []
    skipped: list[str] = []
    other: list[str] = []
    seen: set[str] = set()
    for block in blocks:
        if block.language not in RUN_LANGUAGES:
            other.append(block.where)
            continue
        if block.skip is not None:
            skipped.append(f"{block.where}: {block.skip}")
            continue
        if block.language == "sh":
            try:
                count = run_shell(reader, block)
            except AssertionError as error:
                pytest.fail(f"{block.where} failed: {error}\n{block.text}")
            ran.append(f"{block.where}: {count} command(s)")
            continue
        for operation in operations_of(block):
            assert operation.name not in seen, f"{block.where}: {operation.name} twice"
            seen.add(operation.name)
            known = STEPS if operation.kind != "subscription" else TRIGGERS
            assert operation.name in known, (
                f"{block.where}: {operation.kind} {operation.name} has no step in "
                "tests/e2e/test_readme.py (who runs it, with which values)"
            )
            try:
                run_operation(reader, operation)
            except AssertionError as error:
                pytest.fail(f"{block.where}: {operation.kind} {operation.name} failed: {error}")
            ran.append(f"{block.where}: {operation.kind} {operation.name}")
    stale = (set(STEPS) | set(TRIGGERS)) - seen
    assert not stale, f"steps for operations the README no longer has: {sorted(stale)}"
    print(
        f"\nREADME: ran {len(ran)} examples, {len(skipped)} block(s) marked skip, "
        f"{len(other)} block(s) in other languages",
        *ran,
        "marked skip:",
        *skipped,
        "other languages:",
        *other,
        sep="\n  ",
    )
    assert len(ran) >= len(STEPS) + len(TRIGGERS)


# -- codes in the text ----------------------------------------------------------------------

_GROUP = "([0-9A-Za-z]{4})"
CODE_SHAPED = re.compile(
    rf"(?<![0-9A-Za-z]){_GROUP}([- ]){_GROUP}\2{_GROUP}\2{_GROUP}(?![0-9A-Za-z])"
)
CODE_PREFIX = re.compile(r"\b[0-9A-Z]{4}-…")
FORMAT_PLACEHOLDERS = {"XXXX-XXXX-XXXX-XXXX"}


def code_problems(text: str) -> list[str]:
    problems = []
    for match in CODE_SHAPED.finditer(text):
        shown = match.group(0)
        if shown in FORMAT_PLACEHOLDERS or not re.search(r"\d", shown):
            continue  # a format, or words ("with some text here")
        try:
            codes.normalise(shown)
        except Exception:
            problems.append(f"{shown!r} fails the check symbol")
    problems += [f"{m.group(0)!r} is a truncated code" for m in CODE_PREFIX.finditer(text)]
    return problems


def test_sample_codes_in_the_docs_pass_the_check_symbol() -> None:
    """A code a reader pastes from the docs must never count as a failed guess for a typo:
    samples are valid codes, or variables."""
    for path in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        assert code_problems(path.read_text()) == [], path.name


def test_the_check_catches_a_bad_sample() -> None:
    good = codes.display(codes.generate())
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    assert code_problems(f"like {good} or {as_typed(good)}") == []
    assert code_problems(f"like {bad}") == [f"{bad!r} fails the check symbol"]
    assert code_problems('pickList(code: "7QKM-…")') == ["'7QKM-…' is a truncated code"]


def test_markers_and_commands_are_read_as_documented() -> None:
    text = (
        "<!-- readme-test: skip (needs other hosts) -->\n```sh\nserve\n```\n"
        '```sh\nclient --a \\\n  --b\n# 202 {"status":"accepted"}\nother  # inline\n```\n'
    )
    skipped, runnable = readme_blocks(text)
    assert skipped.skip == "needs other hosts" and runnable.skip is None
    assert shell_commands(runnable) == [
        ("client --a \\\n  --b", ['202 {"status":"accepted"}']),
        ("other  # inline", []),
    ]
    with pytest.raises(AssertionError, match="needs a reason"):
        readme_blocks("<!-- readme-test: skip -->\n```sh\nx\n```\n")
