"""What the inbound INVITE's SIP headers tell: the originally dialled number and the product of interest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sip_context import MAX_HEADER_CHARS, MAX_PRODUCTS, read_sip_context

# -- builders -----------------------------------------------------------------------------------------


def diversion(*numbers: str, scheme: str = "sip") -> str:
    """A Diversion header value, newest entry first as RFC 5806 writes it."""
    entries = [
        f"<{scheme}:{number}@pbx.example.com>;reason=unconditional;counter={index}"
        if scheme == "sip"
        else f"<tel:{number}>;reason=unconditional;counter={index}"
        for index, number in enumerate(numbers, start=1)
    ]
    return ", ".join(entries)


# -- Diversion ----------------------------------------------------------------------------------------


def test_no_headers_means_nothing_dialled_no_products_no_problems() -> None:
    context = read_sip_context({})

    assert (context.dialled, context.products, context.problems) == (None, (), [])


def test_a_single_diversion_names_the_dialled_number() -> None:
    context = read_sip_context({"Diversion": diversion("+4930555019")})

    assert context.dialled == "+4930555019"
    assert context.problems == []


def test_with_several_diversions_the_last_entry_is_the_originally_dialled_number() -> None:
    header = diversion("+4930555011", "+4930555012", "+4930555019")

    assert read_sip_context({"Diversion": header}).dialled == "+4930555019"


def test_a_tel_uri_diversion_names_the_dialled_number() -> None:
    assert read_sip_context({"Diversion": diversion("+4930555019", scheme="tel")}).dialled == "+4930555019"


def test_the_dialled_number_is_normalised_to_e164() -> None:
    assert read_sip_context({"Diversion": "<sip:+49-30-555019@pbx.example.com>"}).dialled == "+4930555019"


def test_the_sample_event_s_diversion_header_is_read() -> None:
    header = "<sip:+4930555019@example.com>;reason=unconditional;counter=1"

    assert read_sip_context({"Diversion": header}).dialled == "+4930555019"


@pytest.mark.parametrize("name", ["diversion", "DIVERSION", "DiVeRsIoN"])
def test_header_names_match_in_any_case(name: str) -> None:
    assert read_sip_context({name: diversion("+4930555019")}).dialled == "+4930555019"


@pytest.mark.parametrize(
    "garbage", ["garbage", "<<<>>>", "<sip:+4930555019@example.com", ";;;", "<sip:a@b>,"]
)
def test_an_unreadable_diversion_is_reported_not_raised(garbage: str) -> None:
    context = read_sip_context({"Diversion": garbage})

    assert context.dialled is None
    assert context.problems


def test_a_diversion_without_a_phone_number_is_reported() -> None:
    context = read_sip_context({"Diversion": "<sip:reception@pbx.example.com>;reason=no-answer"})

    assert context.dialled is None
    assert len(context.problems) == 1


@pytest.mark.parametrize(
    "header", ["<sip:+4930555019@pbx.example.com>;self=1", "<sip:+4930555019@pbx.example.com;self>"]
)
def test_a_parameter_named_self_does_not_break_the_call(header: str) -> None:
    """sipmessage stores parameters as keyword arguments, so `self` once raised TypeError mid-call."""
    context = read_sip_context({"Diversion": header, "x-rapport-product": "x200"})

    assert context.dialled == "+4930555019" or context.problems
    assert context.products == ("x200",)


# -- x-rapport-product ----------------------------------------------------------------------------------


def test_a_product_header_names_a_live_interest() -> None:
    context = read_sip_context({"x-rapport-product": "x200-headphones"})

    assert context.products == ("x200-headphones",)
    assert context.problems == []


def test_product_ids_are_lowercased() -> None:
    assert read_sip_context({"X-Rapport-Product": "X200-Headphones"}).products == ("x200-headphones",)


def test_several_products_are_read_in_order_without_duplicates() -> None:
    context = read_sip_context({"x-rapport-product": "x200, tv-55 ,X200,m5"})

    assert context.products == ("x200", "tv-55", "m5")


def test_at_most_three_products_are_kept() -> None:
    context = read_sip_context({"x-rapport-product": "a1,b2,c3,d4,e5"})

    assert MAX_PRODUCTS == 3
    assert context.products == ("a1", "b2", "c3")


@pytest.mark.parametrize("bad", ["-x200", "x200 headphones", "x200/../etc", "<script>", "ä-phone", "x" * 65])
def test_an_invalid_product_id_is_reported_and_the_valid_ones_kept(bad: str) -> None:
    context = read_sip_context({"x-rapport-product": f"x200,{bad}"})

    assert context.products == ("x200",)
    assert len(context.problems) == 1


def test_empty_entries_in_the_product_header_are_not_problems() -> None:
    context = read_sip_context({"x-rapport-product": " , x200 ,,"})

    assert context.products == ("x200",)
    assert context.problems == []


def test_diversion_and_product_are_read_together() -> None:
    context = read_sip_context(
        {
            "Diversion": diversion("+4930555019"),
            "x-rapport-product": "x200-headphones",
            "User-to-User": "726170706f7274;encoding=hex",
        }
    )

    assert context.dialled == "+4930555019"
    assert context.products == ("x200-headphones",)
    assert context.problems == []


# -- crafted headers: bounded work, one line each ---------------------------------------------------


def test_a_product_header_longer_than_the_limit_is_ignored_whole() -> None:
    header = ",".join(f"p-{index}" for index in range(100_000))
    context = read_sip_context({"x-rapport-product": header})

    assert context.products == ()
    assert context.problems == [f"x-rapport-product of {len(header)} characters ignored (limit 2048)"]


def test_many_bad_product_values_make_one_problem_that_counts_them() -> None:
    header = ",".join(["x200", *("Bad Value" for _ in range(150))])[:MAX_HEADER_CHARS]
    context = read_sip_context({"x-rapport-product": header})

    assert context.products == ("x200",)
    assert len(context.problems) == 1 and "value(s) ignored" in context.problems[0]


def test_a_diversion_longer_than_the_limit_is_not_parsed() -> None:
    header = ", ".join(f"<sip:+1800555{index % 10_000:04d}@example.com>" for index in range(50_000))
    context = read_sip_context({"Diversion": header})

    assert context.dialled is None
    assert context.problems == [f"Diversion header of {len(header)} characters ignored (limit 2048)"]


def test_only_the_headers_rapport_reads_are_looked_at() -> None:
    headers = {f"x-noise-{index}": "x" * 100 for index in range(10_000)}
    context = read_sip_context({**headers, "X-Rapport-Product": "m5"})

    assert context.products == ("m5",) and context.problems == []


# -- fuzzing ------------------------------------------------------------------------------------------

header_names = st.sampled_from(
    ["Diversion", "diversion", "x-rapport-product", "X-RAPPORT-PRODUCT"]
) | st.text(max_size=12)
sip_text = st.text(alphabet='<>;=,:@+.-_ "\\%sipteluxyz0123456789', max_size=80)


@given(st.dictionaries(header_names, sip_text | st.text(max_size=80), max_size=5))
def test_any_header_dict_is_read_without_raising(headers: dict[str, str]) -> None:
    context = read_sip_context(headers)

    assert context.dialled is None or context.dialled.startswith("+")
    assert len(context.products) <= MAX_PRODUCTS
    assert len(set(context.products)) == len(context.products)
    assert len(context.problems) <= 2  # at most one per header read
