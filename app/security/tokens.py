"""Access JWTs (short-lived, HS256 pinned, iss/aud/exp/typ checked) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

import jwt

ALGORITHM = "HS256"
ACCESS_TYPE = "access"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str  # public user id (never the integer primary key)
    role: str
    session_id: str
    expires_at: datetime


class InvalidToken(Exception):
    """Any reason an access token is not acceptable; the reason is not told to the client."""


class AccessTokens:
    def __init__(self, secret: str, issuer: str, audience: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self.ttl_seconds = ttl_seconds
        # Verified claims by token, so a client's repeated requests skip the HMAC and claim
        # checks. Only successful verifications are cached (exceptions are not), expiry is
        # checked again on every use, and the session-liveness query still runs per
        # request, so logout stays immediate.
        self._verified = lru_cache(maxsize=4096)(self._verify)

    def issue(self, user_id: str, role: str, session_id: str, now: datetime) -> str:
        issued_at = int(now.timestamp())
        claims = {
            "sub": user_id,
            "role": role,
            "sid": session_id,
            "typ": ACCESS_TYPE,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": issued_at,
            "exp": issued_at + self.ttl_seconds,  # exactly the lifetime (checked on decode)
            "jti": secrets.token_urlsafe(8),
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM, headers={"typ": "JWT"})

    def decode(self, token: str) -> AccessClaims:
        claims = self._verified(token)
        if claims.expires_at <= datetime.now(UTC):
            raise InvalidToken("expired")
        return claims

    def _verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],  # pinned: no "none", no RS/HS confusion
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "sid", "typ"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        if claims.get("typ") != ACCESS_TYPE:
            raise InvalidToken("wrong typ")
        if not all(isinstance(claims.get(k), str) for k in ("sub", "sid", "role")):
            raise InvalidToken("malformed claims")
        if not isinstance(claims.get("exp"), int | float) or isinstance(claims["exp"], bool):
            raise InvalidToken("malformed exp")  # PyJWT tolerates "exp": "1700000000"
        if not isinstance(claims.get("iat"), int | float) or isinstance(claims["iat"], bool):
            raise InvalidToken("malformed iat")
        # A token that claims to live longer than we issue them was not made by issue():
        # a leaked secret, a forgery or an old configuration. Refused even when well signed.
        if claims["exp"] - claims["iat"] > self.ttl_seconds:
            raise InvalidToken("lifetime longer than ACCESS_TOKEN_TTL_SECONDS")
        return AccessClaims(
            user_id=claims["sub"],
            role=claims["role"],
            session_id=claims["sid"],
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )


def new_opaque_token() -> str:
    """A refresh token (or other bearer secret): 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """Refresh tokens are stored as SHA-256 digests: a database leak yields no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_public_id() -> str:
    """Opaque public identifier for rows that clients refer to (users, sessions)."""
    return secrets.token_urlsafe(12)
