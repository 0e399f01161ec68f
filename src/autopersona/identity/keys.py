r"""Comparison keys of identifiers: what linkage compares besides equality, clear or keyed.

Linkage compares a phone, e-mail or VIN in three ways: equal; sharing a *part* (a phone's
head or tail half, on which candidate pairs are blocked, or an e-mail's local part); or
*one edit apart* (a mistyped digit, a swapped or dropped letter).  Keyed-HMAC pseudonyms
(:mod:`autopersona.privacy.pseudo`) keep only equality, so pseudonymisation at ingest would
cost linkage every near miss.  The keys here keep the other two relations without keeping
the value:

``head`` / ``tail``
    Phone: the number without its last four digits, and those four digits.  E-mail: the
    local part (``head``).  VIN: none.
``near``
    The value's *deletion neighbourhood*: the value itself and every string left by deleting
    one character.  Two values share an entry exactly when one is the other with one
    character inserted or deleted, or one character replaced (the same position deleted
    from both), or two neighbours swapped — the typos of hand-typed identifiers.  Sharing an
    entry is the "one edit apart" level of the linkage model
    (:mod:`autopersona.identity.probabilistic`).

:func:`clear_keys` gives the parts as they are; :func:`keyed_keys` gives each part as a
keyed HMAC (64 bits in letters, with the part's kind and role in the message, so a phone head never
equals an e-mail token).  HMAC is injective for practical purposes, so two identifiers
share a keyed part exactly when they share the clear part: linkage on keyed keys decides
every pair as linkage in clear does.  Without the key, an entry cannot be recomputed from a
guessed value; each entry is a near-complete identifier (all but one character), so there
is no small alphabet of frequent parts (as with the q-gram Bloom filters of classic
privacy-preserving linkage) for a frequency attack to work on.

Ingestion computes the keyed keys while the clear value is at hand and stores them in
:data:`KEYS_TABLE`, one row per pseudonym (its kind's column — ``vin``, ``phone`` or
``email`` — holds the pseudonym, so erasure and retention find it like any identifier).

Examples
--------
>>> k = clear_keys("phone", "+8613800138000")
>>> k.head, k.tail
('+861380013', '8000')
>>> set(k.near) & set(clear_keys("phone", "+8613800188000").near)  # one digit apart
{'+861380018000'}
>>> kk = keyed_keys("email", "gao.min@126.com", b"k" * 32)
>>> len(kk.head), kk.head.isalpha(), len(kk.near) == len(clear_keys("email", "gao.min@126.com").near)
(14, True, True)
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

__all__ = [
    "KEYS_DDL",
    "KEYS_TABLE",
    "IdentifierKeys",
    "clear_keys",
    "deletion_neighbourhood",
    "keyed_keys",
]

KEYS_TABLE = "identifier_keys"
#: One row per identifier: the pseudonym in its kind's column, the keyed parts.
KEYS_DDL = f"""CREATE TABLE IF NOT EXISTS {KEYS_TABLE} (
    kind VARCHAR NOT NULL,
    vin VARCHAR,
    phone VARCHAR,
    email VARCHAR,
    head VARCHAR,
    tail VARCHAR,
    near VARCHAR[]
)"""
_TOKEN_LETTERS = 14  # 26^14 > 2^64: a 64-bit token in lowercase letters


@dataclass(frozen=True)
class IdentifierKeys:
    """The comparison parts of one normalised identifier (see the module docstring)."""

    head: str | None
    tail: str | None
    near: tuple[str, ...]


def deletion_neighbourhood(value: str) -> tuple[str, ...]:
    """The value and every string left by deleting one of its characters (sorted, unique).

    Examples
    --------
    >>> deletion_neighbourhood("abc")
    ('ab', 'abc', 'ac', 'bc')
    >>> sorted(set(deletion_neighbourhood("gmail")) & set(deletion_neighbourhood("gmial")))
    ['gmal', 'gmil']
    """
    out = {value}
    out.update(value[:i] + value[i + 1 :] for i in range(len(value)))
    return tuple(sorted(out))


def clear_keys(kind: str, value: str) -> IdentifierKeys:
    """The comparison parts of a *normalised* VIN, phone (E.164) or e-mail.

    Examples
    --------
    >>> clear_keys("email", "gao.min@126.com").head
    'gao.min'
    >>> clear_keys("vin", "LSVAA4182E2123456").head is None
    True
    """
    if kind == "phone":
        return IdentifierKeys(value[:-4], value[-4:], deletion_neighbourhood(value))
    if kind == "email":
        local = value.split("@", 1)[0] if "@" in value else None
        return IdentifierKeys(local or None, None, deletion_neighbourhood(value))
    if kind == "vin":
        return IdentifierKeys(None, None, deletion_neighbourhood(value))
    raise ValueError(f"unknown identifier kind {kind!r}; expected vin, phone or email")


def keyed_keys(kind: str, value: str, key: bytes) -> IdentifierKeys:
    """:func:`clear_keys` with every part replaced by a keyed HMAC-SHA256.

    Each part becomes the first 64 bits of its HMAC written as 14 lowercase letters:
    letters only, so no stored token can look like a phone number, VIN or e-mail address
    to a scan for clear identifiers (:func:`autopersona.privacy.pseudo.scan_raw_identifiers`).
    A chance collision between two of a million identifiers has probability ~3e-8.

    Examples
    --------
    >>> a = keyed_keys("phone", "+8613800138000", b"k" * 32)
    >>> b = keyed_keys("phone", "+8613800188000", b"k" * 32)
    >>> len(set(a.near) & set(b.near)), a.tail == b.tail, a.head == b.head
    (1, True, False)
    """
    clear = clear_keys(kind, value)

    def mac(role: str, part: str | None) -> str | None:
        if part is None:
            return None
        msg = f"{kind}.{role}|{part}".encode()
        n = int.from_bytes(hmac.new(key, msg, hashlib.sha256).digest()[:8], "big")
        out = []
        for _ in range(_TOKEN_LETTERS):
            n, r = divmod(n, 26)
            out.append(chr(97 + r))
        return "".join(out)

    near = tuple(sorted(m for p in clear.near if (m := mac("near", p)) is not None))
    return IdentifierKeys(mac("head", clear.head), mac("tail", clear.tail), near)
