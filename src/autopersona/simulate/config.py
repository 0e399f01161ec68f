"""Simulation settings: the mess (data-quality fault) configuration and the run summary.

Examples
--------
>>> from autopersona.simulate.config import MessConfig
>>> MessConfig().gps_drift_rate > 0
True
>>> MessConfig.clean().enabled
False
>>> MessConfig().scaled(2.0).duplicate_rate == 2 * MessConfig().duplicate_rate
True
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "COMMERCE_HISTORY_DAYS",
    "DEFAULT_START",
    "MessConfig",
    "SimulationSummary",
]

#: Default first simulated day (a Monday).
DEFAULT_START = date(2026, 1, 5)

#: E-commerce activity is simulated for this many days before the window start, so that
#: RFM, repurchase intervals and churn warnings have some history to work with.
COMMERCE_HISTORY_DAYS = 180


class MessConfig(BaseModel):
    """Rates of injected real-world data faults.

    Every rate is a fraction of the rows of the tables the fault applies to (see
    :mod:`autopersona.simulate.mess` for the table and column lists). Everything injected
    is recorded in ``truth/mess.parquet``.

    Parameters
    ----------
    gps_drift_rate
        Fraction of ``motion`` fixes replaced by a single drift spike (a fix jumping
        ``gps_drift_min_m``..``gps_drift_max_m`` away from its true position and back).
    gps_drift_min_m, gps_drift_max_m
        Size of a drift spike in metres.
    can_jump_rate
        Fraction of ``vehicle_signals`` rows (while driving, 10 s sampling) where the SOC
        or fuel level jumps by ``can_jump_min_pct``..``can_jump_max_pct`` points for one
        sample and comes back.
    can_jump_min_pct, can_jump_max_pct
        Size of a CAN jump in percentage points.
    duplicate_rate
        Fraction of rows of the event tables written twice (exact duplicates).
    missing_rate
        Fraction of values nulled in selected nullable columns.
    out_of_order_rate
        Fraction of rows of the time-series tables delivered late: moved further down
        the file, out of time order.

    Examples
    --------
    >>> m = MessConfig(gps_drift_rate=0.01)
    >>> m.scaled(0.5).gps_drift_rate
    0.005
    >>> MessConfig.clean().scaled(3.0).enabled
    False
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    gps_drift_rate: float = Field(default=0.0005, ge=0, le=0.2)
    gps_drift_min_m: float = Field(default=250.0, gt=0)
    gps_drift_max_m: float = Field(default=1500.0, gt=0)
    can_jump_rate: float = Field(default=0.002, ge=0, le=0.2)
    can_jump_min_pct: float = Field(default=25.0, gt=0, le=100)
    can_jump_max_pct: float = Field(default=45.0, gt=0, le=100)
    duplicate_rate: float = Field(default=0.002, ge=0, le=0.5)
    missing_rate: float = Field(default=0.005, ge=0, le=0.5)
    out_of_order_rate: float = Field(default=0.002, ge=0, le=0.5)

    @classmethod
    def clean(cls) -> MessConfig:
        """A configuration with every fault turned off."""
        return cls(
            gps_drift_rate=0.0,
            can_jump_rate=0.0,
            duplicate_rate=0.0,
            missing_rate=0.0,
            out_of_order_rate=0.0,
        )

    def scaled(self, factor: float) -> MessConfig:
        """Multiply every rate by ``factor`` (capped at each field's maximum)."""
        if factor < 0:
            raise ValueError("mess factor must be >= 0")
        caps = {
            "gps_drift_rate": 0.2,
            "can_jump_rate": 0.2,
            "duplicate_rate": 0.5,
            "missing_rate": 0.5,
            "out_of_order_rate": 0.5,
        }
        update = {k: min(cap, getattr(self, k) * factor) for k, cap in caps.items()}
        return self.model_copy(update=update)

    @property
    def enabled(self) -> bool:
        """Whether any fault is injected at all."""
        return any(
            r > 0
            for r in (
                self.gps_drift_rate,
                self.can_jump_rate,
                self.duplicate_rate,
                self.missing_rate,
                self.out_of_order_rate,
            )
        )


class SimulationSummary(BaseModel):
    """What :func:`autopersona.simulate.simulate` wrote.

    Attributes
    ----------
    out
        The output directory.
    rows
        Rows written per canonical table (``out/tables/<table>.parquet``).
    truth_rows
        Rows written per ground-truth table (``out/truth/<name>.parquet``).
    mess
        Number of injected faults per kind.
    """

    model_config = ConfigDict(frozen=True)

    out: Path
    vehicles: int
    days: int
    seed: int
    start: date
    rows: dict[str, int]
    truth_rows: dict[str, int]
    mess: dict[str, int]
