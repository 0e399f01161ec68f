"""Analysis of an experiment table: every arm against the control, for several outcomes.

One row per unit (customer, person, vehicle), an arm column and outcome columns.  An
outcome whose values are all 0/1 (or booleans) is a **rate** (difference in proportions,
Wald or Newcombe interval, probability to beat); any other numeric outcome is a **mean**
(Welch's t).  ``name:rate`` or ``name:mean`` forces the kind.  With a pre-period
``covariate`` every outcome is also reported CUPED-adjusted (Welch's t on the adjusted
values; ``theta`` pooled over all arms).  The p-values of all arm x outcome comparisons are
corrected together (Holm by default).  The arm sizes are checked against the planned split
(equal unless given) for a sample-ratio mismatch.

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"arm": ["a", "b"] * 50, "y": [0, 1, 0, 0] * 25})
>>> r = analyze(df, arm="arm", control="a", outcomes=["y"])
>>> [(a["arm"], a["n"]) for a in r["arms"]]
[('a', 50), ('b', 50)]
>>> c = r["outcomes"][0]["comparisons"][0]
>>> c["arm"], c["diff"]
('b', 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from autopersona.evaluation import experiment as ex
from autopersona.models._input import InputError, parse_numbers, read_table

__all__ = ["AnalysisError", "analyze", "analyze_file", "parse_outcomes", "sequential"]

KINDS = ("rate", "mean")


class AnalysisError(InputError):
    """The data cannot be analysed as asked; the message names the file and column."""


def parse_outcomes(spec: str | Sequence[str]) -> list[tuple[str, str | None]]:
    """``"visit,spend:mean"`` -> ``[("visit", None), ("spend", "mean")]``.

    >>> parse_outcomes("visit, spend:mean")
    [('visit', None), ('spend', 'mean')]
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    out: list[tuple[str, str | None]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        name, _, kind = item.partition(":")
        if kind and kind not in KINDS:
            raise AnalysisError(f"outcome {item!r}: kind must be rate or mean, not {kind!r}")
        out.append((name.strip(), kind or None))
    if not out:
        raise AnalysisError("no outcome column given")
    return out


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _kind(values: pd.Series, forced: str | None, source: str, column: str) -> str:
    binary = bool(values.isin([0.0, 1.0]).all())
    if forced == "rate" and not binary:
        bad = values[~values.isin([0.0, 1.0])]
        i = int(np.flatnonzero(~values.isin([0.0, 1.0]).to_numpy())[0])
        raise AnalysisError(
            f"{source}: column {column!r} is not binary (0/1) but was asked as a rate: "
            f"{bad.iloc[0]!r} (row {i + 1})"
        )
    return forced or ("rate" if binary else "mean")


def _comparison_rate(
    y: pd.Series, groups: pd.Series, arm: str, control: str, alpha: float, ci: ex.PropMethod
) -> dict[str, Any]:
    t, c = y[groups == arm], y[groups == control]
    r = ex.diff_proportions(int(t.sum()), t.size, int(c.sum()), c.size, alpha, ci)
    return {
        "arm": arm,
        "diff": r.diff,
        "relative": _finite(r.relative),
        "se": r.se,
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "p_value": r.p_value,
        "method": r.method,
        "prob_to_beat": ex.prob_to_beat(int(t.sum()), t.size, int(c.sum()), c.size),
    }


def _comparison_mean(
    y: pd.Series | np.ndarray[Any, Any],
    groups: pd.Series,
    arm: str,
    control: str,
    alpha: float,
) -> dict[str, Any]:
    yy = np.asarray(y, dtype=float)
    mask_t = (groups == arm).to_numpy()
    mask_c = (groups == control).to_numpy()
    r = ex.diff_means(yy[mask_t], yy[mask_c], alpha)
    return {
        "arm": arm,
        "diff": r.diff,
        "relative": _finite(r.diff / r.mean_c) if r.mean_c != 0 else None,
        "se": r.se,
        "df": _finite(r.df),
        "t": _finite(r.t),
        "ci_low": r.ci_low,
        "ci_high": r.ci_high,
        "p_value": r.p_value,
        "method": "welch",
    }


def analyze(
    df: pd.DataFrame,
    *,
    arm: str,
    control: str,
    outcomes: Sequence[str] | Sequence[tuple[str, str | None]],
    covariate: str | None = None,
    alpha: float = 0.05,
    correction: ex.Correction = "holm",
    ci: ex.PropMethod = "wald",
    planned: Sequence[float] | None = None,
    source: str = "data",
) -> dict[str, Any]:
    """Compare every arm of ``df`` with ``control``; return a JSON-able dict.

    Parameters
    ----------
    df
        One row per unit.
    arm, control
        The arm column and the control's value (compared as text).
    outcomes
        Column names (``"name:rate"``/``"name:mean"`` force the kind) or pairs.
    covariate
        Pre-period covariate for CUPED.
    alpha, correction, ci
        Level, multiple-comparison correction (holm, bh, none), rate interval (wald, newcomb).
    planned
        Planned shares of the arms in sorted arm order (control first); default equal.
    source
        Named in error messages (the file).

    Raises
    ------
    AnalysisError
        Missing column, missing values, a non-numeric or (for a rate) non-binary outcome,
        an unknown control value, an arm with fewer than two units.
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha must be in (0, 1), got {alpha}")
    specs: list[tuple[str, str | None]] = [
        o if isinstance(o, tuple) else parse_outcomes(o)[0] for o in outcomes
    ]
    needed = [arm, *(n for n, _ in specs), *([covariate] if covariate else [])]
    for col in needed:
        if col not in df.columns:
            raise AnalysisError(
                f"{source}: column {col!r} not found (columns: {', '.join(map(str, df.columns))})"
            )
    groups = df[arm]
    if groups.isna().any():
        i = int(np.flatnonzero(groups.isna().to_numpy())[0])
        raise AnalysisError(f"{source}: column {arm!r}: missing arm (row {i + 1})")
    groups = groups.astype(str).reset_index(drop=True)
    control = str(control)
    names = sorted(set(groups))
    if control not in names:
        raise AnalysisError(
            f"{source}: column {arm!r} has no value {control!r} (arms: {', '.join(names)})"
        )
    if len(names) < 2:
        raise AnalysisError(f"{source}: column {arm!r} has only one arm ({control!r})")
    order = [control, *(a for a in names if a != control)]
    sizes = groups.value_counts()
    for a in order:
        if int(sizes[a]) < 2:
            raise AnalysisError(f"{source}: arm {a!r} of column {arm!r} has fewer than 2 rows")

    def numbers(col: str) -> pd.Series:
        try:
            v = parse_numbers(df[col].reset_index(drop=True), path=source, column=col)
        except InputError as exc:
            raise AnalysisError(str(exc)) from None
        if v.isna().any():
            i = int(np.flatnonzero(v.isna().to_numpy())[0])
            raise AnalysisError(f"{source}: column {col!r}: missing value (row {i + 1})")
        if not np.isfinite(v.to_numpy()).all():
            i = int(np.flatnonzero(~np.isfinite(v.to_numpy()))[0])
            raise AnalysisError(
                f"{source}: column {col!r}: {v.iloc[i]} (row {i + 1}) is not finite"
            )
        return v

    x = numbers(covariate) if covariate else None
    srm = ex.srm_check([int(sizes[a]) for a in order], planned)
    result: dict[str, Any] = {
        "source": source,
        "arm_column": arm,
        "control": control,
        "alpha": alpha,
        "correction": correction,
        "ci_method": ci,
        "covariate": covariate,
        "arms": [{"arm": a, "n": int(sizes[a])} for a in order],
        "srm": {
            "observed": srm.observed,
            "expected": srm.expected,
            "chi2": srm.chi2,
            "p_value": srm.p_value,
            "mismatch": srm.mismatch,
        },
        "outcomes": [],
    }
    all_comparisons: list[dict[str, Any]] = []
    for name, forced in specs:
        y = numbers(name)
        kind = _kind(y, forced, source, name)
        per_arm = []
        for a in order:
            ya = y[groups == a]
            entry: dict[str, Any] = {"arm": a, "n": int(ya.size)}
            if kind == "rate":
                entry["successes"] = int(ya.sum())
                entry["rate"] = float(ya.mean())
            else:
                entry["mean"] = float(ya.mean())
                entry["sd"] = float(ya.std(ddof=1))
                entry["sum"] = float(ya.sum())
            per_arm.append(entry)
        comps = [
            _comparison_rate(y, groups, a, control, alpha, ci)
            if kind == "rate"
            else _comparison_mean(y, groups, a, control, alpha)
            for a in order[1:]
        ]
        out: dict[str, Any] = {"outcome": name, "kind": kind, "arms": per_arm}
        out["comparisons"] = comps
        all_comparisons += comps
        if x is not None:
            adj, c = ex.cuped(y.to_numpy(), x.to_numpy())
            cup = [_comparison_mean(adj, groups, a, control, alpha) for a in order[1:]]
            out["cuped"] = {
                "theta": c.theta,
                "variance_reduction": c.variance_reduction,
                "comparisons": cup,
            }
        result["outcomes"].append(out)
    adjusted = ex.adjust_pvalues([c["p_value"] for c in all_comparisons], correction)
    for comp, p in zip(all_comparisons, adjusted, strict=True):
        comp["p_adjusted"] = p
        comp["significant"] = bool(p < alpha)
    return result


def analyze_file(
    path: str | Path,
    *,
    arm: str,
    control: str,
    outcomes: str | Sequence[str],
    covariate: str | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Read ``path`` (CSV or Parquet) and :func:`analyze` it; errors name the file."""
    specs = parse_outcomes(outcomes)
    cols = [arm, *(n for n, _ in specs), *([covariate] if covariate else [])]
    df = read_table(path, cols, text_columns=[arm])
    return analyze(
        df,
        arm=arm,
        control=control,
        outcomes=specs,
        covariate=covariate,
        source=str(path),
        **kwargs,
    )


def sequential(
    df: pd.DataFrame,
    *,
    arm: str,
    control: str,
    outcome: str,
    time: str | None = None,
    looks: int = 20,
    tau: float | None = None,
    alpha: float = 0.05,
    source: str = "data",
) -> dict[str, Any]:
    """Always-valid (mSPRT) monitoring of every arm against the control, look by look.

    Rows are taken in the order of ``time`` (file order without it) and cut into ``looks``
    equal slices; after each slice the difference in means (a rate is a mean of 0/1) and its
    plug-in variance ``s_t²/n_t + s_c²/n_c`` go into :func:`experiment.msprt`.  ``tau``, the
    mixing standard deviation, defaults to a tenth of the outcome's standard deviation.
    Returns, per arm and look: rows seen, estimate, always-valid p-value and the confidence
    sequence; and the first look at which the p-value fell to ``alpha``.
    """
    if looks < 1:
        raise AnalysisError("looks must be >= 1")
    cols = [arm, outcome, *([time] if time else [])]
    for col in cols:
        if col not in df.columns:
            raise AnalysisError(
                f"{source}: column {col!r} not found (columns: {', '.join(map(str, df.columns))})"
            )
    d = df[cols].reset_index(drop=True)
    if time:
        d = d.sort_values(time, kind="mergesort").reset_index(drop=True)
    try:
        y = parse_numbers(d[outcome], path=source, column=outcome)
    except InputError as exc:
        raise AnalysisError(str(exc)) from None
    if y.isna().any():
        i = int(np.flatnonzero(y.isna().to_numpy())[0])
        raise AnalysisError(f"{source}: column {outcome!r}: missing value (row {i + 1})")
    g = d[arm].astype(str)
    control = str(control)
    names = sorted(set(g))
    if control not in names:
        raise AnalysisError(
            f"{source}: column {arm!r} has no value {control!r} (arms: {', '.join(names)})"
        )
    sd = float(y.std(ddof=1))
    mix = tau if tau is not None else 0.1 * sd
    if not mix > 0:
        raise AnalysisError(f"{source}: column {outcome!r} is constant; nothing to test")
    cuts = np.unique(np.linspace(0, len(d), looks + 1).round().astype(int)[1:])
    yv = y.to_numpy(float)
    out: dict[str, Any] = {
        "source": source,
        "outcome": outcome,
        "control": control,
        "tau": mix,
        "alpha": alpha,
        "arms": [],
    }
    is_c = (g == control).to_numpy()
    for a in (n for n in names if n != control):
        is_t = (g == a).to_numpy()
        rows, est, var = [], [], []
        for c in cuts:
            yt, yc = yv[:c][is_t[:c]], yv[:c][is_c[:c]]
            if yt.size < 2 or yc.size < 2:
                continue
            v = yt.var(ddof=1) / yt.size + yc.var(ddof=1) / yc.size
            if v <= 0:
                continue
            rows.append(int(c))
            est.append(float(yt.mean() - yc.mean()))
            var.append(float(v))
        if not rows:
            raise AnalysisError(f"{source}: arm {a!r} never has 2 rows and some variance")
        r = ex.msprt(est, var, mix, alpha)
        first = r.rejected_at
        out["arms"].append(
            {
                "arm": a,
                "looks": [
                    {
                        "rows": n,
                        "estimate": e,
                        "p_value": p,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                    for n, e, p, lo, hi in zip(
                        rows, r.estimate, r.p_value, r.ci_low, r.ci_high, strict=True
                    )
                ],
                "rejected_at_rows": rows[first] if first is not None else None,
                "final_p_value": r.p_value[-1],
            }
        )
    return out
