"""Pure normalisation of the identifiers that link accounts into persons.

Every function here takes a raw value as a source writes it and returns a canonical form
(or ``None`` when nothing usable is left). They are pure and idempotent: normalising a
normalised value returns it unchanged.

* phones → E.164 (``+8613800138000``) with :mod:`phonenumbers`; numbers written without a
  country code are read in a *region hint* taken from the account's time zone or city;
* e-mails → trimmed and lower-cased, ``mailto:`` and angle brackets removed;
* names → folded: accents and case removed, punctuation dropped, initials dropped, tokens
  sorted (so ``"SMITH, John A."`` and ``"john smith"`` fold alike);
* cities → a compact key (``"Shanghai Shi"``, ``"上海"`` → ``shanghai``);
* VINs → upper case, separators removed, the letters VINs never use (I, O, Q) read as the
  digits they are mistaken for.

Examples
--------
>>> normalise_phone("138-0013-8000", "CN")
'+8613800138000'
>>> normalise_email("  Gao.Min@126.COM ")
'gao.min@126.com'
>>> fold_name("SMITH, John A.")
'john smith'
>>> normalise_city("Shanghai Shi"), normalise_city("上海")
('shanghai', 'shanghai')
>>> normalise_vin("lmevlbw5osk226707")
'LMEVLBW50SK226707'
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import phonenumbers
import pytz

__all__ = [
    "DEFAULT_REGIONS",
    "email_domain",
    "email_local",
    "fold_name",
    "name_letters",
    "name_tokens",
    "normalise_city",
    "normalise_email",
    "normalise_phone",
    "normalise_vin",
    "region_hint",
]

#: Regions tried, in order, for a phone written without a country code and without a hint.
DEFAULT_REGIONS: tuple[str, ...] = ("CN", "HK", "JP", "DE", "US")

# Common alternative spellings of cities; keys and values are already folded (see
# ``_fold_text``) and compacted (no spaces).
_CITY_ALIASES: dict[str, str] = {
    "上海": "shanghai",
    "上海市": "shanghai",
    "北京": "beijing",
    "北京市": "beijing",
    "广州": "guangzhou",
    "深圳": "shenzhen",
    "杭州": "hangzhou",
    "南京": "nanjing",
    "成都": "chengdu",
    "重庆": "chongqing",
    "天津": "tianjin",
    "武汉": "wuhan",
    "西安": "xian",
    "苏州": "suzhou",
    "乌鲁木齐": "urumqi",
    "wulumuqi": "urumqi",
    "香港": "hongkong",
    "hk": "hongkong",
    "hksar": "hongkong",
    "东京": "tokyo",
    "東京": "tokyo",
    "東京都": "tokyo",
    "la": "losangeles",
    "nyc": "newyork",
    "sf": "sanfrancisco",
    "munchen": "munich",
    "koln": "cologne",
}
# Country of the cities above, for phone region hints.
_CITY_REGION: dict[str, str] = {
    "shanghai": "CN",
    "beijing": "CN",
    "guangzhou": "CN",
    "shenzhen": "CN",
    "hangzhou": "CN",
    "nanjing": "CN",
    "chengdu": "CN",
    "chongqing": "CN",
    "tianjin": "CN",
    "wuhan": "CN",
    "xian": "CN",
    "suzhou": "CN",
    "urumqi": "CN",
    "hongkong": "HK",
    "tokyo": "JP",
    "osaka": "JP",
    "berlin": "DE",
    "munich": "DE",
    "hamburg": "DE",
    "cologne": "DE",
    "losangeles": "US",
    "newyork": "US",
    "sanfrancisco": "US",
}
# Administrative suffixes dropped from the end of a city name ("Shanghai Shi", "Tokyo-to").
_CITY_SUFFIXES = frozenset({"shi", "city", "to", "fu", "ken", "sar", "municipality"})
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)
_VIN_MAP = str.maketrans({"I": "1", "O": "0", "Q": "0"})


def _fold_text(text: str) -> str:
    """Unicode-compatible, accent-free, case-folded text (CJK characters kept)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return unicodedata.normalize("NFC", stripped).casefold()


# --------------------------------------------------------------------------- phones
@lru_cache(maxsize=1)
def _tz_regions() -> dict[str, str]:
    out: dict[str, str] = {}
    for country, zones in pytz.country_timezones.items():
        for zone in zones:
            out.setdefault(zone, country.upper())
    return out


def region_hint(timezone: str | None = None, city: str | None = None) -> str | None:
    """The ISO region in which to read a phone number written without a country code.

    Parameters
    ----------
    timezone
        IANA time zone of the account (``Asia/Shanghai`` → ``CN``); tried first.
    city
        City as the source writes it; used when the time zone gives nothing.

    Returns
    -------
    str or None
        Two-letter region code, or ``None`` when neither tells.

    Examples
    --------
    >>> region_hint("Asia/Urumqi"), region_hint(None, "香港"), region_hint(None, "Atlantis")
    ('CN', 'HK', None)
    """
    if timezone:
        region = _tz_regions().get(timezone.strip())
        if region:
            return region
    if city:
        key = normalise_city(city)
        if key:
            return _CITY_REGION.get(key)
    return None


def _e164(number: phonenumbers.PhoneNumber) -> str:
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _parse(text: str, region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None


def normalise_phone(
    raw: str | None,
    region: str | None = None,
    *,
    fallback_regions: tuple[str, ...] = DEFAULT_REGIONS,
) -> str | None:
    """A phone number in E.164 form.

    Parameters
    ----------
    raw
        The number as written: ``+86 138 0013 8000``, ``13800138000``, ``138-0013-8000``,
        ``0086 13800138000``, ``(+86) 138 0013 8000`` …
    region
        Region in which to read a number without a country code (see :func:`region_hint`).
    fallback_regions
        Regions tried in order when there is no hint or the number cannot be one of
        ``region`` (wrong length); the first in which it is a valid number wins.

    Returns
    -------
    str or None
        ``+<country code><national number>``; ``None`` for an empty or unreadable value, or
        one that cannot be a phone number in any region tried.

    Notes
    -----
    A number with an explicit country code (``+`` or the ``00`` international prefix), or
    one read in the hinted ``region``, is kept if it is *possible* (right length) even if
    not *valid* (allocated range): number plans change faster than metadata, and a mistyped
    digit should still give a key one digit from the right one. Read in a fallback region
    it must be valid.

    Examples
    --------
    >>> normalise_phone("+86 138 0013 8000")
    '+8613800138000'
    >>> normalise_phone("0086 13800138000")
    '+8613800138000'
    >>> normalise_phone("9516-8666", "HK")
    '+85295168666'
    >>> normalise_phone("070-1234-5678", "JP")
    '+817012345678'
    >>> normalise_phone("n/a") is None
    True
    """
    if raw is None:
        return None
    text = raw.strip()
    if not any(c.isdigit() for c in text):
        return None
    compact = re.sub(r"[\s().\-/]", "", text)
    if compact.startswith("00") and not compact.startswith("000"):
        text = "+" + compact[2:]
    if text.lstrip("(").startswith("+"):
        number = _parse(text, None)
        if number is not None and phonenumbers.is_possible_number(number):
            return _e164(number)
        return None
    if region:
        number = _parse(text, region)
        if number is not None and phonenumbers.is_possible_number(number):
            return _e164(number)
    for reg in fallback_regions:
        number = _parse(text, reg)
        if number is not None and phonenumbers.is_valid_number(number):
            return _e164(number)
    return None


# --------------------------------------------------------------------------- e-mails
def normalise_email(raw: str | None) -> str | None:
    """An e-mail address trimmed and lower-cased.

    Parameters
    ----------
    raw
        Address as written (``" Gao.Min@126.COM"``, ``"<a@b.cn>"``, ``"mailto:a@b.cn"``).

    Returns
    -------
    str or None
        ``local@domain`` in lower case; ``None`` unless there is exactly one ``@`` with
        something on both sides and no white space inside.

    Examples
    --------
    >>> normalise_email("MAILTO:<Rli@163.com>")
    'rli@163.com'
    >>> normalise_email("not an address") is None
    True
    """
    if raw is None:
        return None
    text = unicodedata.normalize("NFKC", raw).strip().strip("<>").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:].strip().strip("<>").strip()
    text = text.rstrip(".").lower()
    if text.count("@") != 1 or any(c.isspace() for c in text):
        return None
    local, domain = text.split("@")
    if not local or not domain:
        return None
    return text


def email_local(email: str | None) -> str | None:
    """The local part (before ``@``) of a normalised address.

    Examples
    --------
    >>> email_local("gao.min@126.com")
    'gao.min'
    """
    return email.split("@", 1)[0] if email and "@" in email else None


def email_domain(email: str | None) -> str | None:
    """The domain (after ``@``) of a normalised address.

    Examples
    --------
    >>> email_domain("gao.min@126.com")
    '126.com'
    """
    return email.split("@", 1)[1] if email and "@" in email else None


# --------------------------------------------------------------------------- names
def name_tokens(raw: str | None) -> list[str]:
    """Folded name tokens, sorted, with initials dropped.

    Accents and case are removed, punctuation splits tokens, single-letter tokens
    (initials such as the ``A.`` in ``John A. Smith``) are dropped unless nothing else is
    left, and the tokens are sorted so that the order family/given does not matter.

    Examples
    --------
    >>> name_tokens("Müller, Anna B.")
    ['anna', 'muller']
    >>> name_tokens("  ")
    []
    """
    if raw is None:
        return []
    tokens = [t for t in _NON_WORD.split(_fold_text(raw)) if t]
    long_tokens = [t for t in tokens if len(t) > 1]
    return sorted(long_tokens or tokens)


def fold_name(raw: str | None) -> str | None:
    """A name folded for comparison: :func:`name_tokens` joined by single spaces.

    Parameters
    ----------
    raw
        The name as a source spells it.

    Returns
    -------
    str or None
        Folded name, ``None`` when nothing is left.

    Examples
    --------
    >>> fold_name("GAO Min"), fold_name("Min Gao"), fold_name("gao, min")
    ('gao min', 'gao min', 'gao min')
    >>> fold_name("Zoë  O'Neil")
    'neil zoe'
    """
    tokens = name_tokens(raw)
    return " ".join(tokens) if tokens else None


def name_letters(raw: str | None) -> str | None:
    """The letters of the folded name, sorted: an order- and spacing-free name key.

    ``"GaoMin"`` (joined) and ``"Min Gao"`` (swapped) give the same key; a dropped or
    doubled letter changes it by one edit and a swap of adjacent letters not at all.

    Examples
    --------
    >>> name_letters("GaoMin") == name_letters("Min Gao") == name_letters("Gao Mni")
    True
    """
    folded = fold_name(raw)
    if folded is None:
        return None
    return "".join(sorted(folded.replace(" ", "")))


# --------------------------------------------------------------------------- places
def normalise_city(raw: str | None) -> str | None:
    """A compact city key: folded, administrative suffixes and state codes dropped.

    Examples
    --------
    >>> [normalise_city(c) for c in ("Ürümqi", "Tokyo-to", "Los Angeles, CA", "HK")]
    ['urumqi', 'tokyo', 'losangeles', 'hongkong']
    >>> normalise_city(" ") is None
    True
    """
    if raw is None:
        return None
    text = _fold_text(raw).split(",", 1)[0]
    tokens = [t for t in _NON_WORD.split(text) if t]
    if len(tokens) > 1 and tokens[-1] in _CITY_SUFFIXES:
        tokens = tokens[:-1]
    key = "".join(tokens)
    if not key:
        return None
    return _CITY_ALIASES.get(key, key)


def normalise_vin(raw: str | None) -> str | None:
    """A VIN in upper case without separators; I, O and Q (never used in VINs) read as 1, 0, 0.

    Returns ``None`` unless 17 characters are left.

    Examples
    --------
    >>> normalise_vin(" lzyp-800c1-lw100003 ")
    'LZYP800C1LW100003'
    >>> normalise_vin("12345") is None
    True
    """
    if raw is None:
        return None
    text = re.sub(r"[^0-9A-Za-z]", "", raw).upper().translate(_VIN_MAP)
    return text if len(text) == 17 else None
