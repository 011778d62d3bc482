"""schemathesis in GraphQL mode, from the checked-in `schema.graphql`, against the real server
in production mode with alice's bearer token: no server errors (no HTTP 5xx, no `INTERNAL`
error, nothing that leaks internals), whatever the generated queries and variables.

One test item per operation (`[Query.order]`, `[Mutation.placeOrder]`, …); a failure prints
the offending request as a curl command plus the answer. Bounded: a few dozen examples per
operation, loopback only (no phase fetches anything: the schema is a local file, examples
come from the schema itself).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings

from tests.security_stage.conftest import (
    ERROR_CODES,
    ROOT,
    Server,
    leaks,
    record,
    stage_server,
)

pytestmark = pytest.mark.e2e

MAX_EXAMPLES = 40  # per operation; ~20 operations -> well under 2 minutes

CONFIG = schemathesis.Config.from_dict(
    {
        "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none"},
        "phases": {
            "examples": {"enabled": False},  # the SDL has no examples
            "coverage": {"enabled": True},  # boundary values of every argument
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": False},  # not run under pytest anyway
        },
    }
)
SCHEMA = schemathesis.graphql.from_path(ROOT / "schema.graphql", config=CONFIG)

# Operations that end the caller's session(s) run with a fresh throw-away account each time,
# so alice's session lives through the whole run.
SESSION_ENDERS = {"Mutation.logout", "Mutation.logoutAll"}


# operation -> Counter of outcomes ("HTTP 200 data", "HTTP 200 ORDER_NOT_FOUND", …)
SEEN: defaultdict[str, Counter[str]] = defaultdict(Counter)


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    lines = [f"schemathesis {schemathesis.__version__}, max_examples={MAX_EXAMPLES}"]
    total = 0
    for label in sorted(SEEN):
        total += sum(SEEN[label].values())
        outcomes = ", ".join(f"{k} x{v}" for k, v in SEEN[label].most_common())
        lines.append(f"{label}: {sum(SEEN[label].values())} requests ({outcomes})")
    lines.append(f"total requests: {total}")
    record("schemathesis.txt", lines)


def outcome(response: Any) -> str:
    try:
        body = json.loads(response.text)
        errors = body.get("errors") or []
        codes = sorted({(e.get("extensions") or {}).get("code") or "-" for e in errors})
        kind = "/".join(codes) if errors else "data"
    except (ValueError, TypeError, AttributeError):
        kind = "non-JSON"
    return f"HTTP {response.status_code} {kind}"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Production mode; lookup budgets raised so the fuzzer reaches the code paths behind
    the limiter instead of only RATE_LIMITED (the limiter has its own stage test)."""
    with stage_server(
        tmp_path_factory,
        "stage-fuzz",
        RATE_LOOKUPS_PER_USER="100000/minute",
        RATE_LOOKUPS_PER_IP="100000/minute",
        RATE_FAILED_LOOKUPS_PER_USER="100000/15 minutes",
        RATE_FAILED_LOOKUPS_PER_IP="100000/15 minutes",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def alice_token(fuzz_server: Server) -> str:
    return fuzz_server.login("alice@example.com").access


@pytest.fixture(scope="module")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def problems(response: Any) -> list[str]:
    """What makes this answer a server error (empty: a clean answer, error or not)."""
    found: list[str] = []
    if response.status_code >= 500:
        found.append(f"HTTP {response.status_code}")
    text = response.text
    found += [f"leak: {pattern}" for pattern in leaks(text)]
    try:
        body = json.loads(text)
    except ValueError:
        if response.status_code < 400:
            found.append("a success answer that is not JSON")
        return found
    if not isinstance(body, dict):
        return [*found, "the answer is not a JSON object"]
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code == "INTERNAL":
            found.append(f"INTERNAL error (requestId {error['extensions'].get('requestId')})")
        elif code not in ERROR_CODES:
            found.append(f"error without a known extensions.code: {error}")
        if "Cannot return null for non-nullable field" in str(error.get("message")):
            found.append(f"schema violation: {error['message']}")
    return found


@SCHEMA.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_no_server_errors(
    case: schemathesis.Case[Any],
    fuzz_server: Server,
    alice_token: str,
    http_session: requests.Session,
) -> None:
    ends_sessions = case.operation.label in SESSION_ENDERS
    token = fuzz_server.register().access if ends_sessions else alice_token
    headers = {"Authorization": f"Bearer {token}"}
    response = case.call(
        base_url=fuzz_server.graphql_url, headers=headers, session=http_session, timeout=30
    )
    SEEN[case.operation.label][outcome(response)] += 1
    found = problems(response)
    if found:
        curl = case.as_curl_command(
            headers={"Authorization": "Bearer <alice's access token>"},
            base_url=fuzz_server.graphql_url,
        )
        pytest.fail(
            f"{case.operation.label}: {'; '.join(found)}\n"
            f"request:\n{curl}\n"
            f"body: {json.dumps(case.body, indent=1)[:4000]}\n"
            f"answer: HTTP {response.status_code}\n{response.text[:3000]}"
        )


# schemathesis rarely produces a code with a valid check symbol, so the doors behind the
# code gate get a targeted pass too: real codes (as typed by people), other people's codes
# and random valid codes, through every operation that takes one.
CODE_DOORS = {
    "order": "query Q($c: String!) { order(code: $c) { code status lines { sku } } }",
    "checkout": "query Q($c: String!) { checkout(code: $c) { code status } }",
    "reorder": "query Q($c: String!) { reorder(code: $c) { unavailableSkus } }",
    "cancelOrder": "mutation M($c: String!) { cancelOrder(code: $c) { order { status } "
    "userErrors { code } } }",
    "updateCheckout": "mutation M($c: String!) { updateCheckout(code: $c) { checkout { code } "
    "userErrors { code } } }",
    "placeOrder": "mutation M($c: String!) { placeOrder(checkoutCode: $c, paymentToken: "
    '"tok_visa") { order { code } userErrors { code } } }',
}


@pytest.fixture(scope="module")
def known_codes(fuzz_server: Server, alice_token: str) -> list[str]:
    bob = fuzz_server.login("bob@example.com").access
    return fuzz_server.order_codes(alice_token) + fuzz_server.order_codes(bob)


def test_code_doors_with_real_and_valid_codes(
    fuzz_server: Server, alice_token: str, known_codes: list[str]
) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    from app.security import codes

    def as_typed(code: str, style: int) -> str:
        plain = code.replace("-", "")
        return [
            code,
            code.lower(),
            " ".join(plain[i : i + 4] for i in range(0, 16, 4)),
            plain.replace("0", "O").replace("1", "I"),
            plain[:-1] + ("0" if plain[-1] != "0" else "1"),  # wrong check symbol
            plain + plain,
        ][style]

    code_strategy = st.one_of(
        st.builds(as_typed, st.sampled_from(known_codes), st.integers(0, 5)),
        st.builds(lambda _: codes.display(codes.generate()), st.integers()),
        st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ-oil ", max_size=24),
    )

    @settings(max_examples=120, deadline=None, database=None)
    @given(door=st.sampled_from(sorted(CODE_DOORS)), code=code_strategy)
    def check(door: str, code: str) -> None:
        response = fuzz_server.post(CODE_DOORS[door], {"c": code}, token=alice_token)
        SEEN[f"code door {door}"][outcome(response)] += 1
        found = problems(response)
        assert not found, f"{door}({code!r}): {found}\n{response.text[:2000]}"

    check()
