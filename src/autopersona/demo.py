"""``autopersona demo``: the loop on a small simulated fleet, on the embedded default.

Today the demo covers the Data stage — simulate a fleet (with real-world mess), ingest every
table into the DuckDB warehouse with progress bars, and summarise what landed where — and
the Profile stage: identity linkage, features (for consenting people, hence after linkage),
every tag into the profile store and the tag distributions per tier (:func:`autopersona.tags.report.profile_stage`).  Later stages extend
it along the loop.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from autopersona.ingest.engine import IngestReport
    from autopersona.store.warehouse import Warehouse

__all__ = ["DemoResult", "register", "run_demo"]


@dataclass
class DemoResult:
    """What the demo produced."""

    out: Path
    warehouse: Path
    rows: dict[str, int]
    read: int
    loaded: int
    duplicates: int
    quarantined: int
    seconds: float


def run_demo(
    out: Path, vehicles: int = 200, days: int = 14, seed: int = 42, *, progress: bool = True
) -> DemoResult:
    """Simulate ``vehicles`` x ``days``, ingest everything into ``out/autopersona.duckdb``.

    The output folder is recreated, so a rerun with the same seed gives the same warehouse.
    """
    from autopersona.console import output_console

    console = output_console()
    t0 = time.perf_counter()
    if out.exists():
        shutil.rmtree(out)
    with _demo_settings(out):
        return _run(console, t0, out, vehicles, days, seed, progress)


@contextlib.contextmanager
def _demo_settings(out: Path) -> Iterator[None]:
    """Demo mode (the published pseudonym key is accepted) and the vault in ``out``.

    Pseudonymisation stays on unless ``AUTOPERSONA_PSEUDONYMISE=0`` is set; a vault or key
    set in the environment is kept.  The environment is restored afterwards.
    """
    import os

    saved = {k: os.environ.get(k) for k in ("AUTOPERSONA_DEMO", "AUTOPERSONA_VAULT")}
    os.environ["AUTOPERSONA_DEMO"] = "1"
    os.environ.setdefault("AUTOPERSONA_VAULT", str(out / "vault.duckdb"))
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(
    console: Console, t0: float, out: Path, vehicles: int, days: int, seed: int, progress: bool
) -> DemoResult:
    from autopersona.ingest.engine import ingest
    from autopersona.settings import DEFAULT_PSEUDONYM_KEY, get_settings
    from autopersona.simulate import simulate
    from autopersona.store.warehouse import Warehouse

    out.mkdir(parents=True, exist_ok=True)
    s = get_settings()
    if s.pseudonymise:
        key = (
            "the published demo key"
            if s.pseudonym_key.get_secret_value() == DEFAULT_PSEUDONYM_KEY
            else "the configured key"
        )
        console.print(
            f"pseudonymisation: on (demo mode, {key}): VINs, phones and e-mails are stored "
            f"as keyed-HMAC pseudonyms; re-identification only through the audited vault "
            f"{s.vault}"
        )
    else:
        console.print("pseudonymisation: off (AUTOPERSONA_PSEUDONYMISE=0): identifiers in clear")
    fleet = out / "fleet"
    console.rule(f"[bold]Data[/] · simulate {vehicles} vehicles x {days} days (seed {seed})")
    summary = simulate(vehicles=vehicles, days=days, seed=seed, out=fleet, progress=progress)
    console.print(
        f"simulated {sum(summary.rows.values()):,} rows in {time.perf_counter() - t0:.1f} s "
        f"→ {fleet / 'tables'}"
    )
    console.rule("[bold]Data[/] · ingest into the warehouse")
    db = out / "autopersona.duckdb"
    with Warehouse(db) as wh:
        rep = ingest([fleet / "tables"], wh, progress=progress, keep_going=False)
        _print_summary(console, wh, rep)
        console.rule("[bold]Profile[/] · identity, features per vehicle and week, tags per tier")
        from autopersona.tags.report import profile_stage

        # consent is per person: features are built for consenting people once accounts
        # are linked into persons
        profile_stage(console, wh, features=lambda: _build_features(console, wh))
        _loop_stages(console, wh, out, seed)
        rows = wh.table_counts()
    secs = time.perf_counter() - t0
    console.print(
        f"\n[bold]warehouse[/] {db}  ·  read {rep.read:,} = loaded {rep.loaded:,} + "
        f"duplicates {rep.duplicates:,} + quarantined {rep.quarantined:,}  ·  {secs:.0f} s"
    )
    return DemoResult(out, db, rows, rep.read, rep.loaded, rep.duplicates, rep.quarantined, secs)


def _print_summary(console: Console, wh: Warehouse, rep: IngestReport) -> None:
    from rich.table import Table

    t = Table(title="What is in the warehouse")
    for col in ("table", "domain", "rows", "duplicates", "quarantined", "main quarantine reasons"):
        t.add_column(
            col, justify="right" if col in ("rows", "duplicates", "quarantined") else "left"
        )
    by = rep.by_table()
    for name, c in wh.contracts.items():
        tr = by.get(name)
        reasons = ", ".join(f"{k} {v:,}" for k, v in list(tr.reasons.items())[:3]) if tr else ""
        t.add_row(
            name,
            c.domain,
            f"{wh.count(name):,}",
            f"{tr.duplicates:,}" if tr else "",
            f"{tr.quarantined:,}" if tr else "",
            reasons,
        )
    console.print(t)
    mix = wh.sql(
        """SELECT CASE WHEN msrp_cny > 400000 THEN 'luxury' WHEN msrp_cny >= 150000 THEN 'mid'
                       ELSE 'economy' END AS tier,
                  count(*) FILTER (WHERE energy_type = 'ICE'),
                  count(*) FILTER (WHERE energy_type = 'BEV'),
                  count(*) FILTER (WHERE energy_type = 'PHEV'),
                  count(*) FILTER (WHERE energy_type = 'EREV'),
                  count(*) FILTER (WHERE adas_equipped)
           FROM vehicles GROUP BY 1 ORDER BY 1"""
    )
    v = Table(title="Fleet by price tier and energy type")
    for col in ("tier", "ICE", "BEV", "PHEV", "EREV", "with ADAS"):
        v.add_column(col, justify="left" if col == "tier" else "right")
    for r in mix:
        v.add_row(*(str(x) for x in r))
    console.print(v)
    span = wh.sql(
        """SELECT min(ts)::DATE, max(ts)::DATE, count(DISTINCT vin),
                  round(sum(speed_mps) / 1000, 0) FROM motion"""
    )[0]
    console.print(
        f"motion: {span[2]} vehicles from {span[0]} to {span[1]}, "
        f"about {span[3]:,.0f} km driven (sum of 1 Hz speeds)"
    )


def _build_features(console: Console, wh: Warehouse) -> None:
    from rich.table import Table

    from autopersona.features.build import build_features

    t0 = time.perf_counter()
    rep = build_features(wh)
    took = time.perf_counter() - t0
    t = Table(title=f"Feature tables ({took:.1f} s, DuckDB engine)")
    for col in ("domain", "rows", "weeks"):
        t.add_column(col, justify="left" if col == "domain" else "right")
    for name, n in rep.rows.items():
        t.add_row(name, f"{n:,}", str(rep.periods[name]))
    console.print(t)
    q = wh.sql(
        """SELECT quantile_cont(aggressiveness_index, [0.1, 0.5, 0.9]),
                  quantile_cont(harsh_brake_per_100km, [0.1, 0.5, 0.9]),
                  quantile_cont(night_share, [0.1, 0.5, 0.9]),
                  quantile_cont(distance_km, [0.1, 0.5, 0.9])
           FROM features_driving WHERE distance_km >= 20"""
    )[0]
    d = Table(title="Driving features over vehicle-weeks with ≥ 20 km (p10 / p50 / p90)")
    d.add_column("feature")
    d.add_column("p10 / p50 / p90", justify="right")
    for name, vals in zip(
        (
            "aggressiveness index (0-100)",
            "harsh braking per 100 km",
            "night driving share",
            "distance (km)",
        ),
        q,
        strict=True,
    ):
        d.add_row(name, " / ".join(f"{v:,.2f}" for v in vals) if vals else "")
    console.print(d)
    if "mobility" in rep.rows:
        mob = wh.sql(
            """SELECT count(DISTINCT vin) FILTER (WHERE label = 'home'),
                      count(DISTINCT vin) FILTER (WHERE label = 'work'),
                      count(DISTINCT vin) FROM mobility_locations"""
        )[0]
        purposes = dict(
            wh.sql("SELECT purpose, count(*) FROM mobility_trips GROUP BY 1 ORDER BY 2 DESC")
        )
        total = sum(purposes.values()) or 1
        shares = ", ".join(f"{k} {v / total:.0%}" for k, v in purposes.items())
        console.print(
            f"mobility: home found for {mob[0]} of {mob[2]} vehicles, work for {mob[1]}; "
            f"{total:,} trips by purpose (HMM): {shares}"
        )


def _loop_stages(console: Console, wh: Warehouse, out: Path, seed: int) -> None:
    """Scenario → Strategy → Feedback on the demo fleet, then the HTML report.

    The strategies run over the fresh profiles; their sends go through the transactional
    outbox to a file sink (``out/messages.jsonl``: the channels a real deployment configures
    in ``channels.yaml``); the closed loop then measures precision targeting against an
    untargeted baseline with the simulator's response model answering.
    """
    from autopersona.delivery import deliver_pending, file_sink_config
    from autopersona.delivery.dispatch import WarehouseContacts, messages_for
    from autopersona.delivery.outbox import open_outbox
    from autopersona.evaluation.loop import demo_stage as feedback_stage
    from autopersona.evaluation.report import build_report
    from autopersona.strategy.demo import demo_stage as strategy_stage

    t0 = time.perf_counter()
    decisions = strategy_stage(console, wh)
    sink = file_sink_config(str(out / "messages.jsonl"))
    outbox = open_outbox(warehouse=wh)
    new = outbox.enqueue(messages_for(decisions, sink, WarehouseContacts(wh.con)))
    sent = deliver_pending(outbox, sink)
    console.print(
        f"delivery: {len(new)} messages through the outbox → {sent.sent} written to "
        f"{out / 'messages.jsonl'}, {sent.dead} dead-lettered  ·  "
        f"{time.perf_counter() - t0:.1f} s"
    )
    t1 = time.perf_counter()
    feedback_stage(console, wh, seed=seed)
    report = build_report(wh)
    path = report.write(out / "report.html")
    console.print(f"report: {path}  ·  {time.perf_counter() - t1:.1f} s")


def register(app: typer.Typer) -> None:
    """Attach ``autopersona demo``."""

    @app.command("demo")
    def demo_cmd(
        out: Annotated[Path, typer.Option(help="Output folder (recreated).")] = Path("demo_out"),
        vehicles: Annotated[int, typer.Option(min=1, help="Simulated vehicles.")] = 200,
        days: Annotated[int, typer.Option(min=1, help="Simulated days.")] = 14,
        seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    ) -> None:
        """Run the loop on a simulated fleet with the embedded warehouse."""
        run_demo(out, vehicles, days, seed)
