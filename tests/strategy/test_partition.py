"""Live workers and a person's daily cap: partitions keep it, a random split does not.

Two live engines, each on its own warehouse with the same profiles (as several ``run``
workers are deployed), see the two route events of one person who owns two vehicles.
The events go through :meth:`LiveEngine.process` directly, as the MQTT client would hand
them over, so the test needs no broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from autopersona.delivery.config import load_channels_config
from autopersona.delivery.live import LiveEngine, _Inbound, partition_of
from autopersona.store.warehouse import Warehouse
from autopersona.strategy import StrategyEngine

from .stratcheck import fill, route, small_catalogue

pytestmark = pytest.mark.usefixtures("clear_identifiers")

PERSON = "P-7"  # owns V1 and V2 (both BEVs in the audience of ev_route)


def _worker(path: Path, partition: tuple[int, int] | None) -> tuple[LiveEngine, Warehouse]:
    wh = Warehouse(path)
    fill(wh)
    wh.con.execute("CREATE TABLE persons (person_id VARCHAR, vins VARCHAR[])")
    wh.con.execute(f"INSERT INTO persons VALUES ('{PERSON}', ['V1', 'V2'])")
    # one message per person per local day (the fixture channels)
    eng = StrategyEngine(wh, small_catalogue("engine_channels"), profile_ttl_s=0)
    live = LiveEngine(wh, eng, load_channels_config(), journal=False, partition=partition)
    return live, wh


def _inbound(event: dict[str, object], mid: int) -> _Inbound:
    body = orjson.dumps(event)
    return _Inbound(
        mid, 1, f"autopersona/v1/vehicles/{event['vin']}/events", body, datetime.now(UTC)
    )


EVENTS = [
    {**route("V1", "2026-02-10T15:00:00Z"), "event_id": "e1"},  # 16:00 in Berlin
    {**route("V2", "2026-02-10T16:00:00Z"), "event_id": "e2"},  # 11:00 in New York
]


def _sends(wh: Warehouse) -> list[tuple[str, str]]:
    return wh.sql(
        "SELECT vin, strategy_id FROM strategy_decisions WHERE status = 'send' "
        "AND person_id = ? ORDER BY vin",
        [PERSON],
    )


@pytest.fixture
def workers(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[tuple[LiveEngine, Warehouse]]]:
    parts = request.param
    made = [_worker(tmp_path / f"w{k}.duckdb", p) for k, p in enumerate(parts)]
    yield made
    for _, wh in made:  # the outbox is the warehouse's
        wh.close()


@pytest.mark.parametrize("workers", [[(0, 2), (1, 2)]], indirect=True)
def test_partitioned_workers_keep_a_persons_daily_cap(
    workers: list[tuple[LiveEngine, Warehouse]],
) -> None:
    # every partitioned worker receives every event; only the person's owner decides
    for live, _ in workers:
        live.process([_inbound(e, i) for i, e in enumerate(EVENTS)])
    owner = partition_of(PERSON, 2)
    assert [live.stats.processed for live, _ in workers] == [
        2 if k == owner else 0 for k in range(2)
    ]
    assert [live.stats.others for live, _ in workers] == [0 if k == owner else 2 for k in range(2)]
    sends = [s for _, wh in workers for s in _sends(wh)]
    assert sends == [("V1", "ev_route")]  # the second route event met the cap
    (live, wh) = workers[owner]
    assert wh.sql(
        "SELECT vin, guard FROM strategy_decisions WHERE strategy_id = 'ev_route' ORDER BY vin"
    ) == [("V1", None), ("V2", "cap_person_day")]


@pytest.mark.parametrize("workers", [[None, None]], indirect=True)
def test_a_random_split_between_workers_breaks_it(
    workers: list[tuple[LiveEngine, Warehouse]],
) -> None:
    # what a shared subscription may do: each worker gets one of the person's events
    for (live, _), (i, e) in zip(workers, enumerate(EVENTS), strict=True):
        live.process([_inbound(e, i)])
    sends = sorted(s for _, wh in workers for s in _sends(wh))
    assert sends == [("V1", "ev_route"), ("V2", "ev_route")]  # two messages in one day
