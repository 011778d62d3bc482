"""Accounts through the real GraphQL endpoint (DESIGN §5): register, login and its back-off,
password rehash, access tokens and their refusal, logout, logoutAll, refresh rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import types
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlmodel import col

from app.accounts.models import RefreshToken, User
from app.accounts.service import InvalidCredentials
from app.container import Services
from app.db import utcnow
from app.errors import RateLimited
from app.security import counters, ratelimit
from app.security.passwords import Passwords
from app.security.tokens import token_digest
from tests.conftest import (
    FAST_PASSWORDS,
    PASSWORD,
    Account,
    GraphQLClient,
    Run,
    db_session,
    error_codes,
    sql_count,
)

PAYLOAD = """
    user { email name role }
    tokens { accessToken refreshToken tokenType expiresIn }
    userErrors { field message code }
"""
REGISTER = f"""
mutation Register($input: RegisterInput!) {{ register(input: $input) {{ {PAYLOAD} }} }}
"""
LOGIN = f"""
mutation Login($email: String!, $password: String!) {{
  login(email: $email, password: $password) {{ {PAYLOAD} }}
}}
"""
REFRESH = f"""
mutation Refresh($token: String!) {{ refreshToken(refreshToken: $token) {{ {PAYLOAD} }} }}
"""
LOGOUT = "mutation Logout { logout { ok sessionsEnded userErrors { field message code } } }"
LOGOUT_ALL = "mutation LogoutAll { logoutAll { ok sessionsEnded } }"
ME = "query Me { me { email name role } }"

# Looks like an RSA public key: the classic HS/RS confusion signs with this as HMAC secret.
PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "-----END PUBLIC KEY-----\n"
)


# -- helpers ---------------------------------------------------------------------------------


def users(services: Services) -> int:
    return sql_count(services, "SELECT COUNT(*) FROM users")


def register(
    gql: GraphQLClient, email: str, password: str = PASSWORD, name: str = "Alice"
) -> dict[str, Any]:
    body = gql(REGISTER, {"input": {"email": email, "password": password, "name": name}})
    assert not body.get("errors"), body.get("errors")
    result: dict[str, Any] = body["data"]["register"]
    return result


def login(gql: GraphQLClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    return gql(LOGIN, {"email": email, "password": password})


def tokens_of(body: dict[str, Any], field: str = "login") -> dict[str, Any]:
    payload = body["data"][field]
    assert payload["userErrors"] == [], payload["userErrors"]
    result: dict[str, Any] = payload["tokens"]
    return result


def refresh(gql: GraphQLClient, token: str) -> dict[str, Any]:
    body = gql(REFRESH, {"token": token})
    assert not body.get("errors"), body.get("errors")
    result: dict[str, Any] = body["data"]["refreshToken"]
    return result


def assert_refresh_refused(payload: dict[str, Any]) -> None:
    assert payload["tokens"] is None
    assert [e["code"] for e in payload["userErrors"]] == ["UNAUTHENTICATED"]


def me(gql: GraphQLClient, token: str | None) -> dict[str, Any]:
    return gql(ME, token=token)


def refused_answer(body: dict[str, Any]) -> tuple[Any, ...]:
    """What a client sees of a refused token: code, message, data, status."""
    assert error_codes(body) == ["UNAUTHENTICATED"], body
    return (body["errors"][0]["message"], body["data"], body["_status"])


@pytest.fixture
def garbage_answer(gql: GraphQLClient) -> tuple[Any, ...]:
    """The reference refusal: a token that is not a JWT at all."""
    return refused_answer(me(gql, "not.a.jwt"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: str | None) -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class FakeClock:
    """Stands in for the `time` module of the login back-off (the limiter reads the clock
    through `app.security.ratelimit.time`, its in-process counters through
    `app.security.counters.time`)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).timestamp()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    shim = types.SimpleNamespace(time=fake.time)
    monkeypatch.setattr(ratelimit, "time", shim)
    monkeypatch.setattr(counters, "time", shim)
    return fake


# -- register ----------------------------------------------------------------------------------


def test_register_creates_a_customer_whose_tokens_work_on_me(
    gql: GraphQLClient, services: Services
) -> None:
    # given no users
    assert users(services) == 0
    # when someone registers with a mixed-case address
    payload = register(gql, "  Alice.Example@Example.COM ", name="Alice Example")
    # then one CUSTOMER exists, with the address normalised, and the access token works
    assert payload["userErrors"] == []
    assert payload["user"] == {
        "email": "alice.example@example.com",
        "name": "Alice Example",
        "role": "CUSTOMER",
    }
    assert users(services) == 1
    body = me(gql, payload["tokens"]["accessToken"])
    assert body["data"]["me"] == payload["user"]


@pytest.mark.parametrize("second", ["alice@example.com", "ALICE@EXAMPLE.COM", " Alice@Example.com"])
def test_register_with_a_taken_email_in_any_case_is_a_conflict_and_writes_nothing(
    gql: GraphQLClient, services: Services, second: str
) -> None:
    # given an account for alice@example.com
    register(gql, "alice@example.com")
    assert users(services) == 1
    # when the same address is registered again, in any case
    payload = register(gql, second, password="another-good-pass-7")
    # then CONFLICT on the email field, no tokens, and still one user
    assert payload["tokens"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("CONFLICT", "email")]
    assert users(services) == 1


@pytest.mark.parametrize(
    ("email", "password", "name", "field"),
    [
        ("bob@example.com", "short-1", "Bob", "password"),
        ("bob@example.com", "password123", "Bob", "password"),
        ("bob@example.com", "aaaaaaaaaaaa", "Bob", "password"),
        ("bob@example.com", "x" * 3 + "Yz9-" * 64, "Bob", "password"),
        ("bob@example.com", "my-bob@example-pw", "Bob", "password"),
        ("not-an-email", PASSWORD, "Bob", "email"),
        ("bob@localhost", PASSWORD, "Bob", "email"),
        ("bob @example.com", PASSWORD, "Bob", "email"),
        ("b" * 250 + "@example.com", PASSWORD, "Bob", "email"),
        ("bob@example.com", PASSWORD, "N" * 121, "name"),
    ],
    ids=[
        "short-password",
        "common-password",
        "one-character-password",
        "overlong-password",
        "password-contains-email",
        "no-at-sign",
        "no-dot-in-domain",
        "space-in-email",
        "overlong-email",
        "overlong-name",
    ],
)
def test_register_with_bad_input_is_bad_user_input_and_writes_nothing(
    gql: GraphQLClient, services: Services, email: str, password: str, name: str, field: str
) -> None:
    # given no users
    # when registering with one bad field
    payload = register(gql, email, password=password, name=name)
    # then BAD_USER_INPUT names that field, no tokens are issued and no user is written
    assert payload["tokens"] is None
    assert payload["user"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("BAD_USER_INPUT", field)]
    assert payload["userErrors"][0]["message"]
    assert users(services) == 0


def test_register_takes_no_role_so_cannot_create_staff(
    gql: GraphQLClient, services: Services
) -> None:
    # given the schema: RegisterInput has no role field
    fields = gql.data('{ __type(name: "RegisterInput") { inputFields { name } } }')
    assert {f["name"] for f in fields["__type"]["inputFields"]} == {"email", "password", "name"}
    # when a client sends role: ADMIN anyway
    body = gql(
        'mutation { register(input: {email: "mallory@example.com", '
        f'password: "{PASSWORD}", role: ADMIN}}) {{ user {{ role }} }} }}'
    )
    # then the request is refused before any resolver runs and nothing is written
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body.get("data") is None
    assert users(services) == 0


# -- login -------------------------------------------------------------------------------------


def test_login_with_the_right_password_returns_working_tokens(
    gql: GraphQLClient, owner: Account
) -> None:
    # given an account
    # when logging in with the right password (address typed in another case)
    body = login(gql, owner.email.upper())
    # then tokens come back and the access token identifies the account on `me`
    tokens = tokens_of(body)
    assert body["data"]["login"]["user"]["email"] == owner.email
    assert tokens["tokenType"] == "Bearer"
    assert tokens["refreshToken"]
    assert me(gql, tokens["accessToken"])["data"]["me"]["email"] == owner.email


def test_wrong_password_and_unknown_email_get_identical_answers(
    gql: GraphQLClient, services: Services, owner: Account, run: Run[Any]
) -> None:
    # given an account, and a clean back-off between the two attempts (same client IP)
    wrong_password = login(gql, owner.email, "wrong-password-123")
    run(services.limiter.reset())
    # when an unknown address is tried
    unknown_email = login(gql, "nobody-" + owner.email, "wrong-password-123")
    # then both answers are the same userError (UNAUTHENTICATED, same message), byte for byte
    assert wrong_password == unknown_email
    payload = wrong_password["data"]["login"]
    assert payload["tokens"] is None and payload["user"] is None
    assert [(e["code"], e["field"]) for e in payload["userErrors"]] == [("UNAUTHENTICATED", None)]


def test_after_a_failed_login_the_next_attempt_is_rate_limited_even_with_the_right_password(
    gql: GraphQLClient, owner: Account, clock: FakeClock
) -> None:
    # given one failed login
    login(gql, owner.email, "wrong-password-123")
    # when the right password is sent at once
    body = login(gql, owner.email)
    # then it is refused top-level with RATE_LIMITED and a positive retryAfter, no tokens
    assert error_codes(body) == ["RATE_LIMITED"]
    assert body["errors"][0]["extensions"]["retryAfter"] > 0
    assert body["data"] is None


def test_login_back_off_doubles_with_each_failure(
    gql: GraphQLClient, owner: Account, clock: FakeClock
) -> None:
    waits = []
    for _ in range(4):
        # given a failed login
        failed = login(gql, owner.email, "wrong-password-123")
        assert failed["data"]["login"]["userErrors"][0]["code"] == "UNAUTHENTICATED"
        # when trying again at once
        body = login(gql, owner.email, "wrong-password-123")
        assert error_codes(body) == ["RATE_LIMITED"]
        wait = body["errors"][0]["extensions"]["retryAfter"]
        waits.append(wait)
        # and then waiting exactly as long as told
        clock.advance(wait)
    # then each failure doubled the wait (base 1 s)
    assert waits == [1, 2, 4, 8]


def test_successful_login_clears_the_email_back_off(
    gql: GraphQLClient, services: Services, owner: Account, clock: FakeClock, run: Run[Any]
) -> None:
    # given a failed login and the wait served
    login(gql, owner.email, "wrong-password-123")
    clock.advance(1)
    failures_key = f"login-failures:email:{owner.email}"
    assert run(services.limiter.storage.get(failures_key)) == 1
    # when the right password is then sent
    tokens_of(login(gql, owner.email))
    # then the email's failure count is gone, so its next failure starts over at the base wait
    assert run(services.limiter.storage.get(failures_key)) == 0
    with pytest.raises(InvalidCredentials):  # from fresh IPs: only the email back-off counts
        run(services.accounts.login(owner.email, "wrong-password-123", "192.0.2.10"))
    with pytest.raises(RateLimited) as limited:
        run(services.accounts.login(owner.email, PASSWORD, "192.0.2.11"))
    assert limited.value.retry_after == 1


def test_login_rehashes_a_password_stored_with_weaker_parameters(
    gql: GraphQLClient, services: Services, run: Run[Any]
) -> None:
    # given a user whose stored hash uses weaker argon2 parameters than the service's
    weak = Passwords(PasswordHasher(time_cost=1, memory_cost=512, parallelism=1))
    run(services.accounts.create_user("old@example.com", PASSWORD, name="Old"))
    old_hash = run(weak.hash(PASSWORD))
    with db_session(services) as session:
        session.execute(
            update(User).where(col(User.email) == "old@example.com").values(password_hash=old_hash)
        )
        session.commit()
    assert FAST_PASSWORDS.needs_rehash(old_hash)
    # when the user logs in
    tokens_of(login(gql, "old@example.com"))
    # then the stored hash was replaced by one with current parameters that still verifies
    with db_session(services) as session:
        new_hash = session.execute(
            select(col(User.password_hash)).where(col(User.email) == "old@example.com")
        ).scalar_one()
    assert new_hash != old_hash
    assert new_hash.startswith("$argon2id$v=19$m=1024,t=1,p=1$")
    assert run(FAST_PASSWORDS.verify(new_hash, PASSWORD))
    assert not FAST_PASSWORDS.needs_rehash(new_hash)


def test_login_with_current_parameters_keeps_the_stored_hash(
    gql: GraphQLClient, services: Services, owner: Account
) -> None:
    # given an account hashed with the service's own parameters
    stmt = select(col(User.password_hash)).where(col(User.email) == owner.email)
    with db_session(services) as session:
        before = session.execute(stmt).scalar_one()
    # when it logs in, then the hash is not rewritten
    tokens_of(login(gql, owner.email))
    with db_session(services) as session:
        assert session.execute(stmt).scalar_one() == before


# -- access tokens -----------------------------------------------------------------------------


def test_access_token_is_hs256_and_lives_at_most_15_minutes(
    gql: GraphQLClient, owner: Account
) -> None:
    # given a fresh login
    tokens = tokens_of(login(gql, owner.email))
    # then expiresIn is <= 900 s and matches the JWT, whose header pins HS256
    assert 0 < tokens["expiresIn"] <= 900
    assert jwt.get_unverified_header(tokens["accessToken"])["alg"] == "HS256"
    claims = jwt.decode(tokens["accessToken"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == tokens["expiresIn"]
    assert claims["typ"] == "access"


def test_me_is_null_for_an_anonymous_caller(gql: GraphQLClient) -> None:
    body = me(gql, None)
    assert body["data"] == {"me": None}
    assert "errors" not in body


def _attack_tokens(services: Services, account: Account) -> dict[str, str]:
    """Variants of the account's own live token, each wrong in one respect."""
    secret = services.settings.jwt_secret
    real = jwt.decode(account.token, options={"verify_signature": False})
    now = int(datetime.now(UTC).timestamp())

    def claims(**changes: Any) -> dict[str, Any]:
        return {**real, **changes}

    def without(name: str) -> dict[str, Any]:
        return {k: v for k, v in real.items() if k != name}

    head, payload, signature = account.token.split(".")
    return {
        "alg-none": forge({"alg": "none", "typ": "JWT"}, real, None),
        "hs256-signed-with-public-key": forge({"alg": "HS256", "typ": "JWT"}, real, PUBLIC_KEY_PEM),
        "header-rs256": forge({"alg": "RS256", "typ": "JWT"}, real, secret),
        "wrong-aud": jwt.encode(claims(aud="another-audience"), secret, algorithm="HS256"),
        "wrong-iss": jwt.encode(claims(iss="evil-issuer"), secret, algorithm="HS256"),
        "typ-refresh": jwt.encode(claims(typ="refresh"), secret, algorithm="HS256"),
        "expired": jwt.encode(claims(iat=now - 1000, exp=now - 1), secret, algorithm="HS256"),
        "tampered-signature": f"{head}.{payload}.{'A' if signature[0] != 'A' else 'B'}"
        f"{signature[1:]}",
        "tampered-role": f"{head}.{_b64(json.dumps(claims(role='ADMIN')).encode())}.{signature}",
        "sid-missing": jwt.encode(without("sid"), secret, algorithm="HS256"),
        "unknown-sid": jwt.encode(claims(sid="no-such-session"), secret, algorithm="HS256"),
        "unknown-sub": jwt.encode(claims(sub="no-such-user"), secret, algorithm="HS256"),
    }


ATTACKS = [
    "alg-none",
    "hs256-signed-with-public-key",
    "header-rs256",
    "wrong-aud",
    "wrong-iss",
    "typ-refresh",
    "expired",
    "tampered-signature",
    "tampered-role",
    "sid-missing",
    "unknown-sid",
    "unknown-sub",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_forged_or_stale_access_token_is_refused_with_the_generic_answer(
    gql: GraphQLClient,
    services: Services,
    owner: Account,
    garbage_answer: tuple[Any, ...],
    attack: str,
) -> None:
    # given the owner's token, which works, and a variant wrong in one respect
    assert me(gql, owner.token)["data"]["me"]["email"] == owner.email
    forged = _attack_tokens(services, owner)[attack]
    # when the variant is sent to `me`
    body = me(gql, forged)
    # then UNAUTHENTICATED, with exactly the answer a non-JWT gets (nothing tells why)
    assert refused_answer(body) == garbage_answer


def test_bad_token_is_refused_on_mutations_too(
    gql: GraphQLClient, owner: Account, garbage_answer: tuple[Any, ...]
) -> None:
    # given a tampered token; when it is used to log out, then it is refused
    body = gql(LOGOUT, token=owner.token[:-2] + "xx")
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert body["errors"][0]["message"] == garbage_answer[0]
    # and the real session is untouched
    assert me(gql, owner.token)["data"]["me"]["email"] == owner.email


# -- logout ------------------------------------------------------------------------------------


def test_logout_refuses_the_same_access_token_at_once(
    gql: GraphQLClient, owner: Account, garbage_answer: tuple[Any, ...]
) -> None:
    # given a working access token
    assert me(gql, owner.token)["data"]["me"]["email"] == owner.email
    # when the session logs out
    out = gql.data(LOGOUT, token=owner.token)["logout"]
    assert out == {"ok": True, "sessionsEnded": 1, "userErrors": []}
    # then the very same (unexpired, well-signed) token is refused with the generic answer
    assert refused_answer(me(gql, owner.token)) == garbage_answer


def test_logout_ends_the_sessions_refresh_token(gql: GraphQLClient, owner: Account) -> None:
    # given a session that logs out
    gql.data(LOGOUT, token=owner.token)
    # when its refresh token is spent, then it is refused
    assert_refresh_refused(refresh(gql, owner.refresh_token))


def test_logout_ends_only_this_session(gql: GraphQLClient, owner: Account) -> None:
    # given a second session of the same user
    second = tokens_of(login(gql, owner.email))
    # when the first logs out
    gql.data(LOGOUT, token=owner.token)
    # then the second still works
    assert me(gql, second["accessToken"])["data"]["me"]["email"] == owner.email


def test_logout_all_ends_every_session_of_the_user_and_no_one_elses(
    gql: GraphQLClient, owner: Account, other_customer: Account
) -> None:
    # given two more sessions of the owner (three in all) and another user's session
    phone = tokens_of(login(gql, owner.email))
    laptop = tokens_of(login(gql, owner.email))
    # when logoutAll is called from one of them
    out = gql.data(LOGOUT_ALL, token=phone["accessToken"])["logoutAll"]
    # then all three sessions ended: access tokens and refresh tokens refused
    assert out == {"ok": True, "sessionsEnded": 3}
    for access in (phone["accessToken"], laptop["accessToken"], owner.token):
        assert error_codes(me(gql, access)) == ["UNAUTHENTICATED"]
    for refresh_token in (phone["refreshToken"], laptop["refreshToken"], owner.refresh_token):
        assert_refresh_refused(refresh(gql, refresh_token))
    # and the other user is still logged in, refresh included
    assert me(gql, other_customer.token)["data"]["me"]["email"] == other_customer.email
    assert refresh(gql, other_customer.refresh_token)["tokens"] is not None


def test_logout_needs_a_token(gql: GraphQLClient) -> None:
    body = gql(LOGOUT)
    assert error_codes(body) == ["UNAUTHENTICATED"]


# -- refresh -----------------------------------------------------------------------------------


def test_refresh_rotates_the_refresh_token(gql: GraphQLClient, owner: Account) -> None:
    # given a session's refresh token
    # when it is spent
    payload = refresh(gql, owner.refresh_token)
    # then a new pair comes back: a different refresh token and a working access token
    assert payload["userErrors"] == []
    assert payload["tokens"]["refreshToken"] != owner.refresh_token
    assert me(gql, payload["tokens"]["accessToken"])["data"]["me"]["email"] == owner.email
    # and the spent one is refused
    assert_refresh_refused(refresh(gql, owner.refresh_token))


def test_new_refresh_token_can_be_spent_in_turn(gql: GraphQLClient, owner: Account) -> None:
    # given a rotated pair
    first = refresh(gql, owner.refresh_token)["tokens"]
    # when the new refresh token is spent, then it rotates again
    second = refresh(gql, first["refreshToken"])["tokens"]
    assert second is not None
    assert second["refreshToken"] not in (first["refreshToken"], owner.refresh_token)


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(
    gql: GraphQLClient, owner: Account, other_customer: Account
) -> None:
    # given a session whose refresh token was rotated (the legitimate client holds the new pair)
    newest = refresh(gql, owner.refresh_token)["tokens"]
    assert me(gql, newest["accessToken"])["data"]["me"] is not None
    # when the old, rotated token is presented again (a copy was stolen)
    assert_refresh_refused(refresh(gql, owner.refresh_token))
    # then the session is over: its newest access token and newest refresh token are refused
    assert error_codes(me(gql, newest["accessToken"])) == ["UNAUTHENTICATED"]
    assert error_codes(me(gql, owner.token)) == ["UNAUTHENTICATED"]
    assert_refresh_refused(refresh(gql, newest["refreshToken"]))
    # and other users' sessions are untouched
    assert me(gql, other_customer.token)["data"]["me"]["email"] == other_customer.email


def test_reuse_revokes_only_that_session_not_the_users_other_logins(
    gql: GraphQLClient, owner: Account
) -> None:
    # given a second session of the same user
    other_device = tokens_of(login(gql, owner.email))
    # when the first session's refresh token is reused after rotation
    refresh(gql, owner.refresh_token)
    assert_refresh_refused(refresh(gql, owner.refresh_token))
    # then the second session still works
    assert me(gql, other_device["accessToken"])["data"]["me"]["email"] == owner.email


def test_expired_refresh_token_is_refused(
    gql: GraphQLClient, services: Services, owner: Account
) -> None:
    # given a refresh token whose expiry has passed
    with db_session(services) as session:
        session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == token_digest(owner.refresh_token))  # type: ignore[arg-type]
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
    # when it is spent, then it is refused and no new pair is issued
    assert_refresh_refused(refresh(gql, owner.refresh_token))
    assert sql_count(services, "SELECT COUNT(*) FROM refresh_tokens") == 1


@pytest.mark.parametrize("token", ["", "made-up-token", "x" * 500])
def test_unknown_refresh_token_is_refused(gql: GraphQLClient, token: str) -> None:
    assert_refresh_refused(refresh(gql, token))


def test_refresh_tokens_are_stored_only_as_digests(services: Services, owner: Account) -> None:
    # given a session; then its refresh token appears in the database only as its SHA-256
    with db_session(services) as session:
        stored = list(session.execute(select(col(RefreshToken.token_hash))).scalars())
    assert stored == [token_digest(owner.refresh_token)]
    assert owner.refresh_token not in stored
