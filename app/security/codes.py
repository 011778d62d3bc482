"""Order codes (DESIGN §2): 15 random Crockford base32 symbols + a Luhn mod 32 check symbol.

Codes are stored and compared in their canonical form (16 symbols, no hyphens) and shown to
people grouped as XXXX-XXXX-XXXX-XXXX. RMA codes and tracking-link tokens use the same scheme.
"""

from __future__ import annotations

import secrets

from app.errors import InvalidOrderCode

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
BASE = len(ALPHABET)  # 32
BODY_LENGTH = 15  # 15 * 5 bits = 75 bits of entropy
CODE_LENGTH = BODY_LENGTH + 1
_VALUE = {symbol: value for value, symbol in enumerate(ALPHABET)}
# Crockford's reading aids: letters people confuse with digits.
_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_IGNORED = str.maketrans("", "", " -")


# A symbol's addend when its factor is 2: the digits (base 32) of its doubled value.
_DOUBLED = {symbol: (2 * value) // BASE + (2 * value) % BASE for symbol, value in _VALUE.items()}


def _luhn_sum(symbols: str, first_factor: int) -> int:
    """Luhn mod 32's sum: from the right, factors alternate first_factor, the other one.
    Sums of two slices through lookup tables rather than a loop per symbol: every code
    lookup checks one (tests/unit/test_codes.py holds it to the loop it replaces)."""
    backwards = symbols[::-1]
    once, twice = (backwards[0::2], backwards[1::2])
    if first_factor == 2:
        once, twice = twice, once
    return sum(map(_VALUE.__getitem__, once)) + sum(map(_DOUBLED.__getitem__, twice))


def check_symbol(body: str) -> str:
    """The Luhn mod 32 check symbol for a 15-symbol body (rightmost symbol doubled)."""
    return ALPHABET[(BASE - _luhn_sum(body, 2) % BASE) % BASE]


def is_valid_canonical(code: str) -> bool:
    # `strip` removes every alphabet symbol from both ends: nothing is left of a code
    # made of them only (one C call instead of a generator over the symbols)
    return len(code) == CODE_LENGTH and not code.strip(ALPHABET) and _luhn_sum(code, 1) % BASE == 0


def generate() -> str:
    """A new canonical code: 75 bits from `secrets`, then the check symbol."""
    body = "".join(secrets.choice(ALPHABET) for _ in range(BODY_LENGTH))
    return body + check_symbol(body)


def normalise(raw: str) -> str:
    """Canonical form of what a person typed, or InvalidOrderCode. Touches no database.

    Case-insensitive; spaces and hyphens ignored; O→0, I→1, L→1. Wrong length, U or any
    other character, or a wrong check symbol is refused.
    """
    if not isinstance(raw, str) or len(raw) > 64:
        raise InvalidOrderCode()
    candidate = raw.upper().translate(_IGNORED).translate(_ALIASES)
    if not is_valid_canonical(candidate):
        raise InvalidOrderCode()
    return candidate


def display(code: str) -> str:
    """XXXX-XXXX-XXXX-XXXX for people."""
    if len(code) == CODE_LENGTH:  # every code (16): one f-string, not a join of a generator
        return f"{code[:4]}-{code[4:8]}-{code[8:12]}-{code[12:]}"
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def mask(code: str) -> str:
    """For logs: first and last group only (ABCD-****-****-WXYZ)."""
    canonical = code.upper().replace("-", "").replace(" ", "")
    if len(canonical) != CODE_LENGTH:
        return "****-****-****-****"
    return f"{canonical[:4]}-****-****-{canonical[-4:]}"
