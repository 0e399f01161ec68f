"""``autopersona uplift fit``: an uplift model on any experiment file, scored on held-out rows.

The file (CSV, TSV or Parquet) has one row per person with the arm they were randomised to,
an outcome and features. Rows are split into training and test sets stratified by arm;
the learner is fitted on the training rows and every treatment's Qini coefficient and AUUC
(:mod:`autopersona.evaluation.uplift`) is measured on the test rows. A missing file or
column, a missing or non-numeric outcome, or an unknown control value is reported on stderr
naming the file and column, with exit code 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))


def _columns(text: str, option: str) -> list[str]:
    cols = [c.strip() for c in text.split(",") if c.strip()]
    if not cols:
        raise _fail(f"{option} names no column")
    return cols


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def fit_report(
    data: Path,
    treatment: str,
    outcome: str,
    features: list[str],
    control: str | None = None,
    learner: str = "x",
    test_size: float = 0.3,
    seed: int = 0,
    figure: Path | None = None,
) -> dict[str, Any]:
    """Fit and score an uplift model on a file (what ``uplift fit`` prints).

    Parameters
    ----------
    data
        CSV/TSV/Parquet file, one row per person.
    treatment, outcome
        Arm and outcome columns.
    features
        Feature columns (text columns are categorical).
    control
        Control value of the arm column; default ``0`` when the arms are 0/1.
    learner
        ``"x"`` (X-learner) or ``"t"`` (T-learner).
    test_size
        Held-out share of rows, stratified by arm.
    seed
        Seed of the split and of LightGBM.
    figure
        Write the held-out Qini curves here (PNG/SVG/PDF).

    Returns
    -------
    dict
        JSON-ready report: sizes, per-treatment scores and the targeting summary.

    Raises
    ------
    ValueError
        Bad input; the message names the file and column.
    """
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    from autopersona.evaluation.ope import ips
    from autopersona.evaluation.uplift import TLearner, XLearner, evaluate_uplift, qini_figure
    from autopersona.models._input import read_table

    if learner not in ("x", "t"):
        raise ValueError(f"--learner {learner!r}: use x or t")
    if not 0 < test_size < 1:
        raise ValueError(f"--test-size {test_size}: use a share between 0 and 1")
    if treatment in features or outcome in features:
        raise ValueError("the treatment and outcome columns cannot also be features")
    df = read_table(data, [treatment, outcome, *features], text_columns=[treatment])
    arm = df[treatment]
    if arm.isna().any():
        row = int(np.flatnonzero(arm.isna().to_numpy())[0])
        raise ValueError(f"{data}: column {treatment!r}: row {row + 1} has no arm")
    arm = arm.astype(str)
    values = sorted(arm.unique())
    if control is None:
        if set(values) != {"0", "1"}:
            raise ValueError(
                f"{data}: column {treatment!r} has values {', '.join(values)}: "
                "give --control (the value of the untreated arm)"
            )
        control = "0"
    if control not in values:
        raise ValueError(
            f"{data}: column {treatment!r}: control value {control!r} not found "
            f"(values: {', '.join(values)})"
        )
    if len(values) < 2:
        raise ValueError(f"{data}: column {treatment!r} has only the control arm")
    y = pd.to_numeric(df[outcome], errors="coerce")
    bad = y.isna() & df[outcome].notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{data}: column {outcome!r}: row {row + 1} value {df[outcome].iloc[row]!r} "
            "is not a number"
        )
    if y.isna().any():
        row = int(np.flatnonzero(y.isna().to_numpy())[0])
        raise ValueError(f"{data}: column {outcome!r}: row {row + 1} is missing")
    X = df[features]
    idx_train, idx_test = train_test_split(
        np.arange(len(df)), test_size=test_size, random_state=seed, stratify=arm
    )
    model_cls = XLearner if learner == "x" else TLearner
    model = model_cls(control=control, seed=seed).fit(
        X.iloc[idx_train], arm.iloc[idx_train], y.iloc[idx_train]
    )
    X_te, arm_te, y_te = X.iloc[idx_test], arm.iloc[idx_test].to_numpy(), y.iloc[idx_test]
    scores = evaluate_uplift(y_te, model.predict(X_te), arm_te, control, model.treatments_)
    # targeting: each held-out person to the arm with the largest predicted uplift; its value
    # by IPS with the arms' shares as propensities (randomised assignment)
    best = model.best_treatment(X_te).astype(str)
    shares = pd.Series(arm_te).value_counts(normalize=True)
    propensity = pd.Series(arm_te).map(shares).to_numpy()
    targeted = ips(y_te.to_numpy(), propensity, (best == arm_te).astype(float), seed=seed)
    arm_means = pd.Series(y_te.to_numpy()).groupby(arm_te).mean()
    if figure is not None:
        fig = qini_figure(scores, title=f"Qini: {outcome} by {treatment} (held out)")
        fig.savefig(figure, dpi=120)
    return {
        "data": str(data),
        "learner": "X-learner" if learner == "x" else "T-learner",
        "treatment": treatment,
        "control": control,
        "outcome": outcome,
        "outcome_kind": "binary" if model.binary_ else "continuous",
        "features": features,
        "seed": seed,
        "n_train": len(idx_train),
        "n_test": len(idx_test),
        "treatments": [s.to_dict() for s in scores],
        "targeting": {
            "share_by_arm": {
                str(k): float(v) for k, v in pd.Series(best).value_counts(normalize=True).items()
            },
            "targeted_mean_outcome": targeted.to_dict(),
            "observed_mean_outcome_by_arm": {str(k): float(v) for k, v in arm_means.items()},
        },
        "figure": None if figure is None else str(figure),
    }


def register(app: typer.Typer) -> None:
    """Attach the ``uplift`` command group (``uplift fit``) to ``app``."""
    uplift_app = typer.Typer(
        help="Uplift models: who is moved by a treatment (T-/X-learner, Qini, AUUC).",
        no_args_is_help=True,
    )
    app.add_typer(uplift_app, name="uplift")

    @uplift_app.command("fit")
    def uplift_fit(
        data: Annotated[Path, typer.Option("--data", help="Experiment table (CSV or Parquet).")],
        treatment: Annotated[str, typer.Option("--treatment", help="Arm column.")],
        outcome: Annotated[str, typer.Option("--outcome", help="Outcome column (0/1 or amount).")],
        features: Annotated[
            str, typer.Option("--features", help="Comma-separated feature columns.")
        ],
        control: Annotated[
            str | None,
            typer.Option("--control", help="Control value of the arm column (default 0 for 0/1)."),
        ] = None,
        learner: Annotated[str, typer.Option("--learner", help="x (X-learner) or t.")] = "x",
        test_size: Annotated[float, typer.Option("--test-size", help="Held-out share.")] = 0.3,
        seed: Annotated[int, typer.Option("--seed", help="Seed of split and models.")] = 0,
        figure: Annotated[
            Path | None, typer.Option("--figure", help="Write the held-out Qini curves here.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Fit an uplift model and print each treatment's held-out Qini coefficient and AUUC."""
        from autopersona.models._input import InputError

        feats = _columns(features, "--features")
        try:
            report = fit_report(
                data, treatment, outcome, feats, control, learner, test_size, seed, figure
            )
        except InputError as exc:
            raise _fail(str(exc)) from None
        except ValueError as exc:
            msg = str(exc)
            raise _fail(msg if msg.startswith(str(data)) else f"{data}: {msg}") from None
        if as_json:
            _emit(report)
            return
        from rich.table import Table

        from autopersona.console import output_console

        t = Table(
            title=f"{report['learner']}: {outcome} by {treatment} vs {report['control']} "
            f"(train {report['n_train']:,}, test {report['n_test']:,})"
        )
        for col in ("treatment", "treated", "control", "observed uplift", "Qini", "AUUC"):
            t.add_column(col, justify="left" if col == "treatment" else "right")
        for s in report["treatments"]:

            def fmt(v: float | None) -> str:
                return "-" if v is None else f"{v:.4f}"

            t.add_row(
                str(s["treatment"]),
                f"{s['n_treated']:,}",
                f"{s['n_control']:,}",
                fmt(s["observed_uplift"]),
                fmt(s["qini_coefficient"]),
                fmt(s["auuc"]),
            )
        console = output_console()
        console.print(t)
        tgt = report["targeting"]
        v = tgt["targeted_mean_outcome"]
        console.print(
            f"targeting by predicted uplift: mean {outcome} {v['value']:.4f} "
            f"[{v['ci_low']:.4f}, {v['ci_high']:.4f}] vs by arm "
            + ", ".join(f"{k} {m:.4f}" for k, m in tgt["observed_mean_outcome_by_arm"].items())
        )
