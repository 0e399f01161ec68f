"""Warehouse helpers keep the connection usable between calls."""

from __future__ import annotations

from autopersona.store.warehouse import Warehouse


def test_count_then_frame_on_one_connection(wh: Warehouse) -> None:
    # a half-read result left by count() made the next con.sql() fail ("unfinished result")
    wh.con.execute("INSERT INTO vehicles (vin, msrp_cny, energy_type) VALUES ('V1', 1, 'BEV')")
    assert wh.count("vehicles") == 1
    assert wh.frame("SELECT vin FROM vehicles")["vin"].tolist() == ["V1"]
    assert wh.count("motion") == 0
    assert wh.frame("SELECT count(*) AS n FROM motion")["n"].tolist() == [0]
