"""CLI for the tag catalogue and profiles: ``autopersona tags …`` and ``autopersona profile …``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer


def _catalogue(folder: Path | None, pending: bool = False) -> Any:
    from autopersona.catalog import CatalogError
    from autopersona.tags.spec import load_catalogue

    try:
        cat = load_catalogue(folder, include_pending=pending)
    except CatalogError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    _warn(cat)
    return cat


def _warn(cat: Any) -> None:
    """Print the catalogue's warnings (file:line: message) on stderr."""
    for w in cat.warnings:
        typer.echo(f"warning: {w}", err=True)


_CATALOGUE_OPT = typer.Option(
    "--catalogue", "-c", help="Catalogue folder (default: the built-in one)."
)
_PENDING_OPT = typer.Option(
    "--pending", help="Include pending/ tags (waiting for features not in the dictionary yet)."
)


def register(app: typer.Typer) -> None:
    """Attach the ``tags`` and ``profile`` command groups."""
    tags_app = typer.Typer(help="The tag catalogue (L1–L4, commerce levels).", no_args_is_help=True)
    app.add_typer(tags_app, name="tags")
    profile_app = typer.Typer(help="Profiles: tag assignments with history.", no_args_is_help=True)
    app.add_typer(profile_app, name="profile")

    @tags_app.command("list")
    def list_cmd(
        catalogue: Annotated[Path | None, _CATALOGUE_OPT] = None,
        tier: Annotated[str | None, typer.Option(help="Only this tier, e.g. L2.")] = None,
        pending: Annotated[bool, _PENDING_OPT] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """List the tags: id, tier, category, method, cadence, values."""
        cat = _catalogue(catalogue, pending)
        rows = [t for t in cat.tags.values() if tier is None or t.tier == tier]
        rows.sort(key=lambda t: (t.tier, t.id))
        if as_json:
            sys.stdout.write(
                json.dumps(
                    [
                        {
                            "id": t.id,
                            "tier": t.tier,
                            "category": t.category,
                            "entity": t.entity,
                            "method": t.method,
                            "cadence": t.cadence,
                            "values": t.values,
                        }
                        for t in rows
                    ],
                    indent=2,
                )
                + "\n"
            )
            return
        from rich.table import Table

        from autopersona.console import output_console

        table = Table(title=f"Tag catalogue {cat.version} ({len(rows)} tags)")
        for h in ("id", "tier", "category", "entity", "method", "cadence", "values"):
            table.add_column(h)
        for t in rows:
            table.add_row(
                t.id,
                t.tier,
                t.category,
                t.entity,
                t.method,
                t.cadence,
                " / ".join(t.values) if t.values else "(open)",
            )
        output_console().print(table)

    @tags_app.command("show")
    def show_cmd(
        tag_id: Annotated[str, typer.Argument(help="Tag id, e.g. l1_vehicle_tier.")],
        catalogue: Annotated[Path | None, _CATALOGUE_OPT] = None,
        pending: Annotated[bool, _PENDING_OPT] = False,
    ) -> None:
        """Show one tag's full declaration (JSON)."""
        cat = _catalogue(catalogue, pending)
        if tag_id not in cat.tags:
            typer.echo(f"error: unknown tag {tag_id!r}", err=True)
            raise typer.Exit(2)
        t = cat.tags[tag_id]
        d = t.model_dump(mode="json", by_alias=True, exclude_none=True)
        d["declared_at"] = f"{t.file}:{t.line}"
        d["depends_on"] = cat.dependencies(tag_id)
        sys.stdout.write(json.dumps(d, indent=2, ensure_ascii=False) + "\n")

    @tags_app.command("validate")
    def validate_cmd(
        path: Annotated[Path, typer.Argument(help="A catalogue file or folder.")],
        catalogue: Annotated[
            Path | None,
            typer.Option(
                "--catalogue",
                "-c",
                help="Check a file together with this folder (default: built-in).",
            ),
        ] = None,
        pending: Annotated[bool, _PENDING_OPT] = False,
    ) -> None:
        """Validate a catalogue file (with the catalogue it joins) or a whole folder."""
        from autopersona.catalog import CatalogError
        from autopersona.tags.spec import load_catalogue

        try:
            if path.is_dir():
                cat = load_catalogue(path, include_pending=pending)
            else:
                cat = load_catalogue(catalogue, extra_files=[path], include_pending=pending)
        except CatalogError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        _warn(cat)
        n = len(cat.warnings)
        extra = f", {n} warning{'s' if n != 1 else ''}" if n else ""
        typer.echo(f"ok: {len(cat.tags)} tags, catalogue version {cat.version}{extra}")

    @profile_app.command("show")
    def profile_show_cmd(
        entity: Annotated[str, typer.Argument(help="VIN or customer id.")],
        as_of: Annotated[
            str | None, typer.Option("--as-of", help="Date or time (ISO), default: now.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
        store: Annotated[
            str | None,
            typer.Option(help="postgresql://… URL, or a DuckDB file (default: the warehouse)."),
        ] = None,
    ) -> None:
        """Show an entity's tags, as they are now or as they were at ``--as-of``."""
        import pandas as pd

        from autopersona.store.profiles import open_store, parse_as_of

        try:
            when = parse_as_of(as_of) if as_of else None
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        with open_store(store) as ps:
            df = ps.profile_show(entity, as_of=when)
        if as_json:
            recs = []
            for rec in df.to_dict("records"):
                rec["reasons"] = json.loads(rec["reasons"]) if rec.get("reasons") else None
                for k, v in rec.items():
                    if k != "reasons" and not isinstance(v, list | dict) and pd.isna(v):
                        rec[k] = None
                    elif hasattr(v, "isoformat"):
                        rec[k] = v.isoformat()
                recs.append(rec)
            sys.stdout.write(json.dumps(recs, indent=2, default=str, ensure_ascii=False) + "\n")
            return
        if df.empty:
            typer.echo(f"no tags for {entity}" + (f" as of {as_of}" if as_of else ""))
            return
        from rich.table import Table

        from autopersona.console import output_console

        table = Table(title=f"{entity}" + (f" as of {as_of}" if as_of else ""))
        for h in ("tag", "value", "score", "valid from", "valid to", "as of"):
            table.add_column(h)
        for rec in df.to_dict("records"):
            score, valid_to = rec.get("score"), rec.get("valid_to")
            table.add_row(
                str(rec["tag_id"]),
                str(rec["value"]),
                "" if pd.isna(score) else f"{float(score):.3g}",
                str(rec["valid_from"]),
                "" if pd.isna(valid_to) else str(valid_to),
                str(rec["as_of"]),
            )
        output_console().print(table)

    @profile_app.command("refresh")
    def profile_refresh_cmd(
        store: Annotated[
            str | None,
            typer.Option(help="postgresql://… URL, or a DuckDB file (default: the warehouse)."),
        ] = None,
        warehouse: Annotated[
            Path | None, typer.Option("--warehouse", "-w", help="DuckDB warehouse file.")
        ] = None,
        all_tags: Annotated[
            bool, typer.Option("--all", help="Recompute every tag, due or not.")
        ] = False,
        as_of: Annotated[str | None, typer.Option("--as-of", help="Point in time (ISO).")] = None,
        catalogue: Annotated[Path | None, _CATALOGUE_OPT] = None,
        pending: Annotated[bool, _PENDING_OPT] = False,
    ) -> None:
        """Recompute the tags due on their cadence and store the new values."""
        from autopersona.settings import get_settings
        from autopersona.store.profiles import open_store, parse_as_of, refresh
        from autopersona.store.warehouse import Warehouse

        cat = _catalogue(catalogue, pending)
        try:
            when = parse_as_of(as_of) if as_of else None
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        wh_path = warehouse or get_settings().warehouse
        with Warehouse(wh_path) as wh, open_store(store, warehouse=wh) as ps:
            try:
                rep = refresh(wh, ps, cat, as_of=when, due_only=not all_tags)
            except ValueError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
        typer.echo(
            f"refreshed {len(rep.refreshed)} tag(s) ({', '.join(rep.refreshed) or '-'}); "
            f"{rep.assignments} assignment(s), {rep.changed} changed; "
            f"skipped {len(rep.skipped)} not due"
        )
        for tid, why in sorted(rep.notes.items()):
            typer.echo(f"  no assignments for {tid}: {why}")

    @tags_app.command("models")
    def models_cmd(
        warehouse: Annotated[
            Path | None, typer.Option("--warehouse", "-w", help="DuckDB warehouse file.")
        ] = None,
        tag: Annotated[str | None, typer.Option(help="Only this tag.")] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Stored model versions and cluster fits with their validation metrics."""
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse
        from autopersona.tags.model import list_models

        path = Path(warehouse or get_settings().warehouse)
        if not path.exists():
            typer.echo(f"error: no warehouse at {path}", err=True)
            raise typer.Exit(1)
        with Warehouse(path, read_only=True) as wh:
            df = list_models(wh)
        if tag is not None:
            df = df[df["tag_id"] == tag]
        recs: list[dict[str, Any]] = []
        for r in df.to_dict(orient="records"):
            raw = r["metrics"]
            metrics: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else dict(raw)
            metrics.pop("candidates", None)
            recs.append(
                {
                    "tag_id": str(r["tag_id"]),
                    "version": str(r["version"]),
                    "method": str(r["method"]),
                    "algorithm": str(r["algorithm"]),
                    "as_of": str(r["as_of"]),
                    "trained_at": str(r["trained_at"]),
                    "metrics": metrics,
                }
            )
        if as_json:
            sys.stdout.write(json.dumps(recs, indent=2) + "\n")
            return
        if not recs:
            typer.echo("no stored models")
            return
        from rich.table import Table

        from autopersona.console import output_console

        table = Table("tag", "version", "method", "algorithm", "as of", "metrics")
        for rec in recs:
            m = rec["metrics"]
            shown = ", ".join(
                f"{k}={m[k]:.3g}" if isinstance(m[k], float) else f"{k}={m[k]}"
                for k in (
                    "auc",
                    "brier",
                    "n_train",
                    "n_valid",
                    "label_rate_valid",
                    "k",
                    "silhouette",
                    "calinski_harabasz",
                )
                if k in m
            )
            table.add_row(
                rec["tag_id"], rec["version"], rec["method"], rec["algorithm"], rec["as_of"], shown
            )
        output_console().print(table)
