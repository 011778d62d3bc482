"""Order codes (DESIGN §2): generation, normalisation and check-symbol error detection."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.errors import InvalidOrderCode
from app.security import codes

symbols = st.sampled_from(codes.ALPHABET)
bodies = st.text(alphabet=codes.ALPHABET, min_size=15, max_size=15)


def canonical_codes() -> st.SearchStrategy[str]:
    return bodies.map(lambda body: body + codes.check_symbol(body))


def test_generated_codes_are_16_symbols_from_the_alphabet_and_valid() -> None:
    for _ in range(2000):
        code = codes.generate()
        assert len(code) == 16
        assert set(code) <= set(codes.ALPHABET)
        assert codes.is_valid_canonical(code)


def test_generation_uses_the_whole_alphabet_in_every_position() -> None:
    # 75 random bits: after enough draws every body position has taken many values
    seen: list[set[str]] = [set() for _ in range(15)]
    for _ in range(3000):
        for position, symbol in enumerate(codes.generate()[:15]):
            seen[position].add(symbol)
    assert all(len(values) == 32 for values in seen)


def test_known_check_symbol() -> None:
    # Worked by hand from DESIGN §2: body "000000000000001" → rightmost 1 doubled → sum 2 →
    # check (32 - 2) % 32 = 30 → "Y"
    assert codes.check_symbol("000000000000001") == "Y"
    assert codes.is_valid_canonical("000000000000001Y")


def _reference_sum(symbols: str, first_factor: int) -> int:
    """Luhn mod 32's sum as DESIGN §2 states it: a loop from the right, factors alternating."""
    total, factor = 0, first_factor
    for symbol in reversed(symbols):
        addend = factor * codes.ALPHABET.index(symbol)
        total += addend // codes.BASE + addend % codes.BASE
        factor = 1 if factor == 2 else 2
    return total


def _reference_valid(code: str) -> bool:
    return (
        len(code) == codes.CODE_LENGTH
        and all(symbol in codes.ALPHABET for symbol in code)
        and _reference_sum(code, 1) % codes.BASE == 0
    )


@settings(max_examples=500)
@given(st.text(alphabet=codes.ALPHABET, max_size=20), st.sampled_from([1, 2]))
def test_the_check_sum_is_the_loop_from_the_right(symbols: str, first_factor: int) -> None:
    assert codes._luhn_sum(symbols, first_factor) == _reference_sum(symbols, first_factor)


@settings(max_examples=500)
@given(
    st.one_of(
        canonical_codes(),
        st.text(alphabet=codes.ALPHABET, min_size=16, max_size=16),  # most fail the check
        st.text(alphabet=codes.ALPHABET + "!U a-\u00c4\x00", min_size=14, max_size=18),
        canonical_codes().flatmap(
            lambda code: st.integers(0, 15).map(lambda at: code[:at] + "U" + code[at + 1 :])
        ),
    )
)
def test_is_valid_canonical_agrees_with_the_reference(code: str) -> None:
    assert codes.is_valid_canonical(code) == _reference_valid(code)


@given(canonical_codes())
def test_display_then_normalise_round_trips(code: str) -> None:
    shown = codes.display(code)
    assert shown.count("-") == 3
    assert codes.normalise(shown) == code
    assert codes.normalise(shown.lower().replace("-", " ")) == code


@given(canonical_codes())
def test_confusable_letters_are_read_as_digits(code: str) -> None:
    typed = code.replace("0", "O").replace("1", "I")
    assert codes.normalise(typed) == code
    assert codes.normalise(code.replace("1", "l")) == code


@settings(max_examples=300)
@given(canonical_codes(), st.integers(min_value=0, max_value=15), symbols)
def test_any_single_symbol_substitution_is_detected(code: str, position: int, new: str) -> None:
    if code[position] == new:
        return
    typo = code[:position] + new + code[position + 1 :]
    with pytest.raises(InvalidOrderCode):
        codes.normalise(typo)


@settings(max_examples=300)
@given(canonical_codes(), st.integers(min_value=0, max_value=14))
def test_adjacent_transpositions_are_mostly_detected(code: str, position: int) -> None:
    a, b = code[position], code[position + 1]
    swapped = code[:position] + b + a + code[position + 2 :]
    # Like Luhn mod 10 (which misses 09 ↔ 90), Luhn mod 32 misses exactly one adjacent
    # swap: 0 ↔ Z (values 0 and 31). Every other swap must be caught.
    if a == b or {codes.ALPHABET.index(a), codes.ALPHABET.index(b)} == {0, 31}:
        return
    with pytest.raises(InvalidOrderCode):
        codes.normalise(swapped)


@given(st.text(max_size=40))
def test_normalise_accepts_only_valid_codes(raw: str) -> None:
    try:
        canonical = codes.normalise(raw)
    except InvalidOrderCode:
        return
    assert codes.is_valid_canonical(canonical)


@pytest.mark.parametrize(
    "raw",
    ["", "ABCD", "UUUU-UUUU-UUUU-UUUU", "ABCD-EFGH-JKMN-PQR!", "A" * 17, "A" * 100, "ÄBCD" * 4],
)
def test_malformed_inputs_are_invalid(raw: str) -> None:
    with pytest.raises(InvalidOrderCode):
        codes.normalise(raw)


def test_mask_keeps_first_and_last_group_only() -> None:
    code = codes.generate()
    masked = codes.mask(code)
    assert masked == f"{code[:4]}-****-****-{code[-4:]}"
    assert code[4:12] not in masked


def test_mask_reads_a_code_as_typed_and_hides_anything_else_whole() -> None:
    code = codes.generate()
    shown = codes.display(code).lower().replace("-", " ", 1)  # "abcd efgh-ijkl-mnop"
    assert codes.mask(shown) == f"{code[:4]}-****-****-{code[-4:]}"
    # a string that is no code (too short or too long) shows nothing of itself
    assert codes.mask(code[:-1]) == "****-****-****-****"
    assert codes.mask(code + "Z") == "****-****-****-****"


def test_input_up_to_64_characters_is_read_and_longer_is_refused() -> None:
    # given a valid code padded with spaces to exactly 64 characters, and to 65
    code = codes.generate()
    at_limit = codes.display(code).ljust(64)
    assert len(at_limit) == 64
    # then the first is read and the second refused before it is looked at
    assert codes.normalise(at_limit) == code
    with pytest.raises(InvalidOrderCode):
        codes.normalise(at_limit + " ")


@pytest.mark.parametrize("raw", [None, 12345, b"ABCD-EFGH-JKMN-PQRS", ["ABCD"]])
def test_a_code_that_is_not_text_is_invalid(raw: object) -> None:
    with pytest.raises(InvalidOrderCode):
        codes.normalise(raw)  # type: ignore[arg-type]  # what a client may send
