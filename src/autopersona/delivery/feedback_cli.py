"""CLI of feedback intake: ``autopersona feedback listen`` (channel feedback from MQTT)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Attach the ``feedback`` group to ``app``."""
    feedback_app = typer.Typer(
        help="Channel feedback in: MQTT listener into marketing_feedback.", no_args_is_help=True
    )
    app.add_typer(feedback_app, name="feedback")

    @feedback_app.command("listen")
    def listen_cmd(
        warehouse: Annotated[
            Path | None,
            typer.Option("--warehouse", "-w", help="Warehouse DuckDB file (default: configured)."),
        ] = None,
        channels: Annotated[
            Path | None,
            typer.Option("--channels", "-c", help="Channels / broker YAML (default: built-in)."),
        ] = None,
        host: Annotated[str | None, typer.Option(help="Broker host (overrides the file).")] = None,
        port: Annotated[int | None, typer.Option(help="Broker port (overrides the file).")] = None,
        topic_prefix: Annotated[
            str | None,
            typer.Option(help="Topic prefix (overrides the file); reads {prefix}/feedback/+."),
        ] = None,
        client_id: Annotated[
            str,
            typer.Option(help="MQTT client id; keep it stable: the broker resumes its session."),
        ] = "autopersona-feedback",
        batch_max: Annotated[int, typer.Option(help="Most payloads per ingestion.")] = 500,
        count: Annotated[
            int | None,
            typer.Option(help="Stop once this many payloads are handled (default: run on)."),
        ] = None,
        status_every: Annotated[
            float, typer.Option(help="Print counters every N seconds (0: only at the end).")
        ] = 0.0,
    ) -> None:
        """Listen for channel feedback (QoS 1, persistent session) and ingest it.

        Each payload is one JSON event of ``marketing_feedback`` naming its decision by
        ``decision_id`` or ``idempotency_key``; it is joined to the decision log, validated
        by the contract and loaded, counted as a duplicate, or quarantined with the reason.
        Stops on SIGTERM / Ctrl-C (or after ``--count``) and prints its counters as JSON.
        """
        from autopersona.catalog import CatalogError
        from autopersona.delivery.config import load_channels_config
        from autopersona.delivery.feedback import FeedbackListener
        from autopersona.settings import get_settings
        from autopersona.store.warehouse import Warehouse

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        try:
            cfg = load_channels_config(channels)
        except CatalogError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        over = {
            k: v
            for k, v in {"host": host, "port": port, "topic_prefix": topic_prefix}.items()
            if v is not None
        }
        broker = cfg.mqtt.model_copy(update=over) if over else cfg.mqtt
        wh = Warehouse(warehouse or get_settings().warehouse)
        try:
            listener = FeedbackListener(
                wh, broker, client_id=client_id, batch_max=batch_max, max_bytes=cfg.event_max_bytes
            )

            def done(stats: Any) -> bool:
                handled = stats.loaded + stats.duplicates + stats.quarantined
                return count is not None and handled >= count

            def status(stats: Any) -> None:
                sys.stderr.write(json.dumps(stats.as_dict()) + "\n")

            stats = listener.run_forever(until=done, status_every_s=status_every, on_status=status)
            sys.stdout.write(json.dumps({**stats.as_dict(), "errors": stats.errors}) + "\n")
            if stats.errors:
                raise typer.Exit(1)
        finally:
            wh.close()
