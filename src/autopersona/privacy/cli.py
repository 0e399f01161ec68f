"""CLI for privacy: ``autopersona privacy report|budget|erase|retention|…``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

_WH_OPT = typer.Option("--warehouse", "-w", help="DuckDB warehouse file (default: settings).")
_STORE_OPT = typer.Option(
    "--store", help="Profile store: postgresql://… URL or a DuckDB file (default: the warehouse)."
)
_JSON_OPT = typer.Option("--json", help="Machine-readable output.")


def _out(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def _fail(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


def _wh_path(warehouse: Path | None) -> Path:
    from autopersona.settings import get_settings

    return warehouse or get_settings().warehouse


def register(app: typer.Typer) -> None:
    """Attach the ``privacy`` command group."""
    privacy_app = typer.Typer(
        help="Privacy: DP reports and budgets, erasure, retention.", no_args_is_help=True
    )
    app.add_typer(privacy_app, name="privacy")

    @privacy_app.command("report")
    def report_cmd(
        tag: Annotated[str, typer.Option("--tag", help="Tag whose distribution to release.")],
        epsilon: Annotated[float, typer.Option("--epsilon", "-e", help="Epsilon of this report.")],
        dataset: Annotated[
            str, typer.Option("--dataset", help="Dataset whose budget pays.")
        ] = "profiles",
        consented_only: Annotated[
            bool,
            typer.Option(
                "--consented-only/--everyone",
                help="Count only people (and VINs) consented for analytics.",
            ),
        ] = True,
        warehouse: Annotated[Path | None, _WH_OPT] = None,
        store: Annotated[str | None, _STORE_OPT] = None,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Release a tag's distribution with epsilon-differential privacy (charged to the budget)."""
        from autopersona.privacy.consent import consented
        from autopersona.privacy.dp import BudgetExceeded, BudgetLedger, tag_distribution_report
        from autopersona.store.profiles import open_store
        from autopersona.store.warehouse import Warehouse

        with Warehouse(_wh_path(warehouse)) as wh, open_store(store, warehouse=wh) as ps:
            ledger = BudgetLedger(wh.con)
            allowed = None
            if consented_only:
                allowed = (
                    consented(wh, "analytics", entity="person")
                    | consented(wh, "analytics", entity="account")
                    | consented(wh, "analytics", entity="vin")
                )
            try:
                rel = tag_distribution_report(
                    ps, tag, epsilon, ledger, dataset=dataset, allowed_entities=allowed
                )
            except BudgetExceeded as exc:
                raise _fail(f"privacy budget spent: {exc}", 3) from None
            except (KeyError, ValueError) as exc:
                raise _fail(str(exc.args[0]) if exc.args else str(exc)) from None
            left = ledger.remaining(dataset)
        if as_json:
            _out({**rel.to_dict(), "remaining_epsilon": left})
            return
        from rich.table import Table

        from autopersona.console import output_console

        t = Table(
            title=f"{tag}: DP counts (epsilon {rel.epsilon:g}, noise sd {rel.std:.2f}); "
            f"dataset {dataset!r} has {left:g} left"
        )
        t.add_column("value")
        t.add_column("noisy count", justify="right")
        for k, v in rel.counts.items():
            t.add_row(k, str(v))
        output_console().print(t)

    @privacy_app.command("budget")
    def budget_cmd(
        dataset: Annotated[str | None, typer.Option("--dataset", help="Only this dataset.")] = None,
        set_to: Annotated[
            float | None, typer.Option("--set", help="Set the dataset's total epsilon.")
        ] = None,
        warehouse: Annotated[Path | None, _WH_OPT] = None,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Show privacy budgets (total, spent, left, releases), or set one with --set."""
        from autopersona.privacy.dp import BudgetExceeded, BudgetLedger
        from autopersona.store.warehouse import Warehouse

        with Warehouse(_wh_path(warehouse)) as wh:
            ledger = BudgetLedger(wh.con)
            if set_to is not None:
                if dataset is None:
                    raise _fail("--set needs --dataset")
                try:
                    ledger.set_budget(dataset, set_to)
                except (BudgetExceeded, ValueError) as exc:
                    raise _fail(str(exc)) from None
            names = [dataset] if dataset else ledger.datasets()
            rows = [
                {
                    "dataset": d,
                    "budget": ledger.budget(d),
                    "spent": ledger.spent(d),
                    "remaining": ledger.remaining(d),
                    "releases": len(ledger.entries(d)),
                }
                for d in names
            ]
        if as_json:
            _out(rows)
            return
        from rich.table import Table

        from autopersona.console import output_console

        t = Table(title="Privacy budgets (epsilon, sequential composition)")
        for h in ("dataset", "budget", "spent", "remaining", "releases"):
            t.add_column(h)
        for r in rows:
            t.add_row(*(f"{v:g}" if isinstance(v, float) else str(v) for v in r.values()))
        output_console().print(t)

    @privacy_app.command("pseudonymise")
    def pseudonymise_cmd(
        vault: Annotated[
            Path, typer.Option("--vault", help="Re-identification vault (a separate DuckDB file).")
        ],
        warehouse: Annotated[Path | None, _WH_OPT] = None,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Replace clear VINs, phones and e-mails in every table by keyed-HMAC pseudonyms."""
        from autopersona.privacy.pseudo import (
            InsecureKeyError,
            Vault,
            from_settings,
            pseudonymise_warehouse,
        )
        from autopersona.store.warehouse import Warehouse

        try:
            v = Vault(vault)
            p = from_settings(v)
        except InsecureKeyError as exc:
            raise _fail(str(exc), 3) from None
        try:
            with Warehouse(_wh_path(warehouse)) as wh:
                changed = pseudonymise_warehouse(wh, p)
        finally:
            v.close()
        if as_json:
            _out(changed)
        else:
            for k, n in changed.items():
                typer.echo(f"{k}: {n} value(s) pseudonymised")

    @privacy_app.command("reidentify")
    def reidentify_cmd(
        pseudonym: Annotated[str, typer.Argument(help="A pseudonym (pv_…, pp_…, pe_…).")],
        vault: Annotated[Path, typer.Option("--vault", help="The re-identification vault.")],
        actor: Annotated[str, typer.Option("--actor", help="Who reads (audited).")],
        purpose: Annotated[str, typer.Option("--purpose", help="Why (audited).")],
    ) -> None:
        """Look up the clear value of a pseudonym; every read is audited in the vault."""
        from autopersona.privacy.pseudo import Vault

        v = Vault(vault)
        try:
            value = v.reidentify(pseudonym, actor=actor, purpose=purpose)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        finally:
            v.close()
        if value is None:
            raise _fail(f"no mapping for {pseudonym!r}", 1)
        typer.echo(value)

    @privacy_app.command("erase")
    def erase_cmd(
        person: Annotated[
            str, typer.Argument(help="Person id, account id, VIN, e-mail or phone to erase.")
        ],
        request_id: Annotated[
            str, typer.Option("--request-id", help="The erasure request (stored only hashed).")
        ],
        warehouse: Annotated[Path | None, _WH_OPT] = None,
        store: Annotated[
            list[str] | None,
            typer.Option(
                "--store",
                help="Also erase from this PostgreSQL store (postgresql://…?schema=…); repeatable.",
            ),
        ] = None,
        vault: Annotated[
            Path | None, typer.Option("--vault", help="Re-identification vault to purge.")
        ] = None,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Erase a person (all linked identifiers) from every table of every backend, verified."""
        from autopersona.privacy.erase import Backend, PostgresBackend, erase_person
        from autopersona.privacy.pseudo import Vault
        from autopersona.store.profiles import PostgresProfileStore
        from autopersona.store.warehouse import Warehouse

        extra: list[Backend] = []
        stores = []
        for url in store or []:
            ps = PostgresProfileStore(url)
            stores.append(ps)
            extra.append(PostgresBackend(ps.con, ps.schema))
        v = Vault(vault) if vault else None
        try:
            with Warehouse(_wh_path(warehouse)) as wh:
                rep = erase_person(wh, person, request_id, extra=extra, vault=v)
        except (ValueError, RuntimeError) as exc:
            raise _fail(str(exc), 1) from None
        finally:
            for ps in stores:
                ps.close()
            if v is not None:
                v.close()
        if as_json:
            _out(rep.to_dict())
            return
        for backend, counts in rep.deleted.items():
            typer.echo(
                f"{backend}: {sum(counts.values())} row(s) deleted, verified "
                f"{'yes' if rep.verified[backend] else 'NO'}"
            )
            for t, n in sorted(counts.items()):
                typer.echo(f"  {t}: {n}")
        if rep.shared_vins_kept:
            typer.echo(f"kept {rep.shared_vins_kept} vehicle(s) shared with other people")

    @privacy_app.command("retention")
    def retention_cmd(
        dry_run: Annotated[bool, typer.Option("--dry-run", help="Count only.")] = False,
        warehouse: Annotated[Path | None, _WH_OPT] = None,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Delete rows older than each table's retention period."""
        from autopersona.privacy.erase import enforce_retention
        from autopersona.store.warehouse import Warehouse

        with Warehouse(_wh_path(warehouse)) as wh:
            out = enforce_retention(wh, dry_run=dry_run)
        if as_json:
            _out(out)
            return
        for t, n in out.items():
            typer.echo(f"{t}: {n}" + (" (dry run)" if dry_run and isinstance(n, int) else ""))

    @privacy_app.command("federated")
    def federated_cmd(
        people: Annotated[int, typer.Option("--people", help="Simulated population.")] = 2000,
        seed: Annotated[int, typer.Option("--seed", help="Simulation seed.")] = 0,
        rounds: Annotated[int, typer.Option("--rounds", help="Block-Newton rounds.")] = 8,
        mode: Annotated[
            str, typer.Option("--mode", help="inprocess, or simulation (Flower + Ray).")
        ] = "inprocess",
        folder: Annotated[
            Path | None, typer.Option("--folder", help="Where the parties' data go (temp).")
        ] = None,
        gradient_noise: Annotated[
            float,
            typer.Option(
                "--gradient-noise", min=0.0, help="Std of Gaussian noise on the sent gradients."
            ),
        ] = 0.0,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Train the UBI-risk model across four simulated parties; compare with central training."""
        import tempfile

        from autopersona.privacy.federated import (
            central_baseline,
            make_parties,
            run_in_process,
            simulate_flower,
        )

        if mode not in ("inprocess", "simulation"):
            raise _fail(f"unknown mode {mode!r}; expected inprocess or simulation")
        with tempfile.TemporaryDirectory() as tmp:
            where = make_parties((folder or Path(tmp)) / "parties", n=people, seed=seed)
            run = run_in_process if mode == "inprocess" else simulate_flower
            fed = run(where, newton_rounds=rounds, gradient_noise=gradient_noise)
            central = central_baseline(where, fed.train_ids, fed.test_ids)
        singles = {k: v for k, v in central.items() if k != "pooled"}
        out: dict[str, Any] = {
            "mode": mode,
            "people": people,
            "intersection": fed.intersection,
            "train_rows": fed.train_rows,
            "test_rows": fed.test_rows,
            "rounds": fed.rounds,
            "auc_federated": fed.auc_test,
            "auc_central": central["pooled"],
            "auc_gap": fed.auc_test - central["pooled"],
            "auc_single_party": singles,
            "gradient_noise": gradient_noise,
        }
        if as_json:
            _out(out)
            return
        typer.echo(
            f"{fed.intersection} people shared by all four parties and consenting to partner "
            f"sharing at each (PSI); "
            f"train {fed.train_rows}, test {fed.test_rows}, {fed.rounds} rounds ({mode})"
        )
        typer.echo(
            f"test AUC: federated {fed.auc_test:.4f}, central (pooled) {central['pooled']:.4f}, "
            f"gap {fed.auc_test - central['pooled']:+.4f}"
        )
        for k, v in singles.items():
            typer.echo(f"  {k} alone: {v:.4f}")

    @privacy_app.command("consent")
    def consent_cmd(
        person: Annotated[str, typer.Argument(help="Person id or account id.")],
        at: Annotated[
            str | None, typer.Option("--at", help="ISO date or time (default: now).")
        ] = None,
        warehouse: Annotated[Path | None, _WH_OPT] = None,
        as_json: Annotated[bool, _JSON_OPT] = False,
    ) -> None:
        """Show a person's consent per purpose and channel at a time, and its history."""
        from autopersona.privacy.consent import CHANNELS, PURPOSES, current_consent, history
        from autopersona.store.profiles import parse_as_of
        from autopersona.store.warehouse import Warehouse

        try:
            when = parse_as_of(at) if at else None
        except ValueError as exc:
            raise _fail(str(exc)) from None
        with Warehouse(_wh_path(warehouse)) as wh:
            state = {
                p: {c: current_consent(wh, person, p, c, when) for c in CHANNELS} for p in PURPOSES
            }
            hist = history(wh, person)
        if as_json:
            _out(
                {"person": person, "at": when, "consent": state, "history": hist.to_dict("records")}
            )
            return
        for p, chans in state.items():
            yes = [c for c, ok in chans.items() if ok]
            typer.echo(f"{p}: {', '.join(yes) if yes else 'no consent'}")
        typer.echo(f"{len(hist)} decision(s) in the history")
