"""Trip purpose (commute / business / leisure) with a hidden Markov model (hmmlearn).

Method
------
Observations
    Each trip becomes one categorical symbol, the combination of five trip features
    (:func:`encode_trips`; 9 x 5 x 2 x 4 x 2 = 720 symbols):

    * ``od``: origin kind x destination kind, each ``home`` / ``work`` / ``other`` (from the
      vehicle's labelled locations);
    * ``time``: local start time band: weekday peak (Mon-Fri 06-10 and 16-20), weekday
      lunch (11-14), weekday daytime (10-11, 14-16), weekday off-peak (the rest of Mon-Fri),
      weekend;
    * ``poi``: whether an ``other`` destination's nearest POI is a business category
      (office, hotel, airport);
    * ``dwell``: dwell at an ``other`` destination < 2 h, 2-6 h, >= 6 h; a fourth level for
      trips to home or work, or whose dwell is unknown (the last trip);
    * ``long``: trip distance >= 50 km.

    A vehicle's trips in time order form one sequence.

Hidden states and priors
    Three hidden states, one per purpose, fixed by a *declared* prior model
    (:func:`prior_model`): each state's emission distribution is the product of one
    declared table per feature (:data:`EMISSION_FACTORS`; e.g. ``commute`` puts 88 % of its
    ``od`` mass on home->work and work->home, ``business`` puts 65 % on work->other and
    other->work and prefers weekday daytime and business POIs, ``leisure`` prefers
    home->other, other->home, evenings and weekends), with declared start and transition
    probabilities (:data:`START_PRIOR`, :data:`TRANSITION_PRIOR`: purposes persist, e.g. a
    client visit is followed by the business trip back to the office).

Fitting per fleet
    :func:`fit_purpose_model` refines the prior model by Baum-Welch (``CategoricalHMM.fit``)
    over all vehicles' sequences, as a MAP estimate: the declared probabilities, times
    ``prior_strength`` pseudo-trips, are the Dirichlet priors of the start, transition and
    emission parameters, and the initial values. With fewer than ``min_trips`` trips the
    prior model is used as it is.

Naming the states
    After fitting, states are named by declared rules on their emission distributions, not
    by their index: ``commute`` is the state with the most probability on home<->work trips
    on weekdays; ``business`` the one of the other two with the most probability on
    work<->other trips on weekdays between 06:00 and 20:00 plus trips to business POIs; ``leisure`` is
    the remaining state. (The initialisation makes this the identity unless Baum-Welch moved
    a state far from its prior.)

Decoding
    :meth:`PurposeModel.decode` gives each trip the purpose of its state on the Viterbi path of
    its vehicle's sequence, and the posterior probability of that state (forward-backward) as
    a confidence.

Nothing here reads the simulator's truth: the priors are declared rules and the fit is
unsupervised.

Examples
--------
>>> import pandas as pd
>>> trips = pd.DataFrame({
...     "origin_kind": ["home", "work", "home", "other"],
...     "dest_kind": ["work", "home", "other", "home"],
...     "start_hour_local": [8, 18, 10, 13], "weekday_local": [0, 0, 5, 5],
...     "dest_poi_category": [None, None, "park", None],
...     "dwell_s": [32000.0, 50000.0, 7000.0, None], "distance_km": [9.0, 9.0, 5.0, 5.0]})
>>> model = prior_model()
>>> purposes, conf = model.decode(encode_trips(trips), [4])
>>> purposes.tolist()
['commute', 'commute', 'leisure', 'leisure']
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from hmmlearn.hmm import CategoricalHMM

__all__ = [
    "BUSINESS_POI",
    "EMISSION_FACTORS",
    "FEATURE_LEVELS",
    "N_SYMBOLS",
    "PURPOSES",
    "START_PRIOR",
    "TRANSITION_PRIOR",
    "PurposeModel",
    "encode_trips",
    "fit_purpose_model",
    "name_states",
    "prior_model",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PURPOSES = ("commute", "business", "leisure")
"""The three purposes, in the order of the prior model's states."""

KINDS = ("home", "work", "other")
FEATURE_LEVELS: dict[str, tuple[str, ...]] = {
    "od": tuple(f"{o}->{d}" for o in KINDS for d in KINDS),
    "time": ("weekday_peak", "weekday_lunch", "weekday_day", "weekday_off", "weekend"),
    "poi": ("not_business", "business"),
    "dwell": ("lt2h", "2to6h", "ge6h", "home_work_or_unknown"),
    "long": ("short", "long"),
}
"""Levels of each observation feature; the symbol is their mixed-radix combination."""

N_SYMBOLS = int(np.prod([len(v) for v in FEATURE_LEVELS.values()]))
"""Number of observation symbols (720)."""

BUSINESS_POI = frozenset({"office", "hotel", "airport"})
"""POI categories counted as business destinations."""

LONG_TRIP_KM = 50.0

EMISSION_FACTORS: dict[str, dict[str, tuple[float, ...]]] = {
    # od order: home->home, home->work, home->other, work->home, work->work, work->other,
    #           other->home, other->work, other->other
    "commute": {
        "od": (0.01, 0.44, 0.02, 0.44, 0.01, 0.01, 0.03, 0.03, 0.01),
        "time": (0.60, 0.03, 0.07, 0.25, 0.05),
        "poi": (0.95, 0.05),
        "dwell": (0.03, 0.03, 0.04, 0.90),
        "long": (0.99, 0.01),
    },
    "business": {
        "od": (0.01, 0.02, 0.05, 0.02, 0.02, 0.35, 0.10, 0.30, 0.13),
        "time": (0.25, 0.15, 0.40, 0.15, 0.05),
        "poi": (0.50, 0.50),
        "dwell": (0.35, 0.15, 0.05, 0.45),
        "long": (0.85, 0.15),
    },
    "leisure": {
        "od": (0.02, 0.01, 0.38, 0.01, 0.01, 0.05, 0.38, 0.04, 0.10),
        "time": (0.12, 0.15, 0.10, 0.28, 0.35),
        "poi": (0.92, 0.08),
        "dwell": (0.30, 0.10, 0.05, 0.55),
        "long": (0.93, 0.07),
    },
}
"""Declared per-feature emission tables of each purpose (each row sums to 1)."""

START_PRIOR = (0.3, 0.1, 0.6)
"""Declared probability of each purpose for a vehicle's first trip."""

TRANSITION_PRIOR = (
    (0.45, 0.20, 0.35),  # after a commute
    (0.25, 0.60, 0.15),  # after a business trip
    (0.25, 0.15, 0.60),  # after a leisure trip
)
"""Declared purpose-to-purpose transition probabilities (rows: from; columns: to)."""


def _product_emissions(factors: dict[str, tuple[float, ...]]) -> FloatArray:
    out = np.ones(1)
    for name in FEATURE_LEVELS:
        f = np.asarray(factors[name], dtype=np.float64)
        out = np.outer(out, f / f.sum()).ravel()
    return out


def _feature_of_symbols(name: str) -> IntArray:
    """Level of feature ``name`` of every symbol 0..N_SYMBOLS-1."""
    sizes = [len(v) for v in FEATURE_LEVELS.values()]
    names = list(FEATURE_LEVELS)
    k = names.index(name)
    inner = int(np.prod(sizes[k + 1 :])) if k + 1 < len(sizes) else 1
    return (np.arange(N_SYMBOLS, dtype=np.int64) // inner) % sizes[k]


def encode_trips(trips: pd.DataFrame) -> IntArray:
    """Observation symbol of each trip (see the module docstring).

    Parameters
    ----------
    trips
        Columns ``origin_kind``, ``dest_kind`` (``home``/``work``/``other``; anything else
        counts as ``other``), ``start_hour_local``, ``weekday_local`` (0 = Monday),
        ``dest_poi_category``, ``dwell_s`` (NaN: unknown) and ``distance_km``.

    Returns
    -------
    numpy.ndarray
        int64 symbols in ``0 .. N_SYMBOLS - 1``.

    Examples
    --------
    >>> t = pd.DataFrame({"origin_kind": ["home"], "dest_kind": ["work"],
    ...     "start_hour_local": [8], "weekday_local": [2], "dest_poi_category": ["office"],
    ...     "dwell_s": [30000.0], "distance_km": [12.0]})
    >>> int(encode_trips(t)[0]) == 1 * 80 + 0 * 16 + 0 * 8 + 3 * 2 + 0
    True
    """
    n = len(trips)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    kind = {k: i for i, k in enumerate(KINDS)}
    o = trips["origin_kind"].map(kind).fillna(2).to_numpy(dtype=np.int64)
    d = trips["dest_kind"].map(kind).fillna(2).to_numpy(dtype=np.int64)
    hour = pd.to_numeric(trips["start_hour_local"], errors="coerce").fillna(0).to_numpy(float)
    wd = pd.to_numeric(trips["weekday_local"], errors="coerce").fillna(0).to_numpy(float)
    peak = ((hour >= 6) & (hour < 10)) | ((hour >= 16) & (hour < 20))
    lunch = (hour >= 11) & (hour < 14)
    day = (hour >= 10) & (hour < 16)
    tb = np.where(wd >= 5, 4, np.where(peak, 0, np.where(lunch, 1, np.where(day, 2, 3))))
    cat = trips["dest_poi_category"].astype(object).to_numpy()
    biz = np.array([c in BUSINESS_POI for c in cat], dtype=bool) & (d == 2)
    dwell = pd.to_numeric(trips["dwell_s"], errors="coerce").to_numpy(dtype=np.float64) / 3600
    db = np.where(
        ~np.isfinite(dwell) | (d < 2), 3, np.where(dwell < 2, 0, np.where(dwell < 6, 1, 2))
    )
    dist = pd.to_numeric(trips["distance_km"], errors="coerce").fillna(0).to_numpy(float)
    long_ = (dist >= LONG_TRIP_KM).astype(np.int64)
    sym = np.zeros(n, dtype=np.int64)
    levels = {"od": o * 3 + d, "time": tb, "poi": biz.astype(np.int64), "dwell": db, "long": long_}
    for name, values in FEATURE_LEVELS.items():
        sym = sym * len(values) + levels[name]
    return np.asarray(sym, dtype=np.int64)


@dataclass(frozen=True)
class PurposeModel:
    """A three-state categorical HMM with a purpose name per state.

    Attributes
    ----------
    startprob, transmat, emissionprob
        HMM parameters (``emissionprob`` has shape ``(3, N_SYMBOLS)``).
    states
        Purpose of each hidden state.
    fitted
        Whether Baum-Welch refined the declared priors.
    n_trips, n_sequences
        Data the model was fitted on (0 for the prior model).
    """

    startprob: FloatArray
    transmat: FloatArray
    emissionprob: FloatArray
    states: tuple[str, ...] = PURPOSES
    fitted: bool = False
    n_trips: int = 0
    n_sequences: int = 0

    def _hmm(self) -> CategoricalHMM:
        h = CategoricalHMM(n_components=3, n_features=N_SYMBOLS, init_params="", params="")
        h.startprob_ = self.startprob
        h.transmat_ = self.transmat
        h.emissionprob_ = self.emissionprob
        return h

    def decode(
        self, symbols: npt.ArrayLike, lengths: Sequence[int] | None = None
    ) -> tuple[npt.NDArray[np.object_], FloatArray]:
        """Purpose and confidence of every trip.

        Parameters
        ----------
        symbols
            Trip symbols (:func:`encode_trips`), sequences one after the other.
        lengths
            Length of each sequence (one per vehicle); default: one sequence.

        Returns
        -------
        tuple of (numpy.ndarray, numpy.ndarray)
            Purpose names (Viterbi path) and the posterior probability of each.

        Examples
        --------
        >>> p, c = prior_model().decode([], [])
        >>> p.tolist(), c.tolist()
        ([], [])
        """
        x = np.asarray(symbols, dtype=np.int64).reshape(-1, 1)
        if x.shape[0] == 0:
            return np.zeros(0, dtype=object), np.zeros(0)
        lens = [x.shape[0]] if lengths is None else [int(v) for v in lengths if int(v) > 0]
        h = self._hmm()
        _, path = h.decode(x, lens, algorithm="viterbi")
        post = h.predict_proba(x, lens)
        names = np.asarray(self.states, dtype=object)[path]
        conf = post[np.arange(path.size), path]
        return names, np.asarray(conf, dtype=np.float64)


def prior_model() -> PurposeModel:
    """The declared model: emission, start and transition priors, no fitting.

    Examples
    --------
    >>> m = prior_model()
    >>> m.emissionprob.shape, m.states, bool(np.allclose(m.emissionprob.sum(axis=1), 1))
    ((3, 720), ('commute', 'business', 'leisure'), True)
    """
    emis = np.vstack([_product_emissions(EMISSION_FACTORS[p]) for p in PURPOSES])
    start = np.asarray(START_PRIOR, dtype=np.float64)
    trans = np.asarray(TRANSITION_PRIOR, dtype=np.float64)
    return PurposeModel(
        startprob=start / start.sum(),
        transmat=trans / trans.sum(axis=1, keepdims=True),
        emissionprob=emis / emis.sum(axis=1, keepdims=True),
    )


def name_states(emissionprob: FloatArray) -> tuple[str, ...]:
    """Purpose of each state by the declared naming rules (see the module docstring).

    Examples
    --------
    >>> name_states(prior_model().emissionprob[[2, 0, 1]])
    ('leisure', 'commute', 'business')
    """
    od = _feature_of_symbols("od")
    tb = _feature_of_symbols("time")
    poi = _feature_of_symbols("poi")
    hw = np.isin(od, [1, 3]) & (tb != 4)
    wo = np.isin(od, [5, 7]) & np.isin(tb, [0, 1, 2])
    commute = int(np.argmax(emissionprob[:, hw].sum(axis=1)))
    rest = [s for s in range(emissionprob.shape[0]) if s != commute]
    biz_score = emissionprob[:, wo].sum(axis=1) + emissionprob[:, poi == 1].sum(axis=1)
    business = max(rest, key=lambda s: float(biz_score[s]))
    names = ["leisure"] * emissionprob.shape[0]
    names[commute] = "commute"
    names[business] = "business"
    return tuple(names)


def fit_purpose_model(
    symbols: npt.ArrayLike,
    lengths: Sequence[int],
    *,
    prior_strength: float = 200.0,
    n_iter: int = 25,
    min_trips: int = 30,
) -> PurposeModel:
    """Refine the declared model by Baum-Welch over a fleet's trip sequences (MAP).

    Parameters
    ----------
    symbols
        All trips' symbols (:func:`encode_trips`), vehicle after vehicle, in time order.
    lengths
        Number of trips of each vehicle.
    prior_strength
        Pseudo-trips behind the declared emission, start and transition probabilities
        (Dirichlet concentration ``1 + prior_strength * p``).
    n_iter
        Maximum Baum-Welch iterations.
    min_trips
        Below this many trips the prior model is returned unfitted.

    Returns
    -------
    PurposeModel
        The fitted model with its states named by the declared rules.

    Examples
    --------
    >>> m = fit_purpose_model([1, 2, 3], [3])  # too few trips: the declared model
    >>> m.fitted, m.states
    (False, ('commute', 'business', 'leisure'))
    """
    x = np.asarray(symbols, dtype=np.int64).reshape(-1, 1)
    lens = [int(v) for v in lengths if int(v) > 0]
    prior = prior_model()
    if x.shape[0] < min_trips or sum(lens) != x.shape[0]:
        return prior
    k = float(prior_strength)
    h = CategoricalHMM(
        n_components=3,
        n_features=N_SYMBOLS,
        startprob_prior=1.0 + k * prior.startprob,
        transmat_prior=1.0 + k * prior.transmat,
        emissionprob_prior=1.0 + k * prior.emissionprob,
        init_params="",
        params="ste",
        n_iter=n_iter,
        tol=1e-3,
        random_state=0,
    )
    h.startprob_ = prior.startprob.copy()
    h.transmat_ = prior.transmat.copy()
    h.emissionprob_ = prior.emissionprob.copy()
    log = logging.getLogger("hmmlearn.base")
    level = log.level
    log.setLevel(logging.ERROR)  # the "degenerate solution" notice: the priors regularise
    try:
        h.fit(x, lens)
    finally:
        log.setLevel(level)
    emis = np.asarray(h.emissionprob_, dtype=np.float64)
    return PurposeModel(
        startprob=np.asarray(h.startprob_, dtype=np.float64),
        transmat=np.asarray(h.transmat_, dtype=np.float64),
        emissionprob=emis,
        states=name_states(emis),
        fitted=True,
        n_trips=int(x.shape[0]),
        n_sequences=len(lens),
    )
