r"""Multi-channel attribution: which channels get credit for conversions.

Input is a table of **touches** — one row per contact of a person (journey) with a channel
at a time — and a conversion flag (a journey converts when any of its rows says so; an
optional value column gives the conversion's value). :func:`paths` orders each journey's
touches by time and aggregates identical channel paths.

Rules
-----
* **Last touch**: each conversion's credit goes to the last channel of its path.
* **First touch**: to the first channel.
* **Linear**: split equally over the path's touches.
* **Position-based** (U-shaped, 40/20/40): 40 % to the first touch, 40 % to the last and
  the remaining 20 % split equally over the touches in between; a path of one touch gives
  it 100 %, a path of two touches 50/50.

Data-driven: Markov chain removal effect
----------------------------------------
(Anderl et al. 2016.) Journeys are walks of a first-order Markov chain over the states
``(start)``, the channels, and two absorbing states ``(conversion)`` and ``(null)``: each
path contributes the transitions ``(start) → c_1 → … → c_k`` and then ``c_k → (conversion)``
for converting journeys or ``c_k → (null)`` otherwise; transition probabilities are the
observed shares. :math:`P` is the probability of absorption in ``(conversion)`` from
``(start)`` (solved exactly from the fundamental matrix). Removing channel :math:`c` sends
every transition into :math:`c` to ``(null)``; its **removal effect** is
:math:`RE_c = 1 - P_{-c}/P`. Channels are credited the conversions in proportion to their
removal effects, :math:`RE_c / \sum_d RE_d`.

Data-driven: Shapley value
--------------------------
(Zhao et al. 2018, "simplified Shapley value".) Channels are players of a cooperative game
whose worth :math:`v(S)` is the number of conversions (or their value) of the converting
journeys whose set of channels lies within :math:`S`. :math:`v` is a sum of unanimity games,
one per converting journey, so each channel's Shapley value is exact and closed-form: every
conversion is split equally among the *distinct* channels of its path (a channel touched
twice counts once), regardless of order. The credits sum to the conversions (efficiency).

References
----------
Zhao, K., Mahboobi, S. H., & Bagheri, S. R. (2018). Shapley value methods for attribution
modeling in online advertising. arXiv:1804.05327.

Anderl, E., Becker, I., von Wangenheim, F., & Schumann, J. H. (2016). Mapping the customer
journey: Lessons learned from graph-based online attribution modeling. *International
Journal of Research in Marketing*, 33(3), 457-474.

Examples
--------
>>> import pandas as pd
>>> touches = pd.DataFrame({
...     "person": ["a", "a", "b", "b", "c"],
...     "channel": ["email", "app", "email", "push", "push"],
...     "time": pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-02", "2024-01-04",
...                             "2024-01-05"]),
...     "converted": [1, 1, 0, 0, 1]})
>>> p = paths(touches, "person", "channel", "time", "converted")
>>> attribute(p).round(3)
         last_touch  first_touch  linear  position_based  markov  shapley
channel
app             1.0          0.0     0.5             0.5   0.571      0.5
email           0.0          1.0     0.5             0.5   0.857      0.5
push            1.0          1.0     1.0             1.0   0.571      1.0
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "absorption_probability",
    "attribute",
    "attribution_figure",
    "first_touch",
    "last_touch",
    "linear",
    "markov_removal",
    "paths",
    "position_based",
    "removal_effects",
    "shapley",
    "transition_counts",
]

START, CONVERSION, NULL = "(start)", "(conversion)", "(null)"
FloatArray = npt.NDArray[np.float64]


def paths(
    touches: pd.DataFrame,
    journey: str,
    channel: str,
    time: str,
    converted: str,
    value: str | None = None,
    collapse_repeats: bool = False,
) -> pd.DataFrame:
    """Order each journey's touches by time and count conversions per distinct channel path.

    Parameters
    ----------
    touches
        One row per touch.
    journey, channel, time, converted
        Column names: journey (person) id, channel, touch time (anything orderable), and
        a 0/1 conversion flag (a journey converts when any of its rows is 1).
    value
        Optional conversion value column: a journey's value is the largest on its rows
        (give it on the converting touch, or repeat it on every row); only converting
        journeys' values count.
    collapse_repeats
        Merge consecutive touches of the same channel into one.

    Returns
    -------
    pandas.DataFrame
        ``path`` (tuple of channels), ``journeys``, ``conversions``, ``nulls``
        (non-converting journeys) and ``value``.
    """
    cols = [journey, channel, time, converted, *([value] if value else [])]
    for c in cols:
        if c not in touches.columns:
            raise ValueError(f"touches have no column {c!r}")
    df = touches[cols].copy()
    for c in (journey, channel, time):
        missing = df[c].isna().to_numpy()
        if missing.any():
            raise ValueError(f"{c}: row {int(np.flatnonzero(missing)[0])} is missing")
    conv = pd.to_numeric(df[converted], errors="coerce")
    bad = ~conv.isin([0, 1]).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{converted}: row {row} is {df[converted].iloc[row]!s}, not 0 or 1")
    df[converted] = conv.astype(np.int64)
    if value:
        v = pd.to_numeric(df[value], errors="coerce")
        bad = v.isna().to_numpy() & df[value].notna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{value}: row {row} is {df[value].iloc[row]!s}, not a number")
        df[value] = v.fillna(0.0)
    if df.empty:
        raise ValueError("no touches")
    df[channel] = df[channel].astype(str)
    reserved = df[channel].isin([START, CONVERSION, NULL]).to_numpy()
    if reserved.any():
        row = int(np.flatnonzero(reserved)[0])
        raise ValueError(f"{channel}: row {row} uses the reserved name {df[channel].iloc[row]}")
    df = df.sort_values([journey, time], kind="mergesort")
    grouped = df.groupby(journey, sort=False)
    per = pd.DataFrame(
        {
            "path": grouped[channel].agg(tuple),
            "conversions": grouped[converted].max(),
            "value": grouped[value].max() if value else 0.0,
        }
    )
    if collapse_repeats:
        per["path"] = [
            tuple(c for i, c in enumerate(p) if i == 0 or c != p[i - 1]) for p in per["path"]
        ]
    per["value"] = per["value"].where(per["conversions"] == 1, 0.0)
    out = per.groupby("path", sort=True).agg(
        journeys=("conversions", "size"),
        conversions=("conversions", "sum"),
        value=("value", "sum"),
    )
    out["nulls"] = out["journeys"] - out["conversions"]
    out = out.reset_index()
    return out[["path", "journeys", "conversions", "nulls", "value"]]


def _check_paths(p: pd.DataFrame) -> None:
    for c in ("path", "conversions"):
        if c not in p.columns:
            raise ValueError(f"paths table has no column {c!r} (build it with paths())")
    if any(len(x) == 0 for x in p["path"]):
        raise ValueError("a path has no touches")


def _credit(
    p: pd.DataFrame, weights: Any, by_value: bool = False
) -> pd.Series:  # weights(path) -> list of (channel, share)
    _check_paths(p)
    credit: dict[str, float] = {}
    amount = p["value"] if by_value else p["conversions"]
    for path, n in zip(p["path"], amount, strict=True):
        if n == 0:
            continue
        for ch, share in weights(path):
            credit[ch] = credit.get(ch, 0.0) + share * float(n)
    channels = sorted({c for path in p["path"] for c in path})
    return pd.Series({c: credit.get(c, 0.0) for c in channels}, name="credit", dtype=np.float64)


def last_touch(p: pd.DataFrame, by_value: bool = False) -> pd.Series:
    """Credit every conversion to its path's last channel.

    Parameters
    ----------
    p
        From :func:`paths`.
    by_value
        Attribute conversion value instead of conversion counts.

    Returns
    -------
    pandas.Series
        Credit per channel (every channel seen, 0 when never credited).
    """
    return _credit(p, lambda path: [(path[-1], 1.0)], by_value)


def first_touch(p: pd.DataFrame, by_value: bool = False) -> pd.Series:
    """Credit every conversion to its path's first channel.

    Parameters
    ----------
    p
        From :func:`paths`.
    by_value
        Attribute conversion value instead of conversion counts.

    Returns
    -------
    pandas.Series
        Credit per channel.
    """
    return _credit(p, lambda path: [(path[0], 1.0)], by_value)


def linear(p: pd.DataFrame, by_value: bool = False) -> pd.Series:
    """Split every conversion equally over its path's touches.

    Parameters
    ----------
    p
        From :func:`paths`.
    by_value
        Attribute conversion value instead of conversion counts.

    Returns
    -------
    pandas.Series
        Credit per channel.
    """
    return _credit(p, lambda path: [(c, 1.0 / len(path)) for c in path], by_value)


def _u_shape(path: tuple[str, ...], first: float, last: float) -> list[tuple[str, float]]:
    k = len(path)
    if k == 1:
        return [(path[0], 1.0)]
    if k == 2:
        return [(path[0], 0.5), (path[1], 0.5)]
    middle = (1.0 - first - last) / (k - 2)
    return [(path[0], first), *[(c, middle) for c in path[1:-1]], (path[-1], last)]


def position_based(
    p: pd.DataFrame, first: float = 0.4, last: float = 0.4, by_value: bool = False
) -> pd.Series:
    """U-shaped credit: ``first`` to the first touch, ``last`` to the last, the rest between.

    Parameters
    ----------
    p
        From :func:`paths`.
    first, last
        Shares of the first and last touch (paths of three or more touches).
    by_value
        Attribute conversion value instead of conversion counts.

    Returns
    -------
    pandas.Series
        Credit per channel.
    """
    if first < 0 or last < 0 or first + last > 1:
        raise ValueError("first and last must be non-negative and sum to at most 1")
    return _credit(p, lambda path: _u_shape(path, first, last), by_value)


def shapley(p: pd.DataFrame, by_value: bool = False) -> pd.Series:
    """Shapley value of each channel in the conversion game (module docstring).

    Parameters
    ----------
    p
        From :func:`paths`.
    by_value
        Attribute conversion value instead of conversion counts.

    Returns
    -------
    pandas.Series
        Credit per channel, summing to the total conversions (or value).
    """

    def split(path: tuple[str, ...]) -> list[tuple[str, float]]:
        distinct = sorted(set(path))
        return [(c, 1.0 / len(distinct)) for c in distinct]

    return _credit(p, split, by_value)


def transition_counts(p: pd.DataFrame) -> pd.DataFrame:
    """Observed transition counts between ``(start)``, channels, and the absorbing states.

    Parameters
    ----------
    p
        From :func:`paths` (needs ``nulls``).

    Returns
    -------
    pandas.DataFrame
        Square counts, rows = from, columns = to; states ``(start)``, the channels
        (sorted), ``(conversion)``, ``(null)``.
    """
    _check_paths(p)
    channels = sorted({c for path in p["path"] for c in path})
    states = [START, *channels, CONVERSION, NULL]
    ix = {s: i for i, s in enumerate(states)}
    m = np.zeros((len(states), len(states)))
    for path, conv, null in zip(p["path"], p["conversions"], p["nulls"], strict=True):
        n = float(conv) + float(null)
        seq = [START, *path]
        for a, b in itertools.pairwise(seq):
            m[ix[a], ix[b]] += n
        m[ix[path[-1]], ix[CONVERSION]] += float(conv)
        m[ix[path[-1]], ix[NULL]] += float(null)
    return pd.DataFrame(m, index=states, columns=states)


def absorption_probability(counts: pd.DataFrame, removed: str | None = None) -> float:
    """Probability of reaching ``(conversion)`` from ``(start)``, optionally without a channel.

    Parameters
    ----------
    counts
        From :func:`transition_counts`.
    removed
        A channel whose incoming transitions are redirected to ``(null)``.

    Returns
    -------
    float
        The absorption probability.
    """
    states = list(counts.index)
    m = counts.to_numpy(dtype=np.float64).copy()
    ix = {s: i for i, s in enumerate(states)}
    if removed is not None:
        if removed not in ix or removed in (START, CONVERSION, NULL):
            raise ValueError(f"unknown channel {removed!r}")
        c = ix[removed]
        m[:, ix[NULL]] += m[:, c]
        m[:, c] = 0.0
    totals = m.sum(axis=1, keepdims=True)
    probs = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    transient = [i for s, i in ix.items() if s not in (CONVERSION, NULL)]
    Q = probs[np.ix_(transient, transient)]
    r = probs[transient, ix[CONVERSION]]
    x = np.linalg.solve(np.eye(len(transient)) - Q, r)
    return float(x[transient.index(ix[START])])


def removal_effects(p: pd.DataFrame) -> pd.Series:
    """Markov removal effect :math:`1 - P_{-c}/P` of every channel.

    Parameters
    ----------
    p
        From :func:`paths`.

    Returns
    -------
    pandas.Series
        Removal effect per channel (0 to 1); all 0 when nothing converted.
    """
    counts = transition_counts(p)
    channels = [s for s in counts.index if s not in (START, CONVERSION, NULL)]
    base = absorption_probability(counts)
    if base == 0.0:
        return pd.Series(0.0, index=pd.Index(channels), name="removal_effect")
    eff = {c: 1.0 - absorption_probability(counts, removed=c) / base for c in channels}
    return pd.Series(eff, name="removal_effect", dtype=np.float64)


def markov_removal(p: pd.DataFrame, by_value: bool = False) -> pd.Series:
    """Conversions credited in proportion to the channels' Markov removal effects.

    Parameters
    ----------
    p
        From :func:`paths`.
    by_value
        Attribute the total conversion value instead of the conversion count.

    Returns
    -------
    pandas.Series
        Credit per channel, summing to the total conversions (or value).
    """
    eff = removal_effects(p)
    total = float((p["value"] if by_value else p["conversions"]).sum())
    s = float(eff.sum())
    credit = eff / s * total if s > 0 else eff * 0.0
    credit.name = "credit"
    return credit


METHODS: dict[str, Callable[..., pd.Series]] = {
    "last_touch": last_touch,
    "first_touch": first_touch,
    "linear": linear,
    "position_based": position_based,
    "markov": markov_removal,
    "shapley": shapley,
}


def attribute(
    p: pd.DataFrame, methods: Sequence[str] = tuple(METHODS), by_value: bool = False
) -> pd.DataFrame:
    """Credit per channel under each method (columns), every column summing to the total.

    Parameters
    ----------
    p
        From :func:`paths`.
    methods
        Names among ``last_touch``, ``first_touch``, ``linear``, ``position_based``,
        ``markov``, ``shapley``.
    by_value
        Attribute conversion value instead of conversion counts.

    Returns
    -------
    pandas.DataFrame
        Index ``channel``; one column per method.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {', '.join(unknown)} (known: {', '.join(METHODS)})")
    table = pd.DataFrame({m: METHODS[m](p, by_value=by_value) for m in methods})
    table.index.name = "channel"
    return table


def attribution_figure(
    table: pd.DataFrame, share: bool = True, title: str = "Channel attribution"
) -> Figure:
    """Grouped bars: each channel's credit (or share of credit) under each method.

    Parameters
    ----------
    table
        From :func:`attribute`.
    share
        Plot shares of each method's total instead of conversions.
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        A figure drawn with the Agg backend (not shown).
    """
    from matplotlib.figure import Figure

    data = table.div(table.sum(axis=0).replace(0.0, np.nan), axis=1) if share else table
    fig = Figure(figsize=(max(5.0, 1.2 * len(data)), 3.8))
    ax = fig.add_subplot()
    k = len(data.columns)
    width = 0.8 / max(k, 1)
    x = np.arange(len(data))
    for j, method in enumerate(data.columns):
        ax.bar(x + (j - (k - 1) / 2) * width, data[method].to_numpy(), width, label=method)
    ax.set_xticks(x, [str(c) for c in data.index])
    ax.set_ylabel("share of credit" if share else "conversions credited")
    ax.set_title(title)
    top = float(np.nanmax(data.to_numpy())) if data.size else 1.0
    ax.set_ylim(0.0, 1.35 * top if top > 0 else 1.0)
    ax.legend(loc="upper center", ncol=3, fontsize="small", frameon=False)
    fig.tight_layout()
    return fig
