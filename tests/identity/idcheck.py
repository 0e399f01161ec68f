"""Helpers of the identity tests: the simulated fleet, truth scoring, link look-ups.

Only these tests read the simulator's truth (``truth/identity.parquet``); the linker never
does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from autopersona.identity import LinkReport
from autopersona.store.warehouse import Warehouse

#: 200 persons (one per vehicle), about 680 accounts.
FLEET = {"vehicles": 200, "days": 1, "seed": 2024}


@dataclass(frozen=True)
class Fleet:
    """A simulator output folder."""

    out: Path

    @property
    def accounts(self) -> Path:
        return self.out / "tables" / "accounts.parquet"

    @property
    def vehicles(self) -> Path:
        return self.out / "tables" / "vehicles.parquet"

    def truth(self) -> dict[str, str]:
        """account_id → true person_id (scoring only)."""
        t = pq.read_table(
            self.out / "truth" / "identity.parquet", columns=["account_id", "person_id"]
        )
        return dict(
            zip(t.column("account_id").to_pylist(), t.column("person_id").to_pylist(), strict=True)
        )


@dataclass(frozen=True)
class Linked:
    """A warehouse file on which the full linkage ran once, and its report."""

    path: Path
    report: LinkReport


def same_person_pairs(groups: Iterable[Iterable[str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for g in groups:
        out.update(itertools.combinations(sorted(g), 2))
    return out


def links(wh: Warehouse) -> dict[str, str]:
    """account_id → person_id as written by the linker."""
    return dict(wh.con.execute("SELECT account_id, person_id FROM identity_links").fetchall())


def pairwise_scores(predicted: dict[str, str], truth: dict[str, str]) -> tuple[float, float]:
    """Pairwise precision and recall of ``predicted`` persons against ``truth``.

    A pair is two accounts of one person; precision is the share of predicted pairs that are
    true pairs, recall the share of true pairs (among the accounts in ``predicted``) found.
    """

    def groups(m: dict[str, str]) -> list[list[str]]:
        g: dict[str, list[str]] = {}
        for a, p in m.items():
            g.setdefault(p, []).append(a)
        return list(g.values())

    pred = same_person_pairs(groups(predicted))
    true = same_person_pairs(groups({a: truth[a] for a in predicted}))
    tp = len(pred & true)
    precision = tp / len(pred) if pred else 1.0
    recall = tp / len(true) if true else 1.0
    return precision, recall
