"""Access JWTs: what is issued, and every forged or stale variant that decode() must refuse.
Refresh-token helpers: random, opaque, stored as digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from app.security.tokens import (
    AccessTokens,
    InvalidToken,
    new_opaque_token,
    new_public_id,
    token_digest,
)

SECRET = "unit-test-secret-" + "s" * 50  # >= 64 bytes, so HS512 signing does not warn
ISSUER = "orders-api"
AUDIENCE = "orders-api-clients"
TTL = 900
# Looks like an RSA public key: the classic HS/RS confusion signs with this as HMAC secret.
PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "4lgOEePzNm0tRgeLezV6ffAt0gunVTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u\n"
    "-----END PUBLIC KEY-----\n"
)


@pytest.fixture
def tokens() -> AccessTokens:
    return AccessTokens(SECRET, ISSUER, AUDIENCE, TTL)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], claims: dict[str, Any], key: str | None) -> str:
    """Build a JWT by hand (PyJWT refuses to make some of these): HMAC-SHA256 or no signature."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def good_claims(**changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "user-public-id",
        "role": "CUSTOMER",
        "sid": "session-public-id",
        "typ": "access",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=TTL)).timestamp()),
    }
    claims.update(changes)
    return claims


def signed(claims: dict[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


# -- what is issued ------------------------------------------------------------------------


def test_issued_token_round_trips_to_its_claims(tokens: AccessTokens) -> None:
    # given a token issued now
    now = datetime.now(UTC)
    token = tokens.issue("user-1", "CUSTOMER", "session-1", now)
    # when decoded
    claims = tokens.decode(token)
    # then it carries the public user id, role and session id, expiring after the TTL
    assert (claims.user_id, claims.role, claims.session_id) == ("user-1", "CUSTOMER", "session-1")
    assert claims.expires_at == datetime.fromtimestamp(int(now.timestamp()) + TTL, UTC)


def test_issued_token_is_hs256_short_lived_and_typed(tokens: AccessTokens) -> None:
    # given a token issued now
    token = tokens.issue("user-1", "CUSTOMER", "session-1", datetime.now(UTC))
    # then its header pins HS256 and its claims say access, our issuer/audience, <= 15 min
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    raw = jwt.decode(token, options={"verify_signature": False})
    assert raw["typ"] == "access"
    assert (raw["iss"], raw["aud"]) == (ISSUER, AUDIENCE)
    assert 0 < raw["exp"] - raw["iat"] <= 900


def test_hand_forged_good_token_is_accepted(tokens: AccessTokens) -> None:
    # given the forging helper used below, with the right key and claims
    # then decode accepts it: the refusals below are due to the one thing changed
    assert tokens.decode(forge({"alg": "HS256", "typ": "JWT"}, good_claims(), SECRET)).user_id == (
        "user-public-id"
    )


def test_a_token_of_exactly_the_configured_lifetime_is_accepted(tokens: AccessTokens) -> None:
    # given a well-signed token whose exp - iat is the TTL to the second
    claims = good_claims()
    claims["exp"] = claims["iat"] + TTL
    # then it is accepted: the lifetime check refuses only what is longer
    assert tokens.decode(signed(claims)).user_id == "user-public-id"


def test_a_shorter_configured_lifetime_refuses_tokens_issued_under_a_longer_one() -> None:
    # given a token issued while the lifetime was 900 s
    token = AccessTokens(SECRET, ISSUER, AUDIENCE, 900).issue(
        "user-1", "CUSTOMER", "session-1", datetime.now(UTC)
    )
    # when the lifetime is lowered to 300 s, then the old (still unexpired) token is refused
    with pytest.raises(InvalidToken):
        AccessTokens(SECRET, ISSUER, AUDIENCE, 300).decode(token)
    assert AccessTokens(SECRET, ISSUER, AUDIENCE, 900).decode(token).user_id == "user-1"


# -- refusals -------------------------------------------------------------------------------

ATTACKS: dict[str, Any] = {
    "alg-none": lambda: forge({"alg": "none", "typ": "JWT"}, good_claims(), None),
    "alg-none-capitalised": lambda: forge({"alg": "None", "typ": "JWT"}, good_claims(), None),
    "hs256-signed-with-public-key": lambda: forge(
        {"alg": "HS256", "typ": "JWT"}, good_claims(), PUBLIC_KEY_PEM
    ),
    "header-rs256-with-valid-hmac": lambda: forge(
        {"alg": "RS256", "typ": "JWT"}, good_claims(), SECRET
    ),
    "header-hs512": lambda: jwt.encode(good_claims(), SECRET, algorithm="HS512"),
    "wrong-secret": lambda: signed(good_claims(), "another-secret-" + "z" * 40),
    "wrong-aud": lambda: signed(good_claims(aud="someone-else")),
    "wrong-iss": lambda: signed(good_claims(iss="evil-issuer")),
    "typ-refresh": lambda: signed(good_claims(typ="refresh")),
    "typ-missing": lambda: signed({k: v for k, v in good_claims().items() if k != "typ"}),
    "expired": lambda: signed(
        good_claims(
            iat=int((datetime.now(UTC) - timedelta(seconds=2 * TTL)).timestamp()),
            exp=int((datetime.now(UTC) - timedelta(seconds=1)).timestamp()),
        )
    ),
    "exp-missing": lambda: signed({k: v for k, v in good_claims().items() if k != "exp"}),
    "iat-missing": lambda: signed({k: v for k, v in good_claims().items() if k != "iat"}),
    "iat-not-a-number": lambda: signed(good_claims(iat="1700000000")),
    "iat-a-boolean": lambda: signed(good_claims(iat=True)),
    # PyJWT reads a numeric string as a time; the app does not
    "exp-a-string": lambda: signed(good_claims(exp=str(good_claims()["exp"]))),
    # well signed, unexpired, but made to live longer than the configured lifetime
    "lifetime-one-second-too-long": lambda: signed(good_claims(exp=good_claims()["iat"] + TTL + 1)),
    "lifetime-a-year": lambda: signed(good_claims(exp=good_claims()["iat"] + 365 * 86400)),
    "iat-backdated-exp-valid": lambda: signed(
        good_claims(iat=good_claims()["iat"] - 3600, exp=good_claims()["iat"] + 60)
    ),
    "sid-missing": lambda: signed({k: v for k, v in good_claims().items() if k != "sid"}),
    "sid-not-a-string": lambda: signed(good_claims(sid=42)),
    "sub-missing": lambda: signed({k: v for k, v in good_claims().items() if k != "sub"}),
    "role-not-a-string": lambda: signed(good_claims(role=["ADMIN"])),
    "tampered-signature": lambda: _tamper_signature(signed(good_claims())),
    "tampered-payload": lambda: _swap_payload(signed(good_claims()), good_claims(role="ADMIN")),
    "garbage": lambda: "not.a.jwt",
    "empty": lambda: "",
}


def _tamper_signature(token: str) -> str:
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{head}.{payload}.{flipped}"


def _swap_payload(token: str, claims: dict[str, Any]) -> str:
    head, _, signature = token.split(".")
    return f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"


# Which check refuses each: PyJWT's (by its exception's name) or the app's own (by its
# words). A token refused by another check than its own would hide a dead check.
REFUSED_BY = {
    "alg-none": "InvalidAlgorithmError",
    "alg-none-capitalised": "InvalidAlgorithmError",
    "hs256-signed-with-public-key": "InvalidSignatureError",
    "header-rs256-with-valid-hmac": "InvalidAlgorithmError",
    "header-hs512": "InvalidAlgorithmError",
    "wrong-secret": "InvalidSignatureError",
    "wrong-aud": "InvalidAudienceError",
    "wrong-iss": "InvalidIssuerError",
    "typ-refresh": "wrong typ",
    "typ-missing": "MissingRequiredClaimError",
    "expired": "ExpiredSignatureError",
    "exp-missing": "MissingRequiredClaimError",
    "iat-missing": "MissingRequiredClaimError",
    "iat-not-a-number": "malformed iat",
    "iat-a-boolean": "malformed iat",
    "exp-a-string": "malformed exp",
    "lifetime-one-second-too-long": "lifetime longer than ACCESS_TOKEN_TTL_SECONDS",
    "lifetime-a-year": "lifetime longer than ACCESS_TOKEN_TTL_SECONDS",
    "iat-backdated-exp-valid": "lifetime longer than ACCESS_TOKEN_TTL_SECONDS",
    "sid-missing": "MissingRequiredClaimError",
    "sid-not-a-string": "malformed claims",
    "sub-missing": "MissingRequiredClaimError",
    "role-not-a-string": "malformed claims",
    "tampered-signature": "InvalidSignatureError",
    "tampered-payload": "InvalidSignatureError",
    "garbage": "DecodeError",
    "empty": "DecodeError",
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_forged_or_stale_token_is_refused(tokens: AccessTokens, attack: str) -> None:
    # given a token that differs from a good one in one respect
    token = ATTACKS[attack]()
    # when decoded, then it is refused with InvalidToken (never another exception)
    with pytest.raises(InvalidToken) as refused:
        tokens.decode(token)
    # and by the check meant for it
    assert str(refused.value) == REFUSED_BY[attack]


def test_every_attack_names_the_check_that_refuses_it() -> None:
    assert set(REFUSED_BY) == set(ATTACKS)


def test_a_token_that_expired_after_it_was_cached_is_refused_as_expired(
    tokens: AccessTokens, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a live token, verified once (its claims are cached)
    token = tokens.issue("user-1", "CUSTOMER", "session-1", datetime.now(UTC))
    later = tokens.decode(token).expires_at
    # when the clock reaches its expiry to the second (the module's clock, read on every
    # decode; an access token lives up to, not including, its `exp`)

    class Later(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Later:
            return cls.fromtimestamp(later.timestamp(), tz)

    monkeypatch.setattr("app.security.tokens.datetime", Later)
    # then the cached claims do not keep it alive: the expiry re-check refuses it
    with pytest.raises(InvalidToken) as refused:
        tokens.decode(token)
    assert str(refused.value) == "expired"


def test_the_claim_cache_is_bounded(tokens: AccessTokens) -> None:
    # given more distinct live tokens than the cache holds
    now = datetime.now(UTC)
    for i in range(4100):
        tokens.decode(tokens.issue(f"user-{i}", "CUSTOMER", f"session-{i}", now))
    # then it keeps at most 4,096 verified tokens (a flood of tokens cannot grow memory)
    info = tokens._verified.cache_info()
    assert info.maxsize == 4096 and info.currsize == 4096


def test_issued_tokens_carry_a_random_id_and_the_pinned_header(tokens: AccessTokens) -> None:
    now = datetime.now(UTC)
    first, second = (tokens.issue("user-1", "CUSTOMER", "session-1", now) for _ in range(2))
    assert jwt.get_unverified_header(first) == {"alg": "HS256", "typ": "JWT"}
    ids = [jwt.decode(t, options={"verify_signature": False})["jti"] for t in (first, second)]
    # 8 random bytes: 11 url-safe characters, different for two tokens of the same second
    assert all(len(jti) == 11 for jti in ids) and ids[0] != ids[1]


# -- refresh-token helpers --------------------------------------------------------------------


def test_opaque_tokens_are_random_and_have_256_bits() -> None:
    # given many refresh tokens
    made = {new_opaque_token() for _ in range(200)}
    # then none repeats and each encodes 32 random bytes (43 url-safe characters)
    assert len(made) == 200
    assert all(len(token) == 43 for token in made)


def test_token_digest_is_sha256_hex_and_not_the_token() -> None:
    token = new_opaque_token()
    assert token_digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert token not in token_digest(token)


def test_public_ids_are_random() -> None:
    made = {new_public_id() for _ in range(200)}
    # 12 random bytes: 16 url-safe characters, none repeated
    assert len(made) == 200
    assert all(len(public_id) == 16 for public_id in made)
