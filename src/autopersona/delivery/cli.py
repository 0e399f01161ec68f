"""CLI of delivery: ``autopersona run`` (the live engine) and ``autopersona outbox``."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import re
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from autopersona.delivery.feedback import FeedbackListener
    from autopersona.delivery.live import LiveEngine

log = logging.getLogger(__name__)

#: Longest a feedback batch naming unknown decisions waits for the engine to recover its
#: journal (``run``); then the decisions still unknown are quarantined.
ENGINE_START_WAIT_S = 60.0

_WAREHOUSE_OPT = typer.Option(
    "--warehouse", "-w", help="Warehouse DuckDB file (default: the configured one)."
)
_OUTBOX_OPT = typer.Option(
    "--outbox",
    envvar="AUTOPERSONA_OUTBOX",
    help="Outbox location: postgresql://… or a DuckDB file (default: the warehouse).",
)
_CHANNELS_OPT = typer.Option(
    "--channels", "-c", help="Channels / broker YAML (default: the built-in loopback one)."
)


def _config(path: Path | None) -> Any:
    from autopersona.catalog import CatalogError
    from autopersona.delivery.config import load_channels_config

    try:
        return load_channels_config(path)
    except CatalogError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None


def _warehouse(path: Path | None, *, read_only: bool = False, threads: int | None = None) -> Any:
    from autopersona.settings import get_settings
    from autopersona.store.warehouse import Warehouse

    p = path or get_settings().warehouse
    if read_only and not Path(p).exists():
        typer.echo(f"error: no warehouse at {p}", err=True)
        raise typer.Exit(1)
    return Warehouse(p, read_only=read_only, threads=threads)


def _engine_factory(spec: str) -> Any:
    mod, _, name = spec.partition(":")
    if not mod or not name:
        typer.echo(f"error: --engine must be module:callable, got {spec!r}", err=True)
        raise typer.Exit(2)
    try:
        return getattr(importlib.import_module(mod), name)
    except (ImportError, AttributeError) as exc:
        typer.echo(f"error: cannot load engine {spec!r}: {exc}", err=True)
        raise typer.Exit(2) from None


def _partition(spec: str | None) -> tuple[int, int] | None:
    """``K/N`` as ``(K, N)``; exit 2 with the reason when it is not ``0 <= K < N``."""
    if spec is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
    if m is None or not 0 <= int(m.group(1)) < int(m.group(2)):
        typer.echo(f"error: --partition {spec!r}: expected K/N with 0 <= K < N, e.g. 0/2", err=True)
        raise typer.Exit(2)
    return int(m.group(1)), int(m.group(2))


class _StopSignals:
    """SIGTERM and SIGINT for the whole of ``run``: a request to stop, never an abrupt exit.

    Installed before anything starts, so a signal that arrives while the feedback listener
    connects or the engine is built stops the command as cleanly as one that arrives while
    the engine runs; the previous handlers come back on exit.
    """

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self.requested.set()

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    @property
    def name(self) -> str:
        """The signal received (``SIGTERM``, ``SIGINT``), empty when none was."""
        return signal.Signals(self.signum).name if self.signum is not None else ""


class _EngineGate:
    """The catch-up hook of ``run``'s feedback listener (the intake's ``catch_up``).

    Feedback may name a decision the warehouse does not hold yet: one the engine has just
    sent (its journal writes decisions a moment after their messages go out), or one of a
    previous run still in the journal, which the engine applies when it starts.  The
    listener starts before the engine, so until the engine has recovered its journal
    (:attr:`LiveEngine.ready`) the catch-up waits for it, at most ``wait_s`` (the batch stays
    unacknowledged meanwhile), then lets the journal apply what is pending.  When the
    command stops (:meth:`close`) before the engine was ready, the batch is deferred
    (:class:`~autopersona.delivery.feedback.FeedbackDeferred`): left unacknowledged for the
    listener's next session rather than quarantined.
    """

    def __init__(self, wait_s: float = ENGINE_START_WAIT_S) -> None:
        self.live: LiveEngine | None = None
        self.wait_s = wait_s
        self.closed = threading.Event()

    def close(self) -> None:
        """The command is stopping: wake and release any waiting catch-up."""
        self.closed.set()

    def __call__(self) -> None:
        from autopersona.delivery.feedback import FeedbackDeferred

        end = time.monotonic() + self.wait_s
        while True:
            live = self.live
            if live is not None and live.ready.is_set():
                _catch_up(live)
                return
            if self.closed.is_set():
                raise FeedbackDeferred("the engine stopped before it recovered its journal")
            if time.monotonic() >= end:
                log.warning(
                    "feedback names decisions unknown to the warehouse and the engine has not "
                    "recovered its journal within %g s: they are quarantined",
                    self.wait_s,
                )
                return
            self.closed.wait(0.02)


def _start_feedback(
    wh: Any,
    cfg: Any,
    timeout: float,
    *,
    catch_up: Any = None,
    cancel: threading.Event | None = None,
    partition: tuple[int, int] | None = None,
) -> FeedbackListener:
    """Start the feedback listener of ``run`` on a cursor of ``wh``.

    Its client id is ``{worker id}-feedback``; exit 1 unless it connects and subscribes within
    ``timeout`` seconds.  When ``cancel`` is set meanwhile (a stop signal), the listener is
    returned as it is, for the caller to stop.
    """
    from autopersona.delivery.feedback import FeedbackListener

    cur = wh.cursor()  # the listener writes from its own thread: a connection of its own
    try:
        listener = FeedbackListener(
            cur,
            cfg.mqtt,
            client_id=f"{cfg.mqtt.client_id}-feedback",
            max_bytes=cfg.event_max_bytes,
            catch_up=catch_up,
            partition=partition,
        )
        listener.start()
    except Exception as exc:
        cur.close()
        typer.echo(f"error: the feedback listener did not start: {exc}", err=True)
        raise typer.Exit(1) from None
    if not listener.wait_connected(timeout, cancel=cancel):
        if cancel is not None and cancel.is_set():
            return listener
        why = listener.watch.reason or "no answer"
        listener.stop(timeout=5)
        cur.close()
        b = cfg.mqtt
        typer.echo(
            f"error: the feedback listener did not connect and subscribe to "
            f"{listener.topic} on {b.host}:{b.port} within {timeout:g} s ({why}); "
            "--no-feedback runs the engine without it",
            err=True,
        )
        raise typer.Exit(1)
    return listener


def _catch_up(live: Any) -> None:
    """Feedback naming a decision not in the warehouse yet: let the engine's journal apply.

    The journal writes decisions a moment after their messages go out; once the engine has
    stopped there is nothing left to wait for.
    """
    with contextlib.suppress(RuntimeError):
        live.flush(timeout=10)


def register(app: typer.Typer) -> None:
    """Attach ``run`` and ``outbox``."""

    @app.command("run")
    def run_cmd(
        warehouse: Annotated[Path | None, _WAREHOUSE_OPT] = None,
        channels: Annotated[Path | None, _CHANNELS_OPT] = None,
        outbox: Annotated[str | None, _OUTBOX_OPT] = None,
        worker_id: Annotated[
            str | None,
            typer.Option(help="MQTT client id and lease owner; keep it stable across restarts."),
        ] = None,
        partition: Annotated[
            str | None,
            typer.Option(
                metavar="K/N",
                help="Be worker K of N (0 <= K < N): take only the events of the persons this "
                "worker owns (a hash of the person), so caps, de-duplication and held messages "
                "stay exact across workers; every worker receives every event (no shared "
                "subscription) and acknowledges the others' at once; its feedback listener "
                "likewise keeps the feedback of its own persons and decisions.",
            ),
        ] = None,
        host: Annotated[str | None, typer.Option(help="Broker host (overrides the file).")] = None,
        port: Annotated[int | None, typer.Option(help="Broker port (overrides the file).")] = None,
        topic_prefix: Annotated[
            str | None, typer.Option(help="Topic prefix (overrides the file).")
        ] = None,
        engine: Annotated[
            str,
            typer.Option(
                help="Decision engine factory module:callable, called with the warehouse."
            ),
        ] = "autopersona.strategy:StrategyEngine",
        batch_max: Annotated[int, typer.Option(help="Most events per transaction.")] = 500,
        batch_log: Annotated[
            bool,
            typer.Option(
                help="Log decisions once per MQTT batch (faster; caps then see earlier "
                "batches only)."
            ),
        ] = False,
        journal: Annotated[
            bool,
            typer.Option(
                help="Journal each batch (synced) and apply it to the warehouse in the "
                "background; off: one warehouse transaction per batch.  A PostgreSQL outbox "
                "always goes without."
            ),
        ] = True,
        journal_sync: Annotated[
            bool,
            typer.Option(
                help="fdatasync each journal record (off: survives a killed process, not a "
                "power cut)."
            ),
        ] = True,
        apply_every: Annotated[
            float,
            typer.Option(
                help="Seconds between the journal's writes to the warehouse (the warehouse "
                "trails the engine by this much)."
            ),
        ] = 0.2,
        status_every: Annotated[
            float, typer.Option(help="Print counters every N seconds (0: only at the end).")
        ] = 0.0,
        threads: Annotated[
            int,
            typer.Option(
                help="DuckDB worker threads (the engine's statements are small: more threads "
                "add scheduling, not speed)."
            ),
        ] = 1,
        feedback: Annotated[
            bool,
            typer.Option(
                help="Also listen for channel feedback ({prefix}/feedback/+) into "
                "marketing_feedback, as `feedback listen` does, in this process."
            ),
        ] = True,
        feedback_timeout: Annotated[
            float,
            typer.Option(
                help="Seconds the feedback listener may take to connect and subscribe "
                "before the command gives up."
            ),
        ] = 30.0,
    ) -> None:
        """Run the live engine: MQTT vehicle events in, decisions, outbox, channels out.

        With ``--feedback`` (the default) the feedback listener runs alongside on the same
        warehouse and broker, as client ``{worker id}-feedback``.  Stops cleanly on SIGTERM
        or Ctrl-C at any point, even while connecting or recovering the journal (finishes
        the batch in flight, flushes sends, disconnects) and prints its counters as JSON,
        the listener's under ``"feedback"``.
        """
        from autopersona.delivery.live import LiveEngine, LiveStats
        from autopersona.delivery.outbox import open_outbox

        with _StopSignals() as signals:  # from the start: no signal ends ``run`` abruptly
            logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
            cfg = _config(channels)
            over = {
                k: v
                for k, v in {"host": host, "port": port, "topic_prefix": topic_prefix}.items()
                if v is not None
            }
            if worker_id:
                over["client_id"] = worker_id
            if over:
                cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update=over)})
            part = _partition(partition)
            factory = _engine_factory(engine)
            wh = _warehouse(warehouse, threads=threads)
            ob = open_outbox(outbox, warehouse=wh, policy=cfg.retry, lease_s=cfg.lease_s)
            listener: FeedbackListener | None = (
                None  # started first: a listener that cannot start leaves no engine behind
            )
            gate = _EngineGate()
            stopping = signals.requested
            stopped = False
            try:
                if feedback:
                    listener = _start_feedback(
                        wh, cfg, feedback_timeout, catch_up=gate, cancel=stopping, partition=part
                    )
                live: LiveEngine | None = None
                if not stopping.is_set():
                    live = LiveEngine(
                        wh,
                        factory(wh),
                        cfg,
                        outbox=ob,
                        batch_max=batch_max,
                        batch_log=batch_log,
                        journal=None if journal else False,
                        journal_sync=journal_sync,
                        apply_wait_s=apply_every,
                        partition=part,
                    )
                    gate.live = live

                def status(stats: Any) -> None:
                    out = stats.as_dict()
                    if listener is not None:
                        out["feedback"] = listener.stats.as_dict()
                    sys.stderr.write(json.dumps(out) + "\n")

                def until(_: Any) -> bool:  # a signal, or a fatal listener error
                    return stopping.is_set() or (
                        listener is not None and bool(listener.stats.errors)
                    )

                if live is not None and not stopping.is_set():
                    stats = live.run_forever(
                        install_signals=False,
                        until=until,
                        status_every_s=status_every,
                        on_status=status,
                    )
                else:  # stopped before the engine started: release what was set up
                    if live is not None:
                        live.stop()
                    stats = live.stats if live is not None else LiveStats()
                    log.info("stopping on %s before the engine started", signals.name)
                gate.close()
                summary: dict[str, Any] = {**stats.as_dict(), "errors": stats.errors}
                failed = bool(stats.errors)
                if listener is not None:
                    listener.stop()
                    stopped = True
                    fb = listener.stats
                    summary["feedback"] = {**fb.as_dict(), "errors": fb.errors}
                    failed = failed or bool(fb.errors)
                if signals.name:
                    log.info("stopped cleanly on %s", signals.name)
                sys.stdout.write(json.dumps(summary) + "\n")
                if failed:
                    raise typer.Exit(1)
            finally:
                gate.close()
                if listener is not None:
                    if not stopped:
                        listener.stop()
                    listener.wh.close()
                if getattr(ob, "con", None) is not wh.con:
                    ob.close()
                wh.close()

    @app.command("outbox")
    def outbox_cmd(
        status: Annotated[
            str | None,
            typer.Option(help="Only this status: pending, sending, sent, failed, dead."),
        ] = None,
        events: Annotated[
            bool, typer.Option("--events", help="Refused inbound events instead of messages.")
        ] = False,
        requeue_dead: Annotated[
            bool, typer.Option("--requeue-dead", help="Give dead messages fresh attempts.")
        ] = False,
        limit: Annotated[int, typer.Option(help="Most rows to show.")] = 50,
        warehouse: Annotated[Path | None, _WAREHOUSE_OPT] = None,
        outbox: Annotated[str | None, _OUTBOX_OPT] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    ) -> None:
        """Show the outbox: counts per status and the latest rows (dead letters with reasons)."""
        from autopersona.delivery.outbox import STATUSES, open_outbox

        if status is not None and status not in STATUSES:
            typer.echo(f"error: --status must be one of {', '.join(STATUSES)}", err=True)
            raise typer.Exit(2)
        wh = None if outbox else _warehouse(warehouse)
        ob = open_outbox(outbox, warehouse=wh)
        try:
            if requeue_dead:
                n = ob.requeue_dead()
                typer.echo(f"requeued {n} dead messages")
                return
            rows = ob.event_dead_letters(limit=limit) if events else ob.rows(status, limit=limit)
            counts = ob.counts()
        finally:
            ob.close()
            if wh is not None:
                wh.close()
        if as_json:
            key = "event_dead_letters" if events else "messages"
            sys.stdout.write(json.dumps({"counts": counts, key: rows}, default=str, indent=2))
            sys.stdout.write("\n")
            return
        from rich.table import Table

        from autopersona.console import output_console

        console = output_console()
        console.print("outbox: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "empty"))
        if events:
            t = Table(title="Refused inbound events")
            for h in ("received", "topic", "bytes", "reason"):
                t.add_column(h)
            for r in rows:
                t.add_row(
                    str(r["received_at"]), r["topic"] or "", str(r["payload_bytes"]), r["reason"]
                )
        else:
            t = Table(title=f"Outbox ({status or 'all'})")
            for h in ("updated", "channel", "address", "status", "attempts", "last error", "key"):
                t.add_column(h)
            for r in rows:
                t.add_row(
                    str(r["updated_at"]),
                    r["channel"],
                    r["address"],
                    r["status"],
                    str(r["attempts"]),
                    r["last_error"] or "",
                    r["idempotency_key"][:16],
                )
        console.print(t)
