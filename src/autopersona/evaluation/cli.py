"""Analyst commands of the feedback stage: ``experiment ...`` and ``report``.

Other evaluation modules add their own command groups here through ``_EXTRA``: each entry
is a ``register(app)`` function imported lazily by name, so ``--help`` stays instant.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]

# (module, function) pairs whose ``register(app)`` adds further evaluation commands
# (uplift, bandits, attribution, feedback intake). A module that does not exist yet is skipped.
_EXTRA: tuple[tuple[str, str], ...] = (
    ("autopersona.evaluation.uplift_cli", "register"),
    ("autopersona.evaluation.bandit_cli", "register"),
    ("autopersona.evaluation.attribution_cli", "register"),
    ("autopersona.delivery.feedback_cli", "register"),
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def _emit(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str, allow_nan=False))


def _print_analysis(res: dict[str, Any]) -> None:
    from rich.table import Table

    from autopersona.console import output_console

    console = output_console()
    srm = res["srm"]
    sizes = ", ".join(f"{a['arm']} {a['n']:,}" for a in res["arms"])
    flag = "[red]MISMATCH[/]" if srm["mismatch"] else "ok"
    console.print(f"{res['source']}: {sizes}; sample ratio p = {srm['p_value']:.3g} ({flag})")
    for out in res["outcomes"]:
        rate = out["kind"] == "rate"
        t = Table(title=f"{out['outcome']} ({out['kind']}) vs {res['control']}")
        for col in ("arm", "n", "rate" if rate else "mean", "diff", "CI", "p", "p adj."):
            t.add_column(col, justify="left" if col == "arm" else "right")
        comps = {c["arm"]: c for c in out["comparisons"]}
        for a in out["arms"]:
            c = comps.get(a["arm"])
            level = a["rate"] if rate else a["mean"]
            row = [a["arm"], f"{a['n']:,}", f"{level:.6f}"]
            if c:
                row += [
                    f"{c['diff']:+.6f}",
                    f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]",
                    f"{c['p_value']:.3g}",
                    f"{c['p_adjusted']:.3g}",
                ]
            else:
                row += ["control", "", "", ""]
            t.add_row(*row)
        console.print(t)
        if "cuped" in out:
            cu = out["cuped"]
            parts = "; ".join(
                f"{c['arm']} {c['diff']:+.6f} [{c['ci_low']:+.6f}, {c['ci_high']:+.6f}]"
                for c in cu["comparisons"]
            )
            console.print(
                f"  CUPED (theta {cu['theta']:.4g}, variance -{cu['variance_reduction']:.1%}): "
                + parts
            )


def register(app: typer.Typer) -> None:
    """Attach ``experiment``, ``report`` and the other evaluation groups to ``app``."""
    experiment_app = typer.Typer(
        help="A/B tests: rates, means, intervals, SRM, CUPED, corrections.",
        no_args_is_help=True,
    )
    app.add_typer(experiment_app, name="experiment")

    @experiment_app.command("analyze")
    def experiment_analyze(
        data: Annotated[Path, typer.Option("--data", help="Experiment table (CSV or Parquet).")],
        arm: Annotated[str, typer.Option("--arm", help="Arm column.")],
        control: Annotated[str, typer.Option("--control", help="The control arm's value.")],
        outcome: Annotated[
            str,
            typer.Option(
                "--outcome",
                help="Outcome column(s), comma-separated; name:rate or name:mean forces the kind.",
            ),
        ],
        covariate: Annotated[
            str | None, typer.Option("--covariate", help="Pre-period covariate for CUPED.")
        ] = None,
        alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
        correction: Annotated[
            str, typer.Option("--correction", help="holm, bh or none (over all comparisons).")
        ] = "holm",
        ci: Annotated[str, typer.Option("--ci", help="Rate interval: wald or newcomb.")] = "wald",
        planned: Annotated[
            str | None,
            typer.Option(
                "--planned", help="Planned arm shares, control first then sorted arms: 1,1,1."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Per-arm rates or means and differences against the control, with CIs and p-values."""
        from autopersona.evaluation.analyze import analyze_file
        from autopersona.models._input import InputError

        if correction not in ("holm", "bh", "none"):
            raise _fail(f"--correction {correction!r}: use holm, bh or none")
        if ci not in ("wald", "newcomb"):
            raise _fail(f"--ci {ci!r}: use wald or newcomb")
        shares = None
        if planned:
            try:
                shares = [float(v) for v in planned.split(",")]
            except ValueError:
                raise _fail(f"--planned {planned!r}: give numbers such as 1,1,1") from None
        try:
            res = analyze_file(
                data,
                arm=arm,
                control=control,
                outcomes=outcome,
                covariate=covariate,
                alpha=alpha,
                correction=correction,
                ci=ci,
                planned=shares,
            )
        except (InputError, ValueError) as exc:
            raise _fail(str(exc)) from None
        if as_json:
            _emit(res)
            return
        _print_analysis(res)

    @experiment_app.command("sequential")
    def experiment_sequential(
        data: Annotated[Path, typer.Option("--data", help="Experiment table (CSV or Parquet).")],
        arm: Annotated[str, typer.Option("--arm", help="Arm column.")],
        control: Annotated[str, typer.Option("--control", help="The control arm's value.")],
        outcome: Annotated[str, typer.Option("--outcome", help="Outcome column (0/1 or number).")],
        time_col: Annotated[
            str | None, typer.Option("--time", help="Order rows by this column (else file order).")
        ] = None,
        looks: Annotated[int, typer.Option("--looks", help="Number of interim looks.")] = 20,
        tau: Annotated[
            float | None, typer.Option("--tau", help="Mixing sd (default: 0.1 x outcome sd).")
        ] = None,
        alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Always-valid p-values and confidence sequences (mSPRT) over interim looks."""
        from autopersona.evaluation.analyze import sequential
        from autopersona.models._input import InputError, read_table

        cols = [arm, outcome, *([time_col] if time_col else [])]
        try:
            df = read_table(data, cols, text_columns=[arm])
            res = sequential(
                df, arm=arm, control=control, outcome=outcome, time=time_col, looks=looks,
                tau=tau, alpha=alpha, source=str(data),
            )  # fmt: skip
        except (InputError, ValueError) as exc:
            raise _fail(str(exc)) from None
        if as_json:
            _emit(res)
            return
        for a in res["arms"]:
            last = a["looks"][-1]
            when = (
                f"significant from row {a['rejected_at_rows']:,}"
                if a["rejected_at_rows"] is not None
                else "not significant yet"
            )
            typer.echo(
                f"{a['arm']} vs {res['control']}: {last['estimate']:+.6g} "
                f"[{last['ci_low']:+.6g}, {last['ci_high']:+.6g}] after {last['rows']:,} rows, "
                f"always-valid p = {a['final_p_value']:.3g} ({when})"
            )

    @experiment_app.command("power")
    def experiment_power(
        base_rate: Annotated[
            float, typer.Option("--base-rate", help="Control conversion rate, e.g. 0.05.")
        ],
        lift: Annotated[
            float | None,
            typer.Option("--lift", help="Absolute lift to detect: prints the units per arm."),
        ] = None,
        n: Annotated[
            float | None,
            typer.Option("--n", help="Units in the control arm: prints the detectable lift."),
        ] = None,
        alpha: Annotated[float, typer.Option("--alpha", help="Two-sided level.")] = 0.05,
        power: Annotated[float, typer.Option("--power", help="Target power.")] = 0.8,
        ratio: Annotated[float, typer.Option("--ratio", help="Treatment units per control.")] = 1.0,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Sample size for a lift, or the minimum detectable lift for a sample (z-test)."""
        import math

        from autopersona.evaluation import experiment as ex

        if (lift is None) == (n is None):
            raise _fail("give exactly one of --lift (-> sample size) or --n (-> detectable lift)")
        if not 0 < base_rate < 1:
            raise _fail(f"--base-rate {base_rate}: must be in (0, 1)")
        if ratio <= 0 or not 0 < alpha < power < 1:
            raise _fail("need --ratio > 0 and 0 < --alpha < --power < 1")
        sd = math.sqrt(base_rate * (1 - base_rate))
        try:
            if lift is not None:
                n_c = ex.sample_size(lift / sd, alpha, power, ratio)
                out = {"base_rate": base_rate, "lift": lift, "n_control": math.ceil(n_c),
                       "n_treatment": math.ceil(n_c * ratio)}  # fmt: skip
            else:
                assert n is not None
                out = {"base_rate": base_rate, "n_control": n, "n_treatment": n * ratio,
                       "mde": ex.mde_proportion(base_rate, n, alpha, power, ratio)}  # fmt: skip
        except ValueError as exc:
            raise _fail(str(exc)) from None
        out |= {"alpha": alpha, "power": power, "ratio": ratio}
        if as_json:
            _emit(out)
        elif lift is not None:
            typer.echo(
                f"{out['n_control']:,} control and {out['n_treatment']:,} treatment units detect "
                f"{lift:+.4g} on {base_rate:.4g} with power {power:.0%} at alpha {alpha:g}"
            )
        else:
            typer.echo(
                f"{n:,.0f} control units detect a lift of {out['mde']:+.4g} on {base_rate:.4g} "
                f"with power {power:.0%} at alpha {alpha:g}"
            )

    @app.command("report")
    def report_cmd(
        out: Annotated[Path, typer.Option("--out", help="HTML file to write.")],
        warehouse: Annotated[
            Path | None, typer.Option("--warehouse", "-w", help="DuckDB warehouse file.")
        ] = None,
        control: Annotated[
            str, typer.Option("--control", help="Control arm name(s), comma-separated.")
        ] = "holdout,control",
        title: Annotated[str, typer.Option(help="Page title.")] = "autopersona · feedback report",
    ) -> None:
        """Write a self-contained HTML report: funnel, lift with CIs, uplift and bandit plots."""
        from autopersona.evaluation.report import build_report
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        wh_path = warehouse or get_settings().warehouse
        if not Path(wh_path).is_file():
            raise _fail(f"{wh_path}: no such warehouse file")
        with Warehouse(wh_path, read_only=True) as wh:
            rep = build_report(
                wh, title=title, control=[c.strip() for c in control.split(",") if c.strip()]
            )
        rep.write(out)
        typer.echo(f"wrote {out} ({out.stat().st_size / 1024:,.0f} KiB)")

    for module, func in _EXTRA:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        getattr(mod, func)(app)
