"""Pydantic models for table contracts: columns, units, keys, time column and cleaning rules."""

from __future__ import annotations

from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autopersona.units import check_unit

__all__ = ["CleaningRules", "Column", "ColumnType", "Contract", "GpsDrift", "Jump"]

ColumnType = Literal["string", "int64", "float64", "bool", "timestamp", "date", "json"]

#: DuckDB type for each contract type (timestamps are stored as UTC instants).
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int64": "BIGINT",
    "float64": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
    "json": "JSON",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Column(_Strict):
    """One column of a contract.

    ``missing`` says what ingestion does with a null: ``keep`` it, ``quarantine`` the row,
    ``fill`` it with ``default``, or ``ffill`` (carry the vehicle's previous value forward).
    ``out_of_range: null`` sets a value outside ``min``/``max`` to null and logs the original in
    the repairs table instead of quarantining the row (for secondary fields such as altitude).
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: ColumnType
    description: str
    unit: str | None = None
    nullable: bool = True
    allowed: list[str | int] | None = None
    min: float | None = None
    max: float | None = None
    missing: Literal["keep", "quarantine", "fill", "ffill"] | None = None
    default: str | int | float | bool | None = None
    out_of_range: Literal["quarantine", "null"] = "quarantine"
    monotonic: Literal["increasing"] | None = None
    pii: bool = False
    #: An identifier identity linkage compares (a ``pii`` VIN, phone or e-mail column):
    #: pseudonymisation at ingest also stores its keyed comparison keys
    #: (:mod:`autopersona.identity.keys`).
    linkage: bool = False

    @pydantic.field_validator("unit")
    @classmethod
    def _unit_known(cls, v: str | None) -> str | None:
        if v is not None:
            check_unit(v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Column:
        if self.missing == "fill" and self.default is None:
            raise ValueError("missing: fill needs a default")
        if self.linkage and not (self.pii and self.name in ("vin", "phone", "email")):
            raise ValueError("linkage: only on a pii column named vin, phone or email")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if (self.min is not None or self.max is not None) and self.type not in (
            "int64",
            "float64",
        ):
            raise ValueError("min/max apply to numeric columns only")
        return self

    @property
    def missing_rule(self) -> str:
        """The effective rule for nulls (non-nullable columns quarantine by default)."""
        if self.missing is not None:
            return self.missing
        return "keep" if self.nullable else "quarantine"

    @property
    def duckdb_type(self) -> str:
        """The DuckDB column type."""
        return DUCKDB_TYPES[self.type]


class GpsDrift(_Strict):
    """Quarantine a fix whose implied speed to both neighbours exceeds ``max_speed_mps``."""

    lat: str = "lat"
    lon: str = "lon"
    max_speed_mps: float = Field(default=90.0, gt=0)


class Jump(_Strict):
    """Quarantine a sample whose value jumps away from *both* neighbours faster than allowed."""

    column: str
    max_rate_per_s: float = Field(gt=0)
    min_jump: float = Field(default=0.0, ge=0)


class CleaningRules(_Strict):
    """Cleaning a contract declares; applied by ingestion within each vehicle's time order."""

    gps_drift: GpsDrift | None = None
    jumps: list[Jump] = Field(default_factory=list)


class AlignSpec(_Strict):
    """An as-of join that ``align`` views use: attach the latest ``columns`` of ``table``."""

    table: str
    columns: list[str]
    tolerance_s: float = Field(gt=0)


class Contract(_Strict):
    """A canonical table: its columns, key, time column and cleaning rules.

    Examples
    --------
    >>> from autopersona.contracts import get_contract
    >>> c = get_contract("motion")
    >>> c.primary_key
    ['vin', 'ts']
    >>> c.column("speed_mps").unit
    'm/s'
    """

    table: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    domain: Literal[
        "master",
        "vehicle_status",
        "driving_behaviour",
        "cabin",
        "v2x",
        "trips",
        "service",
        "commerce",
        "privacy",
        "feedback",
    ]
    description: str
    columns: list[Column]
    primary_key: list[str]
    entity: str | None = None
    time_column: str | None = None
    cleaning: CleaningRules = Field(default_factory=CleaningRules)
    align: list[AlignSpec] = Field(default_factory=list)
    retention_days: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check_refs(self) -> Contract:
        names = [c.name for c in self.columns]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate column(s): {sorted(dup)}")
        known = set(names)
        refs: list[tuple[str, str]] = [("primary_key", k) for k in self.primary_key]
        if self.time_column:
            refs.append(("time_column", self.time_column))
        if self.entity:
            refs.append(("entity", self.entity))
        if self.cleaning.gps_drift:
            refs += [("gps_drift", self.cleaning.gps_drift.lat)]
            refs += [("gps_drift", self.cleaning.gps_drift.lon)]
        refs += [("jumps", j.column) for j in self.cleaning.jumps]
        for what, col in refs:
            if col not in known:
                raise ValueError(f"{what} names unknown column {col!r}")
        if self.time_column and self.column(self.time_column).type != "timestamp":
            raise ValueError("time_column must be a timestamp column")
        for k in self.primary_key:
            if self.column(k).nullable:
                raise ValueError(f"primary key column {k!r} must not be nullable")
        return self

    def column(self, name: str) -> Column:
        """Return the column called ``name``.

        Raises
        ------
        KeyError
            If the contract has no such column.
        """
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.table} has no column {name!r}")

    @property
    def column_names(self) -> list[str]:
        """Column names in declared order."""
        return [c.name for c in self.columns]

    def ddl(self, name: str | None = None) -> str:
        """``CREATE TABLE IF NOT EXISTS`` for DuckDB."""
        cols = ", ".join(f'"{c.name}" {c.duckdb_type}' for c in self.columns)
        return f'CREATE TABLE IF NOT EXISTS "{name or self.table}" ({cols})'

    def summary(self) -> dict[str, Any]:
        """A plain-dict view for printing and JSON."""
        return self.model_dump(exclude_defaults=True)
