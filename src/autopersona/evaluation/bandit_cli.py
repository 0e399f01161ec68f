"""``autopersona bandit ...``: off-policy evaluation of a logged file, and a bandit simulator.

* ``bandit evaluate`` estimates a target policy's mean reward (IPS, SNIPS, doubly robust,
  with intervals; :mod:`autopersona.evaluation.ope`) from logged decisions with
  propensities. The target is ``uniform`` or a file, row-aligned with the log, with one
  probability column per action.
* ``bandit simulate`` plays Thompson sampling (or uniform allocation) against Bernoulli
  offers and writes the log with propensities — input for ``bandit evaluate``.

Bad input (missing file or column, a propensity outside (0, 1], probabilities that do not
sum to 1) is reported on stderr naming the file, row and column, with exit code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))


def _whole_table(path: Path) -> Any:
    """Every column of a CSV/TSV/Parquet file (errors name the file)."""
    import pandas as pd

    from autopersona.models._input import InputError, read_table

    if not path.is_file():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            names = list(pq.read_schema(path).names)
        else:
            sep = "\t" if suffix == ".tsv" else ","
            names = [str(c) for c in pd.read_csv(path, sep=sep, nrows=0).columns]
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: cannot be read: {exc}") from None
    return read_table(path, names)


def evaluate_report(
    logged: Path,
    action: str,
    reward: str,
    propensity: str,
    policy: str,
    context: list[str],
    ci: str = "normal",
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """What ``bandit evaluate`` prints: IPS, SNIPS and DR estimates of the target policy.

    Parameters
    ----------
    logged
        Logged decisions (CSV/TSV/Parquet).
    action, reward, propensity
        Column names in ``logged``.
    policy
        ``"uniform"`` or the path of a per-row action probability table.
    context
        Context columns for the DR reward model.
    ci, level, n_boot, seed
        Interval method and its settings.

    Returns
    -------
    dict
        JSON-ready report.

    Raises
    ------
    ValueError
        Bad input; the message names the file, row or column.
    """
    from autopersona.evaluation.ope import evaluate_policy
    from autopersona.models._input import read_table

    if ci not in ("normal", "bootstrap"):
        raise ValueError(f"--ci {ci!r}: use normal or bootstrap")
    df = read_table(logged, [action, reward, propensity, *context], text_columns=[action])
    target: Any = "uniform"
    if policy != "uniform":
        target = _whole_table(Path(policy))
        target.columns = [str(c) for c in target.columns]
    try:
        res = evaluate_policy(
            df,
            action,
            reward,
            propensity,
            target,
            context,
            level=level,
            ci=ci,  # type: ignore[arg-type]
            n_boot=n_boot,
            seed=seed,
        )
    except ValueError as exc:
        msg = str(exc)
        where = policy if msg.startswith("policy") and policy != "uniform" else logged
        raise ValueError(f"{where}: {msg}") from None
    return {
        "logged": str(logged),
        "policy": policy,
        "n": res["n"],
        "actions": res["actions"],
        "logged_mean_reward": res["logged_mean_reward"],
        "reward_model": res["reward_model"],
        "estimates": [e.to_dict() for e in res["estimates"]],
    }


def _parse_arms(text: str) -> dict[str, float]:
    arms: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        try:
            p = float(value)
        except ValueError:
            p = -1.0
        if not sep or not name.strip() or not 0 <= p <= 1:
            raise _fail(f"--arms {part!r}: write NAME=PROBABILITY with a probability in [0, 1]")
        arms[name.strip()] = p
    if len(arms) < 2:
        raise _fail("--arms needs at least two arms")
    return arms


def register(app: typer.Typer) -> None:
    """Attach the ``bandit`` command group (``evaluate``, ``simulate``) to ``app``."""
    bandit_app = typer.Typer(
        help="Bandits for offers: off-policy evaluation from logs, and a simulator.",
        no_args_is_help=True,
    )
    app.add_typer(bandit_app, name="bandit")

    @bandit_app.command("evaluate")
    def bandit_evaluate(
        logged: Annotated[Path, typer.Option("--logged", help="Logged decisions (CSV/Parquet).")],
        action: Annotated[str, typer.Option("--action", help="Action (arm) column.")],
        reward: Annotated[str, typer.Option("--reward", help="Reward column.")],
        propensity: Annotated[
            str, typer.Option("--propensity", help="Logging probability of the action.")
        ],
        policy: Annotated[
            str,
            typer.Option(
                "--policy",
                help="uniform, or a file with one probability column per action, row-aligned.",
            ),
        ] = "uniform",
        context: Annotated[
            str | None,
            typer.Option("--context", help="Comma-separated context columns (DR reward model)."),
        ] = None,
        ci: Annotated[str, typer.Option("--ci", help="normal or bootstrap.")] = "normal",
        level: Annotated[float, typer.Option("--level", help="Confidence level.")] = 0.95,
        n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 1000,
        seed: Annotated[int, typer.Option("--seed", help="Seed (bootstrap, folds).")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Estimate a target policy's mean reward from logged data: IPS, SNIPS, DR with CIs."""
        ctx = [c.strip() for c in (context or "").split(",") if c.strip()]
        try:
            report = evaluate_report(
                logged, action, reward, propensity, policy, ctx, ci, level, n_boot, seed
            )
        except ValueError as exc:  # InputError included
            msg = str(exc)
            raise _fail(
                msg if msg.startswith((str(logged), policy)) else f"{logged}: {msg}"
            ) from None
        if as_json:
            _emit(report)
            return
        from rich.table import Table

        from autopersona.console import output_console

        t = Table(
            title=f"{policy} policy on {report['n']:,} logged rows "
            f"(logged mean reward {report['logged_mean_reward']:.4f})"
        )
        for col in ("estimator", "value", "se", f"{level:.0%} CI"):
            t.add_column(col, justify="left" if col == "estimator" else "right")
        for e in report["estimates"]:
            if e["value"] is None:
                t.add_row(e["estimator"], "-", "-", "-")
                continue
            t.add_row(
                e["estimator"].upper(),
                f"{e['value']:.4f}",
                f"{e['se']:.4f}",
                f"[{e['ci_low']:.4f}, {e['ci_high']:.4f}]",
            )
        output_console().print(t)

    @bandit_app.command("simulate")
    def bandit_simulate(
        arms: Annotated[
            str, typer.Option("--arms", help="Offers and true rates: a=0.05,b=0.1,...")
        ],
        rounds: Annotated[int, typer.Option("--rounds", help="Sends to simulate.")] = 2000,
        policy: Annotated[
            str, typer.Option("--policy", help="thompson or uniform (logging policy).")
        ] = "thompson",
        seed: Annotated[int, typer.Option("--seed", help="Seed of policy and rewards.")] = 0,
        out: Annotated[
            Path | None, typer.Option("--out", help="Write the log (CSV or Parquet) here.")
        ] = None,
        figure: Annotated[
            Path | None, typer.Option("--figure", help="Write the allocation plot here.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Play a bandit against Bernoulli offers; log arms, rewards and propensities."""
        from autopersona.evaluation.bandit import (
            BetaThompson,
            Decision,
            allocation_figure,
            simulate,
        )

        means = _parse_arms(arms)
        if rounds < 1:
            raise _fail("--rounds must be at least 1")
        names = list(means)
        if policy == "thompson":
            pol: Any = BetaThompson(names, seed=seed, n_mc=500)
        elif policy == "uniform":
            import numpy as np

            class _Uniform:
                def __init__(self) -> None:
                    self.arms = names
                    self.rng = np.random.default_rng(seed)

                def select(self, context: Any = None) -> Decision:
                    return Decision(str(self.rng.choice(names)), 1.0 / len(names))

                def update(self, arm: str, reward: float, context: Any = None) -> None:
                    return None

                def to_dict(self) -> dict[str, Any]:
                    return {"kind": "uniform", "arms": names}

            pol = _Uniform()
        else:
            raise _fail(f"--policy {policy!r}: use thompson or uniform")
        log = simulate(pol, means, rounds, seed=seed + 1)
        if out is not None:
            if out.suffix.lower() in (".parquet", ".pq"):
                log.to_parquet(out, index=False)
            else:
                log.to_csv(out, index=False)
        if figure is not None:
            allocation_figure(log, title=f"{policy} allocation").savefig(figure, dpi=120)
        pulls = log["arm"].value_counts()
        report: dict[str, Any] = {
            "policy": policy,
            "rounds": rounds,
            "seed": seed,
            "true_rates": means,
            "pulls": {a: int(pulls.get(a, 0)) for a in names},
            "total_reward": float(log["reward"].sum()),
            "expected_regret": float(log["regret"].sum()),
            "out": None if out is None else str(out),
            "figure": None if figure is None else str(figure),
        }
        if as_json:
            _emit(report)
            return
        typer.echo(
            f"{policy}: {rounds} sends, reward {report['total_reward']:.0f}, "
            f"expected regret {report['expected_regret']:.1f}; pulls "
            + ", ".join(f"{a} {n}" for a, n in report["pulls"].items())
        )
