"""Phone numbers: E.164 normalisation, the caller's jurisdiction, and the keyed hash stored instead."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from rapport.numbers import caller_key, is_e164, jurisdiction, normalise

PEPPER = "local-development-pepper"

# -- builders -----------------------------------------------------------------------------------------

# Country calling codes with a single, well-known region, and national numbers of plausible length.
valid_numbers = st.builds(
    lambda country, national: normalise(f"+{country}{national}"),
    st.sampled_from(["1", "44", "49", "33", "43", "39", "61"]),
    st.text(alphabet="123456789", min_size=1, max_size=1).flatmap(
        lambda first: st.text(alphabet="0123456789", min_size=7, max_size=10).map(lambda rest: first + rest)
    ),
).filter(lambda number: number is not None)


# -- normalise ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+493055501042", "+493055501042"),
        ("+49 30 55501042", "+493055501042"),
        ("  +1 202 555 0107 ", "+12025550107"),
        ("tel:+493055501042", "+493055501042"),
        ("+49-30-5550-1042", "+493055501042"),
        ("+44 20 7946 0000", "+442079460000"),
    ],
)
def test_dialable_numbers_come_out_as_e164(raw: str, e164: str) -> None:
    assert normalise(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "",
        "anonymous",
        "Anonymous",
        "berlin-07",
        "+12",
        "+" + "1" * 20,
        "4930555010420000" * 5,
        "not a number at all",
        "+999123456789",
    ],
)
def test_what_is_not_a_dialable_number_normalises_to_none(raw: str | None) -> None:
    assert normalise(raw) is None


@settings(deadline=None)
@given(st.text(alphabet="+0123456789 -().tel:", max_size=25) | st.text(max_size=80))
def test_normalise_returns_e164_or_none_for_any_text(raw: str) -> None:
    result = normalise(raw)

    assert result is None or (is_e164(result) and normalise(result) == result)


@pytest.mark.parametrize("short", ["+4922", "+43000", "+431234"])
def test_short_numbers_never_come_out_as_something_is_e164_rejects(short: str) -> None:
    result = normalise(short)

    assert result is None or is_e164(result)


@settings(deadline=None)
@given(valid_numbers)
def test_normalising_an_e164_number_changes_nothing(number: str) -> None:
    assert normalise(number) == number


# -- jurisdiction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "region"),
    [
        ("+493055501042", "DE"),
        ("+12025550107", "US"),
        ("+442079460000", "GB"),
        (None, None),
    ],
)
def test_jurisdiction_is_the_region_of_the_number(number: str | None, region: str | None) -> None:
    assert jurisdiction(number) == region


def test_jurisdiction_of_garbage_is_none() -> None:
    assert jurisdiction("anonymous") is None


@pytest.mark.parametrize("number", ["+881612345678", "+80012345678", "+883510012345"])
def test_a_non_geographic_number_has_no_jurisdiction(number: str) -> None:
    assert jurisdiction(number) is None


def test_non_geographic_numbers_are_dialable_callers() -> None:
    """Satellite phones (+881) and international networks (+883) do call in; they must normalise."""
    assert normalise("+881612345678") == "+881612345678"
    assert normalise("+883510012345") == "+883510012345"


# -- caller key ---------------------------------------------------------------------------------------


def test_the_caller_key_is_64_hex_characters() -> None:
    assert re.fullmatch(r"[0-9a-f]{64}", caller_key("+493055501042", PEPPER))


def test_the_same_number_and_pepper_always_give_the_same_key() -> None:
    assert caller_key("+493055501042", PEPPER) == caller_key("+493055501042", PEPPER)


def test_another_pepper_gives_another_key() -> None:
    assert caller_key("+493055501042", PEPPER) != caller_key("+493055501042", "production-pepper")


def test_another_number_gives_another_key() -> None:
    assert caller_key("+493055501042", PEPPER) != caller_key("+493055501043", PEPPER)


@settings(deadline=None)
@given(number=valid_numbers, pepper=st.text(min_size=1, max_size=40))
def test_the_caller_key_never_reveals_the_number(number: str, pepper: str) -> None:
    key = caller_key(number, pepper)

    assert re.fullmatch(r"[0-9a-f]{64}", key)
    assert number.lstrip("+") not in key
    assert key == caller_key(number, pepper)


@settings(deadline=None)
@given(first=valid_numbers, second=valid_numbers, pepper=st.text(min_size=1, max_size=40))
def test_different_numbers_never_share_a_key(first: str, second: str, pepper: str) -> None:
    assume(first != second)

    assert caller_key(first, pepper) != caller_key(second, pepper)


@settings(deadline=None)
@given(number=valid_numbers, first=st.text(min_size=1), second=st.text(min_size=1))
def test_different_peppers_never_share_a_key(number: str, first: str, second: str) -> None:
    assume(first != second)

    assert caller_key(number, first) != caller_key(number, second)
