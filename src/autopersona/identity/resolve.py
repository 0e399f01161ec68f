"""Person ↔ vehicle resolution over the identity tables, for joins across entity keys.

Vehicle tags are keyed by VIN while feedback and commerce rows name a person (an identity
``person_id``, or an account id when linkage has not run).  :func:`person_vins` gives every
known ``(person_id, vin)`` pair from:

* ``persons`` (identity linkage: a person's VINs),
* ``accounts`` with ``identity_links`` (an account's VIN under its person id, and under the
  account id itself),
* ``strategy_decisions`` (the person and VIN a decision addressed),
* ``vehicles`` (a VIN stands for itself: decisions without a known person address the VIN).

Tables that do not exist yet are skipped.  :func:`to_vins` rewrites a frame's person column
to VINs (one row per linked VIN; rows of unknown persons are dropped) and
:func:`vin_person` picks one person per VIN (the linked person, else the VIN).

Examples
--------
>>> from autopersona.store.warehouse import Warehouse
>>> with Warehouse(":memory:") as wh:
...     _ = wh.con.execute("CREATE TABLE persons (person_id VARCHAR, vins VARCHAR[])")
...     _ = wh.con.execute("INSERT INTO persons VALUES ('PER-1', ['V1', 'V2']), ('PER-2', [])")
...     pairs = person_vins(wh)
...     ev = pd.DataFrame({"entity": ["PER-1", "PER-2", "nobody"], "time": [1, 2, 3]})
...     out = to_vins(wh, ev)
>>> sorted(map(tuple, pairs.to_numpy().tolist()))
[('PER-1', 'V1'), ('PER-1', 'V2')]
>>> out.to_dict("list")
{'entity': ['V1', 'V2'], 'time': [1, 1]}
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from autopersona.store.warehouse import Warehouse

__all__ = ["person_vins", "to_vins", "vin_person"]


def _tables(wh: Warehouse) -> set[str]:
    return {str(r[0]) for r in wh.sql("SELECT table_name FROM information_schema.tables")}


def _columns(wh: Warehouse, table: str) -> set[str]:
    return {
        str(r[0])
        for r in wh.sql(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        )
    }


def person_vins(wh: Warehouse) -> pd.DataFrame:
    """Every known ``(person_id, vin)`` pair (distinct, sorted); see the module doc."""
    tables = _tables(wh)
    parts: list[str] = []
    if "persons" in tables:
        parts.append("SELECT person_id, unnest(vins) AS vin FROM persons WHERE vins IS NOT NULL")
    if "accounts" in tables:
        parts.append("SELECT account_id AS person_id, vin FROM accounts")
        if "identity_links" in tables:
            parts.append(
                "SELECT l.person_id, a.vin FROM accounts a JOIN identity_links l USING (account_id)"
            )
    if "strategy_decisions" in tables and {"person_id", "vin"} <= _columns(
        wh, "strategy_decisions"
    ):
        parts.append("SELECT DISTINCT person_id, vin FROM strategy_decisions")
    if "vehicles" in tables:
        parts.append("SELECT vin AS person_id, vin FROM vehicles")
    if not parts:
        return pd.DataFrame({"person_id": pd.Series(dtype=object), "vin": pd.Series(dtype=object)})
    sql = " UNION ".join(f"({p})" for p in parts)
    return wh.frame(
        f"SELECT DISTINCT person_id, vin FROM ({sql}) "
        "WHERE person_id IS NOT NULL AND vin IS NOT NULL ORDER BY person_id, vin"
    )


def to_vins(wh: Warehouse, frame: pd.DataFrame, column: str = "entity") -> pd.DataFrame:
    """``frame`` with ``column`` (person ids) replaced by the persons' VINs.

    A person with several VINs gives one row per VIN; rows whose person has no known VIN are
    dropped.  The index is reset.
    """
    pairs = person_vins(wh)
    if frame.empty:
        return frame.reset_index(drop=True)
    m = frame.reset_index(drop=True).merge(
        pairs.rename(columns={"person_id": column, "vin": "_vin"}), on=column, how="inner"
    )
    m[column] = m.pop("_vin")
    return m[list(frame.columns)].reset_index(drop=True)


def vin_person(wh: Warehouse, vins: pd.Series) -> pd.Series:
    """One person id per VIN: the smallest linked identity person, else the VIN itself.

    Only ``persons`` (identity linkage) counts here, so the answer does not depend on what
    earlier decisions wrote.
    """
    out = vins.astype(str)
    if "persons" not in _tables(wh):
        return out.rename("person_id")
    pairs = wh.frame(
        "SELECT vin, min(person_id) AS person_id FROM "
        "(SELECT person_id, unnest(vins) AS vin FROM persons WHERE vins IS NOT NULL) GROUP BY vin"
    )
    linked = out.map(pairs.set_index("vin")["person_id"])
    return linked.fillna(out).rename("person_id")
