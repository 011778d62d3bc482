"""Token attacks end to end against the real server in production mode: forged, confused,
re-targeted, expired, tampered and revoked tokens, and refresh-token theft.

The stage started the server, so it knows the JWT secret: tokens signed with the REAL secret
but wrong claims prove the claim checks themselves (not just the signature) hold.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.security_stage.conftest import (
    Server,
    Tokens,
    b64url,
    b64url_json,
    forge,
    unverified_claims,
)

pytestmark = pytest.mark.e2e

ME = "{ me { email role } }"
REFRESH = """
mutation R($t: String!) {
  refreshToken(refreshToken: $t) {
    tokens { accessToken refreshToken }
    userErrors { code message }
  }
}
"""
# A public key an attacker would use for HS/RS confusion (any RSA public key: the server has
# none, so the point is only that an HMAC keyed with public material is refused).
ATTACKER_PUBLIC_PEM = (
    b"-----BEGIN PUBLIC KEY-----\n"
    b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    b"4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    b"-----END PUBLIC KEY-----\n"
)


def me(server: Server, token: str) -> dict[str, Any]:
    return server.gql(ME, token=token)


def assert_refused(server: Server, token: str, label: str) -> str:
    """UNAUTHENTICATED, nothing revealed; returns the message (all must be the same)."""
    body = me(server, token)
    assert body.get("data") is None or body["data"].get("me") is None, f"{label}: {body}"
    codes = [e["extensions"]["code"] for e in body.get("errors") or []]
    assert codes == ["UNAUTHENTICATED"], f"{label}: {body}"
    message: str = body["errors"][0]["message"]
    return message


def assert_accepted(server: Server, token: str, email: str) -> None:
    body = me(server, token)
    assert body == {"data": {"me": {"email": email, "role": "CUSTOMER"}}}, body


@pytest.fixture(scope="module")
def alice_session(prod_server: Server) -> Tokens:
    return prod_server.login("alice@example.com")


def test_a_token_forged_with_the_real_secret_and_claims_is_accepted(
    prod_server: Server, alice_session: Tokens
) -> None:
    # control: the forging helper is right, so every refusal below is for its one change
    claims = unverified_claims(alice_session.access)
    token = forge({"alg": "HS256", "typ": "JWT"}, claims, prod_server.jwt_secret.encode())
    assert_accepted(prod_server, token, "alice@example.com")


def attacks(secret: bytes, good: str) -> dict[str, str]:
    """Forged, confused, re-targeted, expired and tampered variants of the token `good`."""
    claims = unverified_claims(good)
    header = {"alg": "HS256", "typ": "JWT"}
    now = int(time.time())
    head, body, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]

    def with_claims(**changes: Any) -> dict[str, Any]:
        updated = {**claims, **changes}
        return {k: v for k, v in updated.items() if v is not None}

    return {
        # algorithm attacks
        "alg none, no signature": forge({"alg": "none", "typ": "JWT"}, claims, None),
        "alg None": forge({"alg": "None", "typ": "JWT"}, claims, None),
        "alg NONE": forge({"alg": "NONE"}, claims, None),
        "alg none with the original signature": (
            f"{b64url_json({'alg': 'none', 'typ': 'JWT'})}.{body}.{signature}"
        ),
        "alg missing": forge({"typ": "JWT"}, claims, secret),
        "RS256 header, garbage signature": (
            f"{b64url_json({'alg': 'RS256', 'typ': 'JWT'})}.{body}.{b64url(b'x' * 256)}"
        ),
        "HS/RS confusion: HS256 keyed with a public key": forge(
            header, claims, ATTACKER_PUBLIC_PEM
        ),
        "RS256 header, HMAC with a public key": forge(
            {"alg": "RS256", "typ": "JWT"}, claims, ATTACKER_PUBLIC_PEM
        ),
        "HS512 with the real secret (algorithm not pinned?)": forge(
            {"alg": "HS512", "typ": "JWT"}, claims, secret, "sha512"
        ),
        "HS384 with the real secret": forge({"alg": "HS384"}, claims, secret, "sha384"),
        "embedded jwk (attacker's key)": forge(
            {"alg": "HS256", "jwk": {"kty": "oct", "k": b64url(b"attacker")}},
            claims,
            b"attacker",
        ),
        "kid path traversal, empty key": forge(
            {"alg": "HS256", "kid": "../../../../dev/null"}, claims, b""
        ),
        "jku to an attacker's keys": forge(
            {"alg": "HS256", "jku": "http://127.0.0.1:1/keys.json"}, claims, b"attacker"
        ),
        "empty secret": forge(header, claims, b""),
        "development secret": forge(
            header, claims, b"dev-only-secret-change-me-in-production-0123456789"
        ),
        # claim attacks, signed with the REAL secret
        "wrong audience": forge(header, with_claims(aud="someone-else"), secret),
        "audience list without ours": forge(header, with_claims(aud=["a", "b"]), secret),
        "wrong issuer": forge(header, with_claims(iss="https://evil.example"), secret),
        "typ refresh": forge(header, with_claims(typ="refresh"), secret),
        "typ missing": forge(header, with_claims(typ=None), secret),
        "expired": forge(header, with_claims(iat=now - 7200, exp=now - 3600), secret),
        "exp missing": forge(header, with_claims(exp=None), secret),
        "iat missing": forge(header, with_claims(iat=None), secret),
        # unexpired and well signed, but living longer than ACCESS_TOKEN_TTL_SECONDS (900)
        "lifetime of an hour": forge(header, with_claims(iat=now, exp=now + 3600), secret),
        "lifetime of 901 s": forge(header, with_claims(iat=now - 1, exp=now + 900), secret),
        "iat backdated a day, exp in 5 minutes": forge(
            header, with_claims(iat=now - 86400, exp=now + 300), secret
        ),
        "not valid yet (nbf)": forge(header, with_claims(nbf=now + 3600), secret),
        "sid missing": forge(header, with_claims(sid=None), secret),
        "sid of no session": forge(header, with_claims(sid="no-such-session"), secret),
        "sub of no user": forge(header, with_claims(sub="no-such-user"), secret),
        "sub as a number": forge(header, with_claims(sub=1), secret),
        # tampering without the secret
        "role changed to ADMIN, signature kept": (
            f"{head}.{b64url_json(with_claims(role='ADMIN'))}.{signature}"
        ),
        "exp pushed out, signature kept": (
            f"{head}.{b64url_json(with_claims(exp=now + 10**8))}.{signature}"
        ),
        "signature changed": f"{head}.{body}.{flipped}",
        "signature truncated": f"{head}.{body}.{signature[:10]}",
        "signature removed": f"{head}.{body}.",
        "two segments": f"{head}.{body}",
        "garbage": "not-a-jwt",
        "huge token": "a" * 20_000,
    }


# the names only (tokens are built per run from a real session and the server's secret)
ATTACKS = list(attacks(b"x" * 64, forge({"alg": "HS256"}, {"sub": "s", "sid": "s"}, b"x")))


@pytest.mark.parametrize("attack", ATTACKS)
def test_forged_or_altered_token_is_refused(
    prod_server: Server, alice_session: Tokens, attack: str
) -> None:
    token = attacks(prod_server.jwt_secret.encode(), alice_session.access)[attack]
    assert_refused(prod_server, token, attack)


def test_every_refusal_is_the_same_answer(prod_server: Server, alice_session: Tokens) -> None:
    # one message for every refused token: a distinct one would tell a thief which part of
    # the forgery was right
    forged = attacks(prod_server.jwt_secret.encode(), alice_session.access)
    messages = {label: assert_refused(prod_server, token, label) for label, token in forged.items()}
    assert len(set(messages.values())) == 1, json.dumps(messages, indent=1)
    assert_accepted(prod_server, alice_session.access, "alice@example.com")  # still works


def test_a_well_signed_token_with_a_string_exp_is_unauthenticated(
    prod_server: Server, alice_session: Tokens
) -> None:
    claims = {**unverified_claims(alice_session.access), "exp": str(int(time.time()) + 600)}
    token = forge({"alg": "HS256", "typ": "JWT"}, claims, prod_server.jwt_secret.encode())
    assert_refused(prod_server, token, "exp as a numeric string")


def test_a_session_of_one_user_with_the_subject_of_another_is_refused(
    prod_server: Server, alice_session: Tokens
) -> None:
    # Even with the secret: alice's session id carrying bob's user id names no session.
    bob = unverified_claims(prod_server.login("bob@example.com").access)
    mixed = {**unverified_claims(alice_session.access), "sub": bob["sub"]}
    token = forge({"alg": "HS256", "typ": "JWT"}, mixed, prod_server.jwt_secret.encode())
    assert_refused(prod_server, token, "alice's sid with bob's sub")


@pytest.mark.parametrize(
    "header",
    ["Basic YWxpY2U6b3JkZXJz", "Bearer", "Token abc", "bearer\tabc", "Bearer a b c"],
)
def test_malformed_authorization_headers_are_refused(prod_server: Server, header: str) -> None:
    body = prod_server.gql(ME, headers={"authorization": header})
    assert body.get("data") is None or body["data"].get("me") is None, body
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body


def test_a_logged_out_session_token_is_refused_at_once(prod_server: Server) -> None:
    tokens = prod_server.login("alice@example.com")
    assert_accepted(prod_server, tokens.access, "alice@example.com")
    body = prod_server.gql("mutation { logout { ok } }", token=tokens.access)
    assert body["data"]["logout"]["ok"] is True, body
    assert_refused(prod_server, tokens.access, "logged-out session")
    # and its refresh token cannot bring the session back
    refreshed = prod_server.gql(REFRESH, {"t": tokens.refresh})["data"]["refreshToken"]
    assert refreshed["tokens"] is None
    assert [e["code"] for e in refreshed["userErrors"]] == ["UNAUTHENTICATED"]


def test_logout_all_ends_every_session(prod_server: Server) -> None:
    email = f"stage-all-{time.time_ns()}@example.com"
    password = "Stage-logout-all-2026"
    first = prod_server.register(email, password)  # one device
    second = prod_server.login(email, password)  # another device
    assert_accepted(prod_server, first.access, email)
    ended = prod_server.gql("mutation { logoutAll { ok sessionsEnded } }", token=second.access)
    assert ended["data"]["logoutAll"] == {"ok": True, "sessionsEnded": 2}, ended
    assert_refused(prod_server, second.access, "after logoutAll")
    assert_refused(prod_server, first.access, "the other device after logoutAll")


def test_a_reused_refresh_token_ends_the_whole_family(prod_server: Server) -> None:
    tokens = prod_server.login("bob@example.com")
    first = prod_server.gql(REFRESH, {"t": tokens.refresh})["data"]["refreshToken"]
    assert first["userErrors"] == [], first
    newest = Tokens(first["tokens"]["accessToken"], first["tokens"]["refreshToken"])
    assert newest.refresh != tokens.refresh
    # the old refresh token, presented again (stolen copy): refused...
    replay = prod_server.gql(REFRESH, {"t": tokens.refresh})["data"]["refreshToken"]
    assert replay["tokens"] is None, replay
    assert [e["code"] for e in replay["userErrors"]] == ["UNAUTHENTICATED"]
    # ...and the whole family is revoked: the newest refresh token and access token too
    after = prod_server.gql(REFRESH, {"t": newest.refresh})["data"]["refreshToken"]
    assert after["tokens"] is None, "the newest refresh token of a revoked family still works"
    assert [e["code"] for e in after["userErrors"]] == ["UNAUTHENTICATED"]
    assert_refused(prod_server, newest.access, "access token of a revoked family")
    assert_refused(prod_server, tokens.access, "first access token of a revoked family")
