"""Read the ``accounts`` table and normalise every identifier the linker compares.

Examples
--------
>>> [r["name"] for r in prepare_records([{"account_id": "b", "name": "Min Gao"},
...                                      {"account_id": "a", "name": "GAO, min"}])]
['gao min', 'gao min']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from autopersona.identity.keys import KEYS_TABLE, IdentifierKeys, clear_keys
from autopersona.identity.normalise import (
    fold_name,
    name_letters,
    name_tokens,
    normalise_city,
    normalise_email,
    normalise_phone,
    normalise_vin,
    region_hint,
)
from autopersona.store.warehouse import Warehouse

__all__ = [
    "PREPARED_COLUMNS",
    "PREPARED_SCHEMA",
    "prepare_accounts",
    "prepare_records",
    "prepared_table",
    "stored_keys",
]

#: Columns of the prepared records, in order (``unique_id`` is the account id).
PREPARED_COLUMNS = (
    "unique_id",
    "source",
    "created_at",
    "vin",
    "vin_near",
    "phone",
    "phone_head",
    "phone_tail",
    "phone_near",
    "email",
    "email_local",
    "email_near",
    "name",
    "name_letters",
    "name_tokens",
    "birth_year",
    "city",
    "district",
    "gender",
)
_TYPES = {
    "created_at": pa.timestamp("us", tz="UTC"),
    "name_tokens": pa.list_(pa.string()),
    "vin_near": pa.list_(pa.string()),
    "phone_near": pa.list_(pa.string()),
    "email_near": pa.list_(pa.string()),
    "birth_year": pa.int64(),
}
#: Arrow schema of the prepared records.
PREPARED_SCHEMA = pa.schema([pa.field(c, _TYPES.get(c, pa.string())) for c in PREPARED_COLUMNS])

_READ_SQL = """
SELECT account_id, source, created_at, vin, name, phone, email, birth_year, gender,
       city, district, timezone
FROM accounts
ORDER BY account_id
"""


def _clean_text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def _pseudonym(value: str | None) -> str | None:
    """The value when it is already a pseudonym (privacy.pseudo), which stays as it is."""
    from autopersona.privacy.pseudo import is_pseudonym

    return value if is_pseudonym(value) else None


_NO_KEYS = IdentifierKeys(None, None, ())


def _keys(
    kind: str, value: str | None, stored: Mapping[str, IdentifierKeys] | None
) -> IdentifierKeys:
    """Comparison keys of a normalised value, or the stored keyed ones of a pseudonym."""
    if value is None:
        return _NO_KEYS
    if _pseudonym(value):
        return (stored or {}).get(value, _NO_KEYS)
    return clear_keys(kind, value)


def _prepare_row(
    row: Mapping[str, Any], stored: Mapping[str, IdentifierKeys] | None = None
) -> dict[str, Any]:
    city_raw = _clean_text(row.get("city"))
    phone_raw = _clean_text(row.get("phone"))
    phone = _pseudonym(phone_raw) or normalise_phone(
        phone_raw, region_hint(_clean_text(row.get("timezone")), city_raw)
    )
    email_raw = _clean_text(row.get("email"))
    email = _pseudonym(email_raw) or normalise_email(email_raw)
    vin_raw = _clean_text(row.get("vin"))
    vin = _pseudonym(vin_raw) or normalise_vin(vin_raw)
    pk, ek, vk = (
        _keys("phone", phone, stored),
        _keys("email", email, stored),
        _keys("vin", vin, stored),
    )
    name_raw = _clean_text(row.get("name"))
    tokens = name_tokens(name_raw)
    gender = _clean_text(row.get("gender"))
    district = _clean_text(row.get("district"))
    by = row.get("birth_year")
    birth_year = int(by) if isinstance(by, int | float) and by == by else None
    return {
        "unique_id": str(row["account_id"]),
        "source": _clean_text(row.get("source")),
        "created_at": row.get("created_at"),
        "vin": vin,
        "vin_near": list(vk.near) or None,
        "phone": phone,
        # A single mistyped digit lies in one half of the number: block on each half.
        "phone_head": pk.head,
        "phone_tail": pk.tail,
        "phone_near": list(pk.near) or None,
        "email": email,
        "email_local": ek.head,
        "email_near": list(ek.near) or None,
        "name": fold_name(name_raw),
        "name_letters": name_letters(name_raw),
        "name_tokens": tokens or None,
        "birth_year": birth_year,
        "city": normalise_city(city_raw),
        "district": normalise_city(district),
        "gender": gender.upper() if gender else None,
    }


def prepare_records(
    accounts: Iterable[Mapping[str, Any]], keys: Mapping[str, IdentifierKeys] | None = None
) -> list[dict[str, Any]]:
    """Normalise rows shaped like the ``accounts`` table.

    Parameters
    ----------
    accounts
        Rows with at least ``account_id``; the other ``accounts`` columns are used when
        present (``timezone`` and ``city`` give the region in which to read phones
        written without a country code).
    keys
        Keyed comparison keys of pseudonymised identifiers (pseudonym → keys, from
        :data:`~autopersona.identity.keys.KEYS_TABLE`).  Clear identifiers get their keys
        in clear (:func:`~autopersona.identity.keys.clear_keys`); a pseudonym without
        stored keys is compared for equality only.

    Returns
    -------
    list of dict
        One record per account with the keys :data:`PREPARED_COLUMNS`; identifiers are
        normalised (``None`` where nothing usable is left); ordered by ``unique_id``.

    Examples
    --------
    >>> rec = prepare_records([{"account_id": "a", "phone": "138-0013-8000",
    ...                         "name": "GAO, Min", "city": "上海"}])[0]
    >>> rec["phone"], rec["name"], rec["city"], rec["email"]
    ('+8613800138000', 'gao min', 'shanghai', None)
    """
    return sorted((_prepare_row(r, keys) for r in accounts), key=lambda r: str(r["unique_id"]))


def prepared_table(records: list[dict[str, Any]]) -> pa.Table:
    """The prepared records as an Arrow table with a fixed schema (also when empty).

    Examples
    --------
    >>> prepared_table([]).num_rows, prepared_table([]).column_names[:2]
    (0, ['unique_id', 'source'])
    """
    return pa.Table.from_pylist(records, schema=PREPARED_SCHEMA)


def prepare_accounts(wh: Warehouse) -> list[dict[str, Any]]:
    """The warehouse's ``accounts`` normalised for linkage (see :func:`prepare_records`).

    Parameters
    ----------
    wh
        Warehouse holding the ``accounts`` table.

    Returns
    -------
    list of dict
        See :func:`prepare_records`; empty when there are no accounts.

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     prepare_accounts(wh)
    []
    """
    cur = wh.con.execute(_READ_SQL)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return prepare_records(rows, stored_keys(wh))


def stored_keys(wh: Warehouse) -> dict[str, IdentifierKeys]:
    """The keyed comparison keys stored at ingest, by pseudonym (empty when none).

    Examples
    --------
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     stored_keys(wh)
    {}
    """
    present = wh.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [KEYS_TABLE]
    ).fetchall()[0][0]
    if not present:
        return {}
    rows = wh.con.execute(
        f"SELECT coalesce(vin, phone, email), head, tail, near FROM {KEYS_TABLE}"
    ).fetchall()
    return {ps: IdentifierKeys(head, tail, tuple(near or ())) for ps, head, tail, near in rows}
