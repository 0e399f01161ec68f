"""CLI for identity linkage: ``autopersona identity link`` and ``autopersona identity show``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["person_summary", "register"]


def person_summary(wh: Any, key: str) -> list[dict[str, Any]]:
    """The persons behind an account id or a VIN, with their accounts.

    Parameters
    ----------
    wh
        Warehouse on which ``identity link`` has run.
    key
        An account id, or a VIN (matched after normalisation, on the person's VINs and on
        the accounts' own VIN field; a clear VIN also by its pseudonym when
        pseudonymisation is on, and a pseudonym as it is).

    Returns
    -------
    list of dict
        One dict per person: ``person_id``, ``vins``, ``sources``, ``account_count``,
        ``first_seen`` and ``accounts`` (account_id, source, name, method,
        match_probability, linked_at). Empty when nothing matches.

    Examples
    --------
    >>> from autopersona.identity.link import link_identities
    >>> from autopersona.store.warehouse import Warehouse
    >>> with Warehouse(":memory:") as wh:
    ...     _ = wh.con.execute("INSERT INTO accounts (account_id, source, vin) "
    ...                        "VALUES ('OWN-1', 'owner', 'LZYP800C1LW100003')")
    ...     _ = link_identities(wh)
    ...     [p["accounts"][0]["account_id"] for p in person_summary(wh, "lzyp800c1lw1ooo03")]
    ['OWN-1']
    """
    from autopersona.identity.link import LINKS_TABLE, PERSONS_TABLE
    from autopersona.identity.normalise import normalise_vin
    from autopersona.privacy.pseudo import InsecureKeyError, is_pseudonym, live_pseudonyms

    exists = wh.con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [LINKS_TABLE]
    ).fetchall()[0][0]
    if not exists:
        return []
    vin = key if is_pseudonym(key) else normalise_vin(key)
    vins = [vin] if vin else []
    if vin and not is_pseudonym(vin):
        # the warehouse names vehicles by pseudonym when pseudonymisation is on
        try:
            ps = live_pseudonyms()
        except InsecureKeyError:
            ps = None
        if ps is not None:
            vins.append(ps(vin))
    vin_accounts = (
        [
            a
            for a, raw in wh.con.execute(
                "SELECT account_id, vin FROM accounts WHERE vin IS NOT NULL"
            ).fetchall()
            if raw in vins or normalise_vin(raw) in vins
        ]
        if vins
        else []
    )
    pids = [
        r[0]
        for r in wh.con.execute(
            f"""SELECT DISTINCT person_id FROM {LINKS_TABLE}
                WHERE account_id = ? OR list_contains(?, account_id)
                UNION
                SELECT person_id FROM {PERSONS_TABLE} WHERE list_has_any(vins, ?)
                ORDER BY 1""",
            [key, vin_accounts, vins],
        ).fetchall()
    ]
    out: list[dict[str, Any]] = []
    for pid in pids:
        rows = wh.con.execute(
            f"""SELECT person_id, vins, sources, account_count, first_seen
                FROM {PERSONS_TABLE} WHERE person_id = ?""",
            [pid],
        ).fetchall()
        row = rows[0] if rows else None
        if row is None:
            continue
        accounts = wh.con.execute(
            f"""SELECT l.account_id, a.source, a.name, l.method, l.match_probability, l.linked_at
                FROM {LINKS_TABLE} l LEFT JOIN accounts a USING (account_id)
                WHERE l.person_id = ? ORDER BY l.account_id""",
            [pid],
        ).fetchall()
        out.append(
            {
                "person_id": row[0],
                "vins": list(row[1]),
                "sources": list(row[2]),
                "account_count": row[3],
                "first_seen": row[4].isoformat() if row[4] else None,
                "accounts": [
                    {
                        "account_id": a[0],
                        "source": a[1],
                        "name": a[2],
                        "method": a[3],
                        "match_probability": a[4],
                        "linked_at": a[5].isoformat() if a[5] else None,
                    }
                    for a in accounts
                ],
            }
        )
    return out


def register(app: typer.Typer) -> None:
    """Attach the ``autopersona identity`` command group."""
    identity_app = typer.Typer(
        help="Identity linkage: accounts (owner, app, e-commerce, dealer CRM) → persons.",
        no_args_is_help=True,
    )
    app.add_typer(identity_app, name="identity")

    @identity_app.command("link")
    def link_cmd(
        warehouse: Annotated[
            Path | None, typer.Option("--warehouse", "-w", help="DuckDB file.")
        ] = None,
        threshold: Annotated[
            float, typer.Option(help="Minimum Splink match probability, in (0, 1].")
        ] = 0.9,
        seed: Annotated[int, typer.Option(help="Seed of Splink's u-sampling.")] = 42,
        exact_only: Annotated[
            bool, typer.Option("--exact-only", help="Skip the probabilistic (Splink) stage.")
        ] = False,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Link accounts into persons; writes identity_links, persons and person_merges."""
        import json
        from dataclasses import asdict

        from rich.table import Table

        from autopersona.console import output_console
        from autopersona.identity.link import link_identities
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        if not 0.0 < threshold <= 1.0:
            typer.echo(f"error: --threshold {threshold}: must be in (0, 1]", err=True)
            raise typer.Exit(2)
        with Warehouse(warehouse or get_settings().warehouse) as wh:
            rep = link_identities(wh, threshold=threshold, seed=seed, probabilistic=not exact_only)
        if as_json:
            typer.echo(json.dumps(asdict(rep), indent=2))
            return
        t = Table(title=f"identity link (threshold {rep.threshold:g})")
        t.add_column("")
        t.add_column("count", justify="right")
        for k, v in asdict(rep).items():
            if isinstance(v, int) and not isinstance(v, bool):
                t.add_row(k.replace("_", " "), f"{v:,}")
        output_console().print(t)
        output_console().print(f"{rep.seconds:.1f} s")

    @identity_app.command("show")
    def show_cmd(
        key: Annotated[str, typer.Argument(help="An account id or a VIN.")],
        warehouse: Annotated[
            Path | None, typer.Option("--warehouse", "-w", help="DuckDB file.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Show the person behind an account id or a VIN, with all its accounts."""
        import json

        from rich.table import Table

        from autopersona.console import output_console
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        path = warehouse or get_settings().warehouse
        if str(path) != ":memory:" and not Path(path).exists():
            typer.echo(f"error: no warehouse at {path}", err=True)
            raise typer.Exit(2)
        with Warehouse(path, read_only=True) as wh:
            people = person_summary(wh, key)
        if not people:
            typer.echo(f"error: no person found for {key!r} (has `identity link` run?)", err=True)
            raise typer.Exit(1)
        if as_json:
            typer.echo(json.dumps(people, indent=2, default=str))
            return
        console = output_console()
        for p in people:
            console.print(
                f"[bold]{p['person_id']}[/]  vins: {', '.join(p['vins']) or '-'}  "
                f"sources: {', '.join(p['sources'])}  first seen: {p['first_seen'] or '-'}"
            )
            t = Table()
            for c in ("account", "source", "name", "method", "p(match)", "linked at"):
                t.add_column(c)
            for a in p["accounts"]:
                prob = a["match_probability"]
                t.add_row(
                    a["account_id"],
                    a["source"] or "",
                    a["name"] or "",
                    a["method"],
                    "" if prob is None else f"{prob:.3f}",
                    a["linked_at"] or "",
                )
            console.print(t)
