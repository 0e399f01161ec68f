"""Probabilistic account matching with Splink 4 on DuckDB (Fellegi–Sunter, trained by EM).

The model compares pairs of prepared accounts (see :mod:`autopersona.identity.prepare`) on
name, phone, e-mail, birth year, place, VIN and gender; candidate pairs come from blocking
rules on exact keys and on parts of keys, so that the pairs scored grow with the number of
true matches rather than with the square of the accounts. Training is unsupervised:

1. the prior (probability that two random accounts match) from deterministic rules (same
   phone, same e-mail) with an assumed recall;
2. u-probabilities by random sampling of pairs (seeded, so reproducible);
3. m-probabilities by expectation maximisation in two blocked sessions: same phone (trains
   everything but phone) and same folded name and birth year (trains phone, and the
   levels the first session never saw, such as different VINs; same folded name alone
   when no pair shares a birth year). A session blocked on the
   name alone trains badly: people with a common name and an address made from it agree
   on name and e-mail without being one person, and EM then learns that matches often
   differ in phone.

Phones, e-mails and VINs are compared by equality, by shared parts (phone halves, e-mail
local part) and "one edit apart" as sharing an entry of their deletion neighbourhoods
(:mod:`autopersona.identity.keys`).  Every level is an equality of values or of list
entries, so the model decides each pair the same on keyed pseudonyms and their keyed
comparison keys as on clear values: pseudonymisation at ingest costs linkage nothing.

Splink runs on its own in-memory DuckDB connection, so none of its working tables land in
the warehouse.

Examples
--------
>>> [c.create_output_column_name() for c in comparisons()][:3]
['name', 'phone', 'email']
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

__all__ = [
    "IDENTIFIERS",
    "Prediction",
    "ScoredPair",
    "SplinkSettings",
    "blocking_rules",
    "comparisons",
    "predict_pairs",
]

#: Prepared columns of which an account needs at least one to be scored.
IDENTIFIERS = ("phone", "email", "name", "vin")


@dataclass(frozen=True)
class SplinkSettings:
    """Training and scoring settings of the Splink model.

    Attributes
    ----------
    seed
        Seed of u-sampling (the only random step); 0 is read as 1 (Splink takes 0 for
        "no seed").
    max_pairs_u
        Pairs sampled to estimate u-probabilities.
    prior_recall
        Assumed recall of the deterministic rules used to estimate the prior.
    max_iterations
        EM iterations per training session.
    min_accounts
        Below this many accounts with an identifier the model is not trained.
    """

    seed: int = 42
    max_pairs_u: float = 1e6
    prior_recall: float = 0.7
    max_iterations: int = 25
    min_accounts: int = 20


def comparisons() -> list[Any]:
    """The comparisons of the model, each with levels from exact to different.

    Returns
    -------
    list
        Splink ``CustomComparison`` objects for name, phone, e-mail, birth year, place, VIN
        and gender.

    Examples
    --------
    >>> len(comparisons())
    7
    """
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    name = cl.CustomComparison(
        output_column_name="name",
        comparison_levels=[
            cll.NullLevel("name"),
            cll.ExactMatchLevel("name", term_frequency_adjustments=True).configure(
                label_for_charts="folded name equal"
            ),
            cll.ExactMatchLevel("name_letters").configure(
                label_for_charts="same letters (joined or reordered)"
            ),
            cll.JaroWinklerLevel("name", 0.92),
            cll.LevenshteinLevel("name_letters", 2),
            cll.ArrayIntersectLevel("name_tokens", 1).configure(
                label_for_charts="share a name token"
            ),
            cll.ElseLevel(),
        ],
        comparison_description="folded name",
    )
    phone = cl.CustomComparison(
        output_column_name="phone",
        comparison_levels=[
            cll.NullLevel("phone"),
            cll.ExactMatchLevel("phone"),
            cll.ArrayIntersectLevel("phone_near", 1).configure(label_for_charts="one edit apart"),
            cll.ElseLevel(),
        ],
        comparison_description="E.164 phone",
    )
    email = cl.CustomComparison(
        output_column_name="email",
        comparison_levels=[
            cll.NullLevel("email"),
            cll.ExactMatchLevel("email"),
            cll.ExactMatchLevel("email_local").configure(
                label_for_charts="same local part, other domain"
            ),
            cll.ArrayIntersectLevel("email_near", 1).configure(label_for_charts="one edit apart"),
            cll.ElseLevel(),
        ],
        comparison_description="normalised e-mail",
    )
    birth_year = cl.CustomComparison(
        output_column_name="birth_year",
        comparison_levels=[
            cll.NullLevel("birth_year"),
            cll.ExactMatchLevel("birth_year"),
            cll.AbsoluteDifferenceLevel("birth_year", 1),
            cll.ElseLevel(),
        ],
        comparison_description="year of birth",
    )
    place = cl.CustomComparison(
        output_column_name="place",
        comparison_levels=[
            cll.NullLevel("city"),
            cll.And(cll.ExactMatchLevel("city"), cll.ExactMatchLevel("district")).configure(
                label_for_charts="same city and district"
            ),
            cll.ExactMatchLevel("city"),
            cll.ElseLevel(),
        ],
        comparison_description="city and district",
    )
    vin = cl.CustomComparison(
        output_column_name="vin",
        comparison_levels=[
            cll.NullLevel("vin"),
            cll.ExactMatchLevel("vin"),
            cll.ArrayIntersectLevel("vin_near", 1).configure(label_for_charts="one edit apart"),
            cll.ElseLevel(),
        ],
        comparison_description="normalised VIN",
    )
    gender = cl.CustomComparison(
        output_column_name="gender",
        comparison_levels=[
            cll.NullLevel("gender"),
            cll.ExactMatchLevel("gender"),
            cll.ElseLevel(),
        ],
        comparison_description="declared gender",
    )
    return [name, phone, email, birth_year, place, vin, gender]


def blocking_rules() -> list[Any]:
    """Rules that generate the candidate pairs scored by the model.

    Each rule is an equality on a key or a part of one, so DuckDB evaluates it as a hash
    join: same phone, same half of the phone (one mistyped digit leaves the other half
    intact), same e-mail or e-mail local part, same VIN, same folded name or same name
    letters, and same birth year within a city for the accounts whose identifiers all
    differ.

    Examples
    --------
    >>> len(blocking_rules())
    9
    """
    from splink import block_on

    return [
        block_on("phone"),
        block_on("phone_head"),
        block_on("phone_tail", "city"),
        block_on("email"),
        block_on("email_local"),
        block_on("vin"),
        block_on("name"),
        block_on("name_letters"),
        block_on("birth_year", "city", "substr(name_letters, 1, 2)"),
    ]


def _settings(max_iterations: int) -> Any:
    from splink import SettingsCreator

    return SettingsCreator(
        link_type="dedupe_only",
        max_iterations=max_iterations,
        unique_id_column_name="unique_id",
        comparisons=comparisons(),
        blocking_rules_to_generate_predictions=blocking_rules(),
        retain_matching_columns=False,
        retain_intermediate_calculation_columns=False,
    )


@dataclass(frozen=True)
class ScoredPair:
    """A candidate pair of accounts scored by the model (``left < right``)."""

    left: str
    right: str
    match_probability: float
    match_weight: float


@dataclass(frozen=True)
class Prediction:
    """Scored pairs and how the model was trained.

    Attributes
    ----------
    pairs
        Pairs at or above the threshold, by descending probability, then ids.
    trained
        Whether the model was trained and run (``False``: too little data, see ``notes``).
    notes
        What was skipped or fell back, in words.
    """

    pairs: list[ScoredPair]
    trained: bool
    notes: list[str]


def predict_pairs(
    prepared: list[dict[str, Any]],
    *,
    threshold: float,
    settings: SplinkSettings | None = None,
) -> Prediction:
    """Train the model on ``prepared`` accounts and score candidate pairs.

    Parameters
    ----------
    prepared
        Output of :func:`autopersona.identity.prepare.prepare_records`.
    threshold
        Pairs with a match probability below it are dropped.
    settings
        Training settings (seed, u-sampling size, EM iterations, minimum data).

    Returns
    -------
    Prediction
        The scored pairs; none, with ``trained=False``, when fewer than
        ``settings.min_accounts`` accounts have a phone, e-mail, name or VIN (an
        unsupervised model learns nothing from a handful of records).

    Examples
    --------
    >>> from autopersona.identity.prepare import prepare_records
    >>> p = predict_pairs(prepare_records([{"account_id": "a", "name": "Li Na"}]), threshold=0.9)
    >>> p.pairs, p.trained, p.notes
    ([], False, ['1 accounts with identifiers: too few to train (min 20)'])
    """
    settings = settings or SplinkSettings()
    keyed = [r for r in prepared if any(r.get(k) is not None for k in IDENTIFIERS)]
    if len(keyed) < max(2, settings.min_accounts):
        note = f"{len(keyed)} accounts with identifiers: too few to train (min {settings.min_accounts})"
        return Prediction([], False, [note])

    import duckdb
    from splink import DuckDBAPI, Linker, block_on
    from splink.internals.exceptions import EMTrainingException

    from autopersona.identity.prepare import prepared_table

    notes: list[str] = []
    # Splink logs training notes (levels not observed under an EM blocking rule, ...) as
    # warnings; they are expected, so only its errors get through while it runs.
    splink_log = logging.getLogger("splink")
    level = splink_log.level
    splink_log.setLevel(logging.ERROR)
    # Its own in-memory connection: Splink's working tables stay out of the warehouse.
    con = duckdb.connect(":memory:")
    con.execute("SET enable_progress_bar = false")  # keep stdout clean (``--json``)
    try:
        con.register("_identity_input_arrow", prepared_table(keyed))
        con.execute("CREATE TABLE identity_input AS SELECT * FROM _identity_input_arrow")
        con.unregister("_identity_input_arrow")
        linker = Linker(
            "identity_input",
            _settings(settings.max_iterations),
            db_api=DuckDBAPI(con),
            set_up_basic_logging=False,
        )
        training = linker.training
        try:
            training.estimate_probability_two_random_records_match(
                [block_on("phone"), block_on("email")], recall=settings.prior_recall
            )
        except ValueError as exc:  # the rules found more matches than the recall allows
            notes.append(f"prior estimated with recall 1.0: {str(exc).splitlines()[0]}")
            training.estimate_probability_two_random_records_match(
                [block_on("phone"), block_on("email")], recall=1.0
            )
        training.estimate_u_using_random_sampling(
            max_pairs=settings.max_pairs_u, seed=settings.seed or 1
        )
        # Each session is a list of rules tried in turn until one yields pairs to train on.
        for session in ([("phone",)], [("name", "birth_year"), ("name",)]):
            for cols in session:
                try:
                    training.estimate_parameters_using_expectation_maximisation(
                        block_on(*cols), estimate_without_term_frequencies=True
                    )
                    break
                except EMTrainingException:  # no pairs under this rule
                    notes.append(f"no pairs with the same {' and '.join(cols)} to train EM on")
        scored = linker.inference.predict(threshold_match_probability=threshold)
        rows = con.execute(
            f"""SELECT least(unique_id_l, unique_id_r), greatest(unique_id_l, unique_id_r),
                       match_probability, match_weight
                FROM {scored.physical_name}"""
        ).fetchall()
    finally:
        con.close()
        splink_log.setLevel(level)
    pairs = [ScoredPair(str(a), str(b), float(p), float(w)) for a, b, p, w in rows]
    # Sorted here so that the order does not depend on how DuckDB returned the rows.
    pairs.sort(key=lambda s: (-s.match_probability, s.left, s.right))
    return Prediction(pairs, True, notes)
