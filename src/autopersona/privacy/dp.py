r"""Differentially private aggregate reports with OpenDP, and a privacy budget per dataset.

Every aggregate that leaves the platform as a report — a tag's distribution, the sizes of
segments, the steps of a funnel — can be released with ε-differential privacy: OpenDP adds
noise calibrated to how much one person can change the counts (the L1 *sensitivity*), and the
release is charged against the dataset's budget in the ledger table ``privacy_budget_ledger``
(dataset, report, epsilon, mechanism, released_at).

Accounting is *sequential composition*: the ε of every release from one dataset add up, and a
release that would take the sum past the dataset's budget is refused with
:class:`BudgetExceeded` before any noise is drawn (nothing is released, nothing is charged).  The budget is charged before the release: a release that then fails wastes its ε
rather than leaking without being counted.

Mechanism
---------
Counts are integers, so OpenDP's ``make_laplace`` samples the **discrete Laplace**
distribution (the geometric mechanism): ``P(noise = k) ∝ exp(-|k| / scale)``, with
``scale = sensitivity / ε``; its variance is ``2 e^{-1/s} / (1 - e^{-1/s})^2`` (≈ ``2 s²``
for large ``s``, the continuous Laplace figure).  Noise comes from OpenDP's own
cryptographically secure sampler; it cannot be seeded, which is deliberate.  Noisy counts
are released as drawn (they can be negative): clamping at zero is post-processing a reader may
do, but it would bias sums.

Neighbouring datasets differ by one *person* added or removed (OpenDP's symmetric distance
on one-row-per-person data).  The reports enforce that bound: a tag distribution counts each
entity's one current value; segment sizes and funnels count each person at most once per
cell, so one person moves at most ``len(cells)`` counts by one (sensitivity ``len(cells)``).
Categories come from the catalogue, never from the data (releasing the set of values seen
would itself leak).

OpenDP features
---------------
OpenDP ships its measurements behind feature flags.  This module enables ``contrib``, the
flag for OpenDP's library of vetted-but-not-externally-audited constructors
(``make_count_by_categories``, ``make_laplace``): every mechanism used here is in it and has
a proof document in OpenDP.  It does **not** enable ``floating-point`` or ``honest-but-curious``
(needed only for float data or user-defined functions), so the releases rely only on integer
arithmetic.

Examples
--------
>>> import duckdb
>>> con = duckdb.connect()
>>> ledger = BudgetLedger(con, default_budget=1.0)
>>> rel = dp_histogram(["a", "b", "a"], ["a", "b"], epsilon=0.5, ledger=ledger,
...                    dataset="demo", report="doc")
>>> sorted(rel.counts), rel.scale, ledger.remaining("demo")
(['a', 'b'], 2.0, 0.5)
>>> dp_histogram(["a"], ["a"], epsilon=0.75, ledger=ledger, dataset="demo", report="doc")
Traceback (most recent call last):
...
autopersona.privacy.dp.BudgetExceeded: dataset 'demo': releasing 'doc' needs epsilon 0.75 but only 0.5 of 1 is left (spent 0.5 in 1 release)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from autopersona.store.sqlbase import transaction

if TYPE_CHECKING:
    from autopersona.store.profiles import ProfileStore
    from autopersona.store.warehouse import Warehouse

__all__ = [
    "BUDGETS_TABLE",
    "LEDGER_TABLE",
    "BudgetExceeded",
    "BudgetLedger",
    "DPRelease",
    "discrete_laplace_variance",
    "dp_counts",
    "dp_histogram",
    "funnel_report",
    "segment_size_report",
    "tag_distribution_report",
]

LEDGER_TABLE = "privacy_budget_ledger"
BUDGETS_TABLE = "privacy_budgets"
#: Funnel steps in their order (the ``marketing_feedback.event_type`` values).
FUNNEL_STEPS = (
    "assigned",
    "sent",
    "delivered",
    "exposed",
    "visited",
    "clicked",
    "voice_reply",
    "converted",
    "redeemed",
    "referral",
)
_TOL = 1e-9


class BudgetExceeded(RuntimeError):
    """A release would take a dataset past its privacy budget; nothing was released."""


def _dp() -> Any:
    import opendp.prelude as dp

    # "contrib": OpenDP's constructors that have proofs but no external audit yet; all we use.
    dp.enable_features("contrib")
    return dp


def discrete_laplace_variance(scale: float) -> float:
    """Variance of the discrete Laplace distribution OpenDP samples for integer counts.

    >>> round(discrete_laplace_variance(10.0), 3), 2 * 10.0**2
    (199.833, 200.0)
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    q = math.exp(-1.0 / scale)
    return 2.0 * q / (1.0 - q) ** 2


# ============================================================================ ledger
class BudgetLedger:
    """Privacy budgets per dataset and the ledger of what has been spent, in DuckDB.

    Parameters
    ----------
    con
        A DuckDB connection (usually the warehouse's, so the ledger lives with the data).
    default_budget
        Total ε of a dataset that has no budget of its own (default: ``settings.dp_budget``).
    """

    def __init__(self, con: Any, default_budget: float | None = None) -> None:
        if default_budget is None:
            from autopersona.settings import get_settings

            default_budget = get_settings().dp_budget
        if not default_budget > 0:
            raise ValueError(f"a privacy budget must be positive, got {default_budget}")
        self.con = con
        self.default_budget = float(default_budget)
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {LEDGER_TABLE} (
                dataset VARCHAR NOT NULL,
                report VARCHAR NOT NULL,
                epsilon DOUBLE NOT NULL,
                mechanism VARCHAR NOT NULL,
                released_at TIMESTAMPTZ NOT NULL
            )"""
        )
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {BUDGETS_TABLE} (
                dataset VARCHAR PRIMARY KEY,
                epsilon DOUBLE NOT NULL,
                set_at TIMESTAMPTZ NOT NULL
            )"""
        )

    def set_budget(self, dataset: str, epsilon: float) -> None:
        """Give ``dataset`` a total budget of ``epsilon`` (it may not go below what is spent)."""
        if not epsilon > 0:
            raise ValueError(f"a privacy budget must be positive, got {epsilon}")
        spent = self.spent(dataset)
        if epsilon + _TOL < spent:
            raise BudgetExceeded(
                f"dataset {dataset!r}: {spent:g} already spent, a budget of {epsilon:g} is too low"
            )
        self.con.execute(
            f"INSERT OR REPLACE INTO {BUDGETS_TABLE} VALUES (?, ?, ?)",
            [dataset, float(epsilon), datetime.now(UTC)],
        )

    def budget(self, dataset: str) -> float:
        """The dataset's total ε."""
        row = self.con.execute(
            f"SELECT epsilon FROM {BUDGETS_TABLE} WHERE dataset = ?", [dataset]
        ).fetchall()
        return float(row[0][0]) if row else self.default_budget

    def spent(self, dataset: str) -> float:
        """ε spent on ``dataset`` so far (sequential composition: the sum)."""
        row = self.con.execute(
            f"SELECT coalesce(sum(epsilon), 0) FROM {LEDGER_TABLE} WHERE dataset = ?", [dataset]
        ).fetchall()
        return float(row[0][0]) if row else 0.0

    def remaining(self, dataset: str) -> float:
        """ε still available."""
        return max(0.0, self.budget(dataset) - self.spent(dataset))

    def entries(self, dataset: str | None = None) -> pd.DataFrame:
        """The ledger rows (of one dataset or all), oldest first."""
        sql = f"SELECT * FROM {LEDGER_TABLE}"
        params: list[Any] = []
        if dataset is not None:
            sql += " WHERE dataset = ?"
            params.append(dataset)
        cur = self.con.execute(sql + " ORDER BY released_at", params)
        names = [d[0] for d in cur.description or []]
        return pd.DataFrame(cur.fetchall(), columns=names)

    def datasets(self) -> list[str]:
        """Datasets with a budget or a release."""
        rows = self.con.execute(
            f"SELECT dataset FROM {BUDGETS_TABLE} UNION SELECT dataset FROM {LEDGER_TABLE} "
            "ORDER BY 1"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def charge(self, dataset: str, report: str, epsilon: float, mechanism: str) -> None:
        """Record a release of ``epsilon``, or raise :class:`BudgetExceeded` (recording nothing).

        Check and insert run in one transaction, so two releases cannot both take the last ε.
        """
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise ValueError(f"epsilon must be a positive number, got {epsilon}")
        with transaction(self.con):
            budget, spent = self.budget(dataset), self.spent(dataset)
            if spent + epsilon > budget + _TOL:
                n = int(
                    self.con.execute(
                        f"SELECT count(*) FROM {LEDGER_TABLE} WHERE dataset = ?", [dataset]
                    ).fetchall()[0][0]
                )
                raise BudgetExceeded(
                    f"dataset {dataset!r}: releasing {report!r} needs epsilon {epsilon:g} but "
                    f"only {max(0.0, budget - spent):g} of {budget:g} is left "
                    f"(spent {spent:g} in {n} release{'s' if n != 1 else ''})"
                )
            self.con.execute(
                f"INSERT INTO {LEDGER_TABLE} VALUES (?, ?, ?, ?, ?)",
                [dataset, report, float(epsilon), mechanism, datetime.now(UTC)],
            )


# ============================================================================ releases
@dataclass
class DPRelease:
    """One differentially private release: noisy counts and how they were made.

    ``counts`` maps each category (or cell) to its noisy count; ``scale`` is the discrete
    Laplace scale (``sensitivity / epsilon``), ``std`` the noise's standard deviation.
    """

    report: str
    dataset: str
    epsilon: float
    sensitivity: int
    scale: float
    counts: dict[str, int]
    mechanism: str = "discrete_laplace"
    notes: list[str] = field(default_factory=list)

    @property
    def std(self) -> float:
        """Standard deviation of the noise on each count."""
        return math.sqrt(discrete_laplace_variance(self.scale))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {
            "report": self.report,
            "dataset": self.dataset,
            "epsilon": self.epsilon,
            "sensitivity": self.sensitivity,
            "mechanism": self.mechanism,
            "scale": self.scale,
            "noise_std": self.std,
            "counts": self.counts,
            "notes": self.notes,
        }


def _check_epsilon(epsilon: float) -> float:
    eps = float(epsilon)
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"epsilon must be a positive number, got {epsilon!r}")
    return eps


def _charge(ledger: BudgetLedger | None, dataset: str, report: str, eps: float) -> None:
    if ledger is not None:
        ledger.charge(dataset, report, eps, "discrete_laplace")


def _verify(meas: Any, d_in: int, eps: float) -> None:
    used = float(meas.map(d_in))
    if used > eps * (1 + 1e-9):
        raise RuntimeError(f"OpenDP's privacy map gives epsilon {used} > declared {eps}")


def dp_histogram(
    values: Sequence[str],
    categories: Sequence[str],
    epsilon: float,
    *,
    ledger: BudgetLedger | None = None,
    dataset: str = "default",
    report: str = "histogram",
    other: str | None = None,
) -> DPRelease:
    """Noisy count of each category among ``values`` (one value per person).

    One person adds or removes one value, so the L1 sensitivity is 1 and the noise scale
    ``1 / epsilon``.  Values outside ``categories`` are counted in ``other`` when it is
    given (otherwise they are counted and not released).

    Raises
    ------
    BudgetExceeded
        If ``ledger`` has less than ``epsilon`` left for ``dataset``.
    """
    eps = _check_epsilon(epsilon)
    cats = [str(c) for c in categories]
    if not cats or len(set(cats)) != len(cats):
        raise ValueError("categories must be a non-empty list without repeats")
    _charge(ledger, dataset, report, eps)
    dp = _dp()
    space = dp.vector_domain(dp.atom_domain(T=str)), dp.symmetric_distance()
    scale = 1.0 / eps
    meas = (
        space
        >> dp.t.then_count_by_categories(categories=cats, MO=dp.L1Distance[int])
        >> dp.m.then_laplace(scale=scale)
    )
    _verify(meas, 1, eps)
    noisy = meas([str(v) for v in values])
    counts = {c: int(n) for c, n in zip(cats, noisy[: len(cats)], strict=True)}
    if other is not None:
        counts[other] = int(noisy[len(cats)])
    return DPRelease(report, dataset, eps, 1, scale, counts)


def dp_counts(
    counts: Mapping[str, int],
    sensitivity: int,
    epsilon: float,
    *,
    ledger: BudgetLedger | None = None,
    dataset: str = "default",
    report: str = "counts",
) -> DPRelease:
    """Noisy version of several counts one person changes by at most ``sensitivity`` in total.

    The caller states the L1 sensitivity: e.g. ``len(counts)`` when each person is counted at
    most once in each cell.  Noise scale is ``sensitivity / epsilon`` on every cell.

    >>> rel = dp_counts({"sent": 40, "clicked": 9}, sensitivity=2, epsilon=1.0)
    >>> rel.scale, sorted(rel.counts)
    (2.0, ['clicked', 'sent'])
    """
    eps = _check_epsilon(epsilon)
    if sensitivity < 1:
        raise ValueError("sensitivity must be at least 1")
    if not counts:
        raise ValueError("nothing to release: no counts")
    _charge(ledger, dataset, report, eps)
    dp = _dp()
    scale = sensitivity / eps
    space = dp.vector_domain(dp.atom_domain(T=int)), dp.l1_distance(T=int)
    meas = space >> dp.m.then_laplace(scale=scale)
    _verify(meas, int(sensitivity), eps)
    keys = list(counts)
    noisy = meas([int(counts[k]) for k in keys])
    return DPRelease(
        report, dataset, eps, int(sensitivity), scale, dict(zip(keys, map(int, noisy), strict=True))
    )


# ============================================================================ reports
def _current(store: ProfileStore, tag_ids: Sequence[str]) -> pd.DataFrame:
    marks = ", ".join("?" for _ in tag_ids)
    return store._query(
        store._sql(
            "SELECT entity, tag_id, value FROM {s}.tag_assignments "
            f"WHERE valid_to IS NULL AND tag_id IN ({marks})"
        ),
        list(tag_ids),
    )


def tag_distribution_report(
    store: ProfileStore,
    tag_id: str,
    epsilon: float,
    ledger: BudgetLedger,
    *,
    dataset: str = "profiles",
    allowed_entities: set[str] | None = None,
    categories: Sequence[str] | None = None,
) -> DPRelease:
    """DP distribution of a tag's current values over its catalogue values (plus ``other``).

    ``allowed_entities`` restricts the count (e.g. to people consented for analytics);
    ``categories`` replaces the catalogue's values (then the catalogue is not read).

    Raises
    ------
    KeyError
        For a tag not in the catalogue.
    ValueError
        For a tag with open values (numbers, regions): no fixed categories to count.
    """
    values: Sequence[str] | None = categories
    if values is None:
        from autopersona.tags.spec import load_catalogue

        cat = load_catalogue()
        if tag_id not in cat.tags:
            raise KeyError(f"unknown tag {tag_id!r}")
        values = cat.tags[tag_id].values
    if not values:
        raise ValueError(
            f"tag {tag_id!r} has open values; a DP distribution needs the catalogue's categories"
        )
    cur = _current(store, [tag_id])
    if allowed_entities is not None:
        cur = cur[cur["entity"].isin(allowed_entities)]
    rel = dp_histogram(
        [str(v) for v in cur["value"]],
        values,
        epsilon,
        ledger=ledger,
        dataset=dataset,
        report=f"tag_distribution:{tag_id}",
        other="(other)",
    )
    return rel


def segment_size_report(
    store: ProfileStore,
    segments: Mapping[str, Mapping[str, str]],
    epsilon: float,
    ledger: BudgetLedger,
    *,
    dataset: str = "profiles",
) -> DPRelease:
    """DP sizes of segments, each ``{tag_id: value, ...}`` (all must hold, current values).

    A person may be in every segment, so the sensitivity is the number of segments.
    """
    if not segments:
        raise ValueError("no segments given")
    tags = sorted({t for cond in segments.values() for t in cond})
    cur = _current(store, tags)
    wide = cur.pivot_table(index="entity", columns="tag_id", values="value", aggfunc="first")
    sizes: dict[str, int] = {}
    for name, cond in segments.items():
        mask = pd.Series(True, index=wide.index)
        for t, v in cond.items():
            col = wide[t] if t in wide else pd.Series(None, index=wide.index, dtype=object)
            mask &= col == v
        sizes[name] = int(mask.sum())
    return dp_counts(
        sizes, len(sizes), epsilon, ledger=ledger, dataset=dataset, report="segment_sizes"
    )


def funnel_report(
    wh: Warehouse,
    epsilon: float,
    ledger: BudgetLedger,
    *,
    campaign: str | None = None,
    dataset: str = "feedback",
) -> DPRelease:
    """DP funnel: distinct people reaching each step (``marketing_feedback``).

    Each person counts at most once per step, so the sensitivity is the number of steps.
    """
    sql = "SELECT event_type, count(DISTINCT person_id) FROM marketing_feedback"
    params: list[Any] = []
    if campaign is not None:
        sql += " WHERE campaign_id = ?"
        params.append(campaign)
    seen = {str(k): int(n) for k, n in wh.sql(sql + " GROUP BY 1", params)}
    counts = {s: seen.get(s, 0) for s in FUNNEL_STEPS}
    report = "funnel" + (f":{campaign}" if campaign else "")
    return dp_counts(counts, len(counts), epsilon, ledger=ledger, dataset=dataset, report=report)
