"""Regenerate sample_drive.log and sample_drive.expected.json (run from the repo root).

    .venv/bin/python tests/data/can/regenerate.py

The expected values are computed here from the simulator's ground truth (the quantized
values that were encoded), with a deliberately simple as-of lookup that does not use the
decoder, so the golden test checks the decoder against an independent calculation.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autopersona.ingest.can import sample_drive_messages, write_sample_candump

HERE = Path(__file__).parent
PARAMS: dict[str, Any] = {"seconds": 90.0, "seed": 4, "min_cycle_s": 1.0, "charger": "public_dc"}
VIN = "LSVAU2180N2000001"
#: Grid times (seconds after the start) at which the golden test compares every column.
CHECK_AT_S = [2, 5, 8, 20, 35, 50, 58, 62, 70, 85]

# column -> (message, signal, conversion of the physical DBC value)
COLUMNS: dict[str, tuple[str, str, Any]] = {
    "odometer_km": ("IC_Odometer", "Odometer", float),
    "speed_mps": ("VCU_DriveState", "VehicleSpeed", lambda v: v / 3.6),
    "soc_pct": ("BMS_Status", "BatterySOC", float),
    "fuel_level_pct": ("IC_Odometer", "FuelLevel", float),
    "battery_temp_c": ("BMS_Status", "BatteryTempAvg", float),
    "coolant_temp_c": ("ECM_EngineData", "CoolantTemp", float),
    "engine_rpm": ("ECM_EngineData", "EngineSpeed", float),
    "engine_load_pct": ("ECM_EngineData", "EngineLoad", float),
    "throttle_pct": ("VCU_DriveState", "AccelPedalPos", float),
    "gear": ("VCU_DriveState", "GearSelector", str),
    "ignition_on": ("VCU_DriveState", "IgnitionState", lambda v: v in ("ON", "START")),
    "charging": ("CCU_ChargeStatus", "ChargingActive", lambda v: v == "Charging"),
    "charge_power_kw": ("CCU_ChargeStatus", "ChargePower", float),
    "charger_type": ("CCU_ChargeStatus", "ChargerType", lambda v: None if v == "None" else v),
}


def main() -> None:
    info = write_sample_candump(HERE / "sample_drive.log", **PARAMS)
    truth = list(sample_drive_messages(**PARAMS))
    start_us = info.start_us
    rows = []
    for s in CHECK_AT_S:
        t_us = start_us + s * 1_000_000
        row: dict[str, Any] = {"ts": datetime.fromtimestamp(t_us / 1e6, UTC).isoformat()}
        for col, (msg, sig, conv) in COLUMNS.items():
            seen = [(ts, v[sig]) for ts, m, v in truth if m == msg and sig in v and ts <= t_us]
            ts, value = seen[-1]
            assert t_us - ts <= 3_000_000, (col, s)
            row[col] = conv(value)
        rows.append(row)
    doc = {
        "about": "Synthetic: write_sample_candump(**params); rows from the simulator truth.",
        "params": PARAMS,
        "vin": VIN,
        "lines": info.lines,
        "frames_by_message": info.frames_by_message,
        "rows": rows,
    }
    (HERE / "sample_drive.expected.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {info.lines} lines; charger {info.charger}")


if __name__ == "__main__":
    main()
