"""Normalisation of identifiers: examples and properties (idempotence, format invariance)."""

from __future__ import annotations

import random

import phonenumbers
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from autopersona.identity.normalise import (
    email_domain,
    email_local,
    fold_name,
    name_letters,
    normalise_city,
    normalise_email,
    normalise_phone,
    normalise_vin,
    region_hint,
)

REGIONS = ("CN", "HK", "JP", "DE", "US", "GB", "FR", "SG")
PNF = phonenumbers.PhoneNumberFormat


# --------------------------------------------------------------------------- phones
@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+86 138 0013 8000", None),
        ("13800138000", "CN"),
        ("138-0013-8000", "CN"),
        ("+8613800138000", "CN"),
        ("0086 13800138000", "CN"),
        ("0086 13800138000", None),
        ("(+86) 138 0013 8000", "HK"),
        ("13800138000", None),
    ],
)
def test_cn_mobile_formats_agree(raw: str, region: str | None) -> None:
    assert normalise_phone(raw, region) == "+8613800138000"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("9516-8666", "HK", "+85295168666"),
        ("+852 9516 8666", None, "+85295168666"),
        ("070-1234-5678", "JP", "+817012345678"),
        ("+81 70-1234-5678", None, "+817012345678"),
        ("0157 1234 5678", "DE", "+4915712345678"),
        ("+1 (213) 555-1234", None, "+12135551234"),
        ("213-555-1234", "US", "+12135551234"),
        # A number not yet in the metadata's allocated ranges is kept when read in the hinted
        # region rather than reinterpreted as a valid number of another country.
        ("19477645753", "CN", "+8619477645753"),
        ("015381697503", "DE", "+4915381697503"),
    ],
)
def test_regional_formats(raw: str, region: str | None, expected: str) -> None:
    assert normalise_phone(raw, region) == expected


@pytest.mark.parametrize("raw", [None, "", "   ", "n/a", "none", "12", "+", "++86"])
def test_unusable_phones_are_none(raw: str | None) -> None:
    assert normalise_phone(raw, "CN") is None


@st.composite
def valid_numbers(draw: st.DrawFn) -> tuple[str, phonenumbers.PhoneNumber]:
    region = draw(st.sampled_from(REGIONS))
    kind = draw(
        st.sampled_from(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
    )
    example = phonenumbers.example_number_for_type(region, kind)
    assume(example is not None)
    nsn = str(example.national_number)
    tail = draw(st.integers(0, 9999))
    varied = nsn[:-4] + f"{tail:04d}" if len(nsn) > 6 else nsn
    number = phonenumbers.parse("+" + str(example.country_code) + varied, None)
    assume(phonenumbers.is_valid_number(number))
    return region, number


@given(valid_numbers())
def test_phone_format_invariance(case: tuple[str, phonenumbers.PhoneNumber]) -> None:
    region, number = case
    e164 = phonenumbers.format_number(number, PNF.E164)
    national = phonenumbers.format_number(number, PNF.NATIONAL)
    writings = [
        e164,
        phonenumbers.format_number(number, PNF.INTERNATIONAL),
        national,
        "".join(c for c in national if c.isdigit()),
        "-".join(national.split()),
        "00" + e164[1:],
        " " + phonenumbers.format_number(number, PNF.RFC3966).removeprefix("tel:") + " ",
    ]
    for w in writings:
        assert normalise_phone(w, region) == e164, w


@given(valid_numbers())
def test_phone_with_country_code_needs_no_hint(case: tuple[str, phonenumbers.PhoneNumber]) -> None:
    region, number = case
    e164 = phonenumbers.format_number(number, PNF.E164)
    intl = phonenumbers.format_number(number, PNF.INTERNATIONAL)
    other = "US" if region != "US" else "CN"
    assert normalise_phone(intl) == normalise_phone(intl, other) == e164


@given(st.text(alphabet="0123456789 +-().", max_size=20), st.sampled_from((None, *REGIONS)))
def test_phone_idempotent(raw: str, region: str | None) -> None:
    once = normalise_phone(raw, region)
    if once is not None:
        assert once.startswith("+")
        assert normalise_phone(once, region) == once
        assert normalise_phone(once) == once


def test_region_hint() -> None:
    assert region_hint("Asia/Shanghai") == "CN"
    assert region_hint("Asia/Urumqi", "Berlin") == "CN"  # the time zone wins
    assert region_hint(None, "Los Angeles, CA") == "US"
    assert region_hint("Not/AZone", "Tokyo-to") == "JP"
    assert region_hint(None, None) is None


# --------------------------------------------------------------------------- e-mails
@given(st.emails())
def test_email_case_and_space_invariance(email: str) -> None:
    n = normalise_email(email)
    assert n is not None
    assert normalise_email(email.upper()) == normalise_email(f"  {email.swapcase()} ") == n
    assert normalise_email(n) == n
    assert email_local(n) is not None and email_domain(n) is not None
    assert f"{email_local(n)}@{email_domain(n)}" == n


@given(st.text(max_size=30))
def test_email_idempotent(raw: str) -> None:
    once = normalise_email(raw)
    if once is not None:
        assert normalise_email(once) == once
        assert once == once.lower().strip()


@pytest.mark.parametrize("raw", [None, "", "a@", "@b.cn", "a b@c.cn", "a@@b.cn", "plain"])
def test_unusable_emails_are_none(raw: str | None) -> None:
    assert normalise_email(raw) is None


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    "raw",
    [
        "John Smith",
        "Smith, John",
        "JOHN SMITH",
        "john smith",
        "John A. Smith",
        "  Smith   John ",
        "Jöhn Smïth",
    ],
)
def test_name_variants_fold_alike(raw: str) -> None:
    assert fold_name(raw) == "john smith"


def test_joined_and_typo_names_share_letters() -> None:
    assert name_letters("GaoMin") == name_letters("Gao Min") == name_letters("MIN, gao")
    assert name_letters("Ma Fnag") == name_letters("Ma Fang")  # an adjacent swap
    assert fold_name("") is None and fold_name("  ,. ") is None and name_letters(None) is None


_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyzäöüéèñ", min_size=2, max_size=8)


@given(st.lists(_token, min_size=1, max_size=4), st.randoms(use_true_random=False))
def test_name_folding_invariance(tokens: list[str], rnd: random.Random) -> None:
    canonical = fold_name(" ".join(tokens))
    shuffled = tokens[:]
    rnd.shuffle(shuffled)
    variants = [
        " ".join(shuffled).upper(),
        ", ".join(shuffled).title(),
        " ".join(t.capitalize() for t in shuffled) + " Q.",  # an initial
        "  ".join(shuffled),
    ]
    for v in variants:
        assert fold_name(v) == canonical, v
    assert canonical is not None
    assert fold_name(canonical) == canonical


@given(st.text(max_size=30))
def test_name_idempotent(raw: str) -> None:
    once = fold_name(raw)
    if once is not None:
        assert fold_name(once) == once
        assert once == once.strip() and "  " not in once


# --------------------------------------------------------------------------- cities, VINs
@pytest.mark.parametrize(
    ("variants", "key"),
    [
        (("Shanghai", "shanghai", "SHANGHAI", "Shanghai Shi", "上海"), "shanghai"),
        (("Urumqi", "Ürümqi", "URUMQI", "乌鲁木齐"), "urumqi"),
        (("Hong Kong", "HongKong", "HK", "香港"), "hongkong"),
        (("Tokyo", "TOKYO", "Tokyo-to"), "tokyo"),
        (("Los Angeles", "LA", "Los Angeles, CA"), "losangeles"),
    ],
)
def test_city_variants(variants: tuple[str, ...], key: str) -> None:
    assert {normalise_city(v) for v in variants} == {key}


@given(st.text(max_size=25))
def test_city_idempotent(raw: str) -> None:
    once = normalise_city(raw)
    if once is not None:
        assert normalise_city(once) == once


def test_vin() -> None:
    assert normalise_vin("LMEVLBW5OSK226707") == "LMEVLBW50SK226707"  # O read as 0
    assert normalise_vin("lmevlbw50sk22670i") == "LMEVLBW50SK226701"  # I read as 1
    assert normalise_vin("LMEVLBW50SK22670") is None  # 16 characters
    assert normalise_vin(None) is None


@given(st.text(alphabet="0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcxyz -", max_size=25))
def test_vin_idempotent(raw: str) -> None:
    once = normalise_vin(raw)
    if once is not None:
        assert len(once) == 17 and normalise_vin(once) == once
        assert not set(once) & set("IOQ")
