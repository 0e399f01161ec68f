"""End to end with the real strategy engine: MQTT route events -> StrategyEngine -> outbox ->
head-unit messages on the vehicles' topics, including a message held while the car moves and
released when it parks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deliverykit import HeadUnitListener, Publisher, channels_yaml, free_port, wait_until

from autopersona.delivery.config import load_channels_config
from autopersona.delivery.live import LiveEngine
from autopersona.store.warehouse import Warehouse

strategy = pytest.importorskip("autopersona.strategy")

FIXTURES = Path(__file__).parent / "fixtures"
# Live: event times are now (the dispatcher expires held messages by the wall clock), and the
# vehicles' zone is one where it is early afternoon now (no quiet hours).
AT = datetime.now(UTC).replace(microsecond=0)
_OFF = (13 - AT.hour + 12) % 24 - 12
ZONE = f"Etc/GMT{-_OFF:+d}"


def stored(vin: str) -> str:
    """The VIN as the warehouse holds it: its pseudonym (pseudonymisation is on by default)."""
    from autopersona.privacy.pseudo import live_pseudonyms

    ps = live_pseudonyms()
    return vin if ps is None else ps(vin)


def fill(wh: Warehouse) -> None:
    v1, v2, v3 = stored("V1"), stored("V2"), stored("V3")
    wh.con.execute(
        "INSERT INTO vehicles (vin, brand, model, energy_type, timezone) VALUES "
        "($v1, 'Aurelis', 'S9', 'BEV', $z), ($v2, 'Meridian', 'M5', 'BEV', $z), "
        "($v3, 'Zhiyuan', 'C3', 'ICE', $z)",
        {"z": ZONE, "v1": v1, "v2": v2, "v3": v3},
    )
    wh.con.execute(
        "INSERT INTO accounts (account_id, source, vin) VALUES "
        "('OWN-1', 'owner', $v1), ('OWN-2', 'owner', $v2), ('OWN-3', 'owner', $v3)",
        {"v1": v1, "v2": v2, "v3": v3},
    )
    wh.con.executemany(
        "INSERT INTO consents VALUES (?, 'marketing', 'head_unit', true, ?, 'test')",
        [[a, AT - timedelta(days=30)] for a in ("OWN-1", "OWN-2", "OWN-3")],
    )


@pytest.fixture
def live(shared_broker: int, prefix: str, tmp_path: Path) -> Iterator[tuple[LiveEngine, Warehouse]]:
    cfg = load_channels_config(
        channels_yaml(
            tmp_path / "channels.yaml",
            port=shared_broker,
            prefix=prefix,
            webhook_port=free_port(),
            smtp_port=free_port(),
            client_id=f"e2e-{tmp_path.name[-12:]}",
            lease_s=2,
        )
    )
    wh = Warehouse(tmp_path / "wh.duckdb")
    fill(wh)
    catalogue = strategy.load_strategies(FIXTURES / "strategies")
    eng = strategy.StrategyEngine(wh, catalogue)
    le = LiveEngine(wh, eng, cfg, poll_s=0.05)
    le.start()
    assert le.wait_connected(10)
    try:
        yield le, wh
    finally:
        le.stop()
        wh.close()


@pytest.mark.integration
def test_route_events_reach_exactly_the_right_head_units(
    live: tuple[LiveEngine, Warehouse], shared_broker: int, prefix: str
) -> None:
    le, wh = live
    listener = HeadUnitListener(prefix, shared_broker)
    pub = Publisher(prefix, shared_broker)
    try:

        def route(vin: str, eid: str, km: float, speed: float, minutes: int = 0) -> None:
            ts = (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()
            pub.event(vin, eid, ts=ts, route_km=km, remaining_range_km=120.0, speed_mps=speed)

        route("V1", "r1", 400, 0.0)  # BEV, beyond range, parked: sent
        route("V2", "r2", 80, 0.0)  # within range: no decision
        route("V3", "r3", 400, 0.0)  # not a BEV: not in the audience
        route("V2", "r4", 400, 25.0)  # moving: held
        assert wait_until(lambda: le.stats.processed == 4, 15), le.stats
        assert wait_until(lambda: listener.received.unique == 1, 10), le.stats
        pub.event("V2", "s5", type="vehicle_state", ts=datetime.now(UTC).isoformat(),
                  speed_mps=0.0)  # fmt: skip
        assert wait_until(lambda: listener.received.unique == 2, 15), le.stats
        # the payload names the vehicle as stored (its pseudonym); the message reaches the
        # vehicle's own topic, re-identified through the audited vault at send time
        v1, v2 = stored("V1"), stored("V2")
        bodies = {b["vin"]: b for b in listener.received.bodies.values()}
        assert set(bodies) == {v1, v2}
        assert bodies[v1]["title"] == "Charge on the way"
        assert bodies[v1]["body"] == "400 km planned, 120 km left in your S9."
        assert bodies[v2]["address"] == f"{prefix}/vehicles/V2/headunit"
        le.flush()  # the warehouse trails the journal by up to apply_wait_s
        log = wh.sql(
            "SELECT vin, status, guard FROM strategy_decisions ORDER BY created_at, status"
        )
        assert sorted(log, key=lambda r: (r[0] != v1, r[1] != "held")) == [
            (v1, "send", None),
            (v2, "held", "driving_safety"),
            (v2, "send", None),
        ]
        assert wait_until(lambda: le.outbox.clone().counts() == {"sent": 2}, 5)
        assert listener.received.duplicates == 0
    finally:
        pub.close()
        listener.close()
