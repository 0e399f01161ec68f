"""CLI of the service: ``autopersona serve`` and ``autopersona keys create|list|revoke``."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

__all__ = ["register"]


def _settings(store: str | None = None) -> object:
    from autopersona.api.config import ApiSettings, ConfigError

    overrides = {"store": store} if store else {}
    try:
        return ApiSettings(**overrides).checked()  # type: ignore[arg-type]
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    """Attach ``serve`` and the ``keys`` group."""
    keys_app = typer.Typer(help="API keys with scopes (stored hashed).", no_args_is_help=True)
    app.add_typer(keys_app, name="keys")

    @app.command("serve")
    def serve_cmd(
        host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
        store: Annotated[
            str | None,
            typer.Option(
                help="Profile store: postgresql://… or a DuckDB file (default: warehouse)."
            ),
        ] = None,
        workers: Annotated[
            int, typer.Option(min=1, max=64, help="Server processes (>1 needs PostgreSQL).")
        ] = 1,
    ) -> None:
        """Serve the HTTP API and the dashboard (OpenAPI at /openapi.json, docs at /docs)."""
        import os

        import uvicorn

        from autopersona.api.config import ApiSettings

        s = _settings(store)
        assert isinstance(s, ApiSettings)
        if workers > 1:
            if s.store is None or not s.store.startswith(("postgresql:", "postgres:")):
                typer.echo("error: several workers need a PostgreSQL profile store", err=True)
                raise typer.Exit(2)
            if store:
                os.environ["AUTOPERSONA_STORE"] = store
            os.environ.setdefault("AUTOPERSONA_API_READ_ONLY", "1")
            uvicorn.run(
                "autopersona.api.app:create_app",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="warning",
            )
            return
        from autopersona.api.app import create_app

        typer.echo(f"autopersona API on http://{host}:{port}  (dashboard: /dashboard, docs: /docs)")
        uvicorn.run(create_app(s), host=host, port=port, log_level="warning")

    @keys_app.command("create")
    def create_cmd(
        scope: Annotated[
            list[str],
            typer.Option(
                "--scope",
                help="read:profiles, write:events, manage:strategies or admin (repeatable).",
            ),
        ],
        name: Annotated[str, typer.Option(help="Who or what the key is for.")] = "",
        rate: Annotated[
            float | None, typer.Option(help="Requests per second (default: the server's).")
        ] = None,
        burst: Annotated[
            int | None, typer.Option(help="Burst size (default: the server's).")
        ] = None,
    ) -> None:
        """Create a key; it is printed once and only its hash is kept."""
        from autopersona.api.config import ApiSettings
        from autopersona.api.keys import KeyStore

        s = _settings()
        assert isinstance(s, ApiSettings)
        ks = KeyStore(s.keys_path(), s.api_secret.get_secret_value())
        scopes = [p for sc in scope for p in sc.replace(",", " ").split()]
        try:
            key, rec = ks.create(scopes, name=name, rate=rate, burst=burst)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(key)
        typer.echo(
            f"key {rec.id} ({', '.join(rec.scopes)}) saved to {ks.path}; "
            "this is the only time the key is shown",
            err=True,
        )

    @keys_app.command("list")
    def list_cmd(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """List keys (id, name, scopes, created, revoked) — never the keys themselves."""
        from autopersona.api.config import ApiSettings
        from autopersona.api.keys import KeyStore

        s = ApiSettings()  # listing needs no secret
        rows = [k.public() for k in KeyStore(s.keys_path(), "unused-for-listing").list()]
        if as_json:
            sys.stdout.write(json.dumps(rows, indent=2) + "\n")
            return
        if not rows:
            typer.echo("no keys")
            return
        for r in rows:
            state = f"revoked {r['revoked_at']}" if r["revoked_at"] else "active"
            typer.echo(
                f"{r['id']}  {r['name'] or '-':<16} {','.join(r['scopes']):<40} "
                f"created {r['created_at']}  {state}"
            )

    @keys_app.command("revoke")
    def revoke_cmd(key_id: Annotated[str, typer.Argument(help="Key id (from keys list).")]) -> None:
        """Revoke a key (takes effect on the server's next request)."""
        from autopersona.api.config import ApiSettings
        from autopersona.api.keys import KeyStore

        s = _settings()
        assert isinstance(s, ApiSettings)
        try:
            rec = KeyStore(s.keys_path(), s.api_secret.get_secret_value()).revoke(key_id)
        except KeyError as exc:
            typer.echo(f"error: {exc.args[0]}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"revoked {rec.id} at {rec.revoked_at}")
