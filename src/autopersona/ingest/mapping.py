"""Mapping files: how a foreign source's columns become a contract's columns.

A mapping is YAML validated with pydantic (unknown keys rejected, errors with file:line).
It names the source format and its quirks, then one or more *targets* (contract tables),
each with a spec per contract column::

    name: twizy
    format: csv
    targets:
      - table: motion
        columns:
          vin: {value: "TWIZY-{file_parent}"}
          ts: {from: [Date, Time], format: "%m/%d/%Y %H:%M:%S", timezone: Africa/Casablanca}
          speed_mps: {from: GpsSpeed, unit: km/h}

Template variables in ``value`` strings: ``{file_stem}``, ``{file_name}``, ``{file_parent}``,
``{file_grandparent}``, ``{row}`` (the source row/line number), ``{index}`` (1-based position of
the record: row minus the first data row plus one), plus ``vars`` and the entry
of ``file_vars`` whose key is the file's name.

Examples
--------
>>> m = Mapping.identity("pois", ["poi_id", "name", "category", "lat", "lon"])
>>> sorted(m.targets[0].columns)
['category', 'lat', 'lon', 'name', 'poi_id']
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autopersona.catalog import CatalogError, CatalogIssue, line_for, load_yaml_with_lines
from autopersona.catalog import issues_from_validation as _issues
from autopersona.contracts import get_contract, load_contracts
from autopersona.units import UnitError, affine

__all__ = [
    "ColumnSpec",
    "Condition",
    "CsvOptions",
    "Mapping",
    "Target",
    "builtin_mappings",
    "load_mapping",
    "resolve_mapping",
]

Scalar = str | int | float | bool
Format = Literal["csv", "parquet", "jsonl", "plt", "xlsx", "candump"]
_TEMPLATE_VARS = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ColumnSpec(_Strict):
    """How one contract column is computed from the source.

    Exactly one of ``from`` (source column, or several joined by a space), ``value``
    (constant or template), ``json_of`` (source columns packed as JSON) or
    ``row_number_within`` (1-based position of the row within groups of those columns,
    in file order) gives the raw value; the other keys transform it.
    """

    from_: str | list[str] | None = Field(default=None, alias="from")
    value: Scalar | None = None
    json_of: list[str] | None = None
    row_number_within: list[str] | None = None
    unit: str | None = None
    format: str | None = None
    timezone: str | None = None
    epoch: Literal["s", "ms", "us"] | None = None
    elapsed_since: str | None = None
    spread_ties: bool = False
    map: dict[str, Scalar | None] | None = None
    lower: bool = False
    startswith: str | None = None
    as_integer: bool = False
    prefix: str | None = None
    null_values: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_source(self) -> ColumnSpec:
        given = [
            k
            for k in ("from_", "value", "json_of", "row_number_within")
            if getattr(self, k) is not None
        ]
        if len(given) != 1:
            names = [g.rstrip("_") for g in given]
            raise ValueError(
                "give exactly one of from / value / json_of / row_number_within"
                + (f" (got {', '.join(names)})" if names else "")
            )
        if self.spread_ties and self.elapsed_since is None:
            raise ValueError("spread_ties needs elapsed_since")
        if self.epoch and (self.format or self.elapsed_since):
            raise ValueError("epoch excludes format and elapsed_since")
        return self

    @property
    def sources(self) -> list[str]:
        """Source columns this spec reads."""
        if isinstance(self.from_, str):
            return [self.from_]
        return list(self.from_ or self.json_of or self.row_number_within or [])


class Condition(_Strict):
    """Route only the rows where ``column`` equals / differs from / is in the given values."""

    column: str
    equals: Scalar | None = None
    not_equals: Scalar | None = None
    in_: list[Scalar] | None = Field(default=None, alias="in")

    @model_validator(mode="after")
    def _one_test(self) -> Condition:
        n = sum(x is not None for x in (self.equals, self.not_equals, self.in_))
        if n != 1:
            raise ValueError("give exactly one of equals / not_equals / in")
        return self


class Target(_Strict):
    """One contract table fed by the source."""

    table: str
    when: Condition | None = None
    columns: dict[str, ColumnSpec]


class CsvOptions(_Strict):
    """Reading options for delimited text (also used by ``plt``)."""

    delimiter: str = ","
    header: bool = True
    skip_rows: int = Field(default=0, ge=0)
    column_names: list[str] | None = None
    trailing_delimiter: bool = False
    skip_initial_space: bool = False
    encoding: str = "utf-8"


class Mapping(_Strict):
    """A source → contract mapping."""

    name: str
    description: str = ""
    source: str = ""
    licence: str = ""
    format: Format | None = None
    files: str | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    sheet: str | int | None = None
    null_values: list[str] = Field(default_factory=lambda: [""])
    vars: dict[str, str] = Field(default_factory=dict)
    file_vars: dict[str, dict[str, str]] = Field(default_factory=dict)
    targets: list[Target] = Field(min_length=1)
    origin: str | None = Field(default=None, exclude=True)

    @classmethod
    def identity(cls, table: str, source_columns: list[str]) -> Mapping:
        """The mapping of a file that already has the contract's column names and units."""
        contract = get_contract(table)
        cols = {c: ColumnSpec.model_validate({"from": c}) for c in contract.column_names}
        present = set(source_columns)
        cols = {k: v for k, v in cols.items() if k in present}
        return cls(name=f"identity:{table}", targets=[Target(table=table, columns=cols)])

    def variables(self, path: Path) -> dict[str, str]:
        """Template variables for one file."""
        out = {
            "file_stem": path.stem,
            "file_name": path.name,
            "file_parent": path.parent.name,
            "file_grandparent": path.parent.parent.name,
        }
        out.update(self.vars)
        out.update(self.file_vars.get(path.name, {}))
        return out


def semantic_issues(m: Mapping, file: str, lines: dict[Any, int]) -> list[CatalogIssue]:
    """Checks beyond the schema: known tables and columns, convertible units, required columns."""
    out: list[CatalogIssue] = []
    contracts = load_contracts()

    def issue(loc: tuple[Any, ...], msg: str) -> None:
        out.append(CatalogIssue(file, line_for(lines, loc), " -> ".join(map(str, loc)), msg))

    for i, t in enumerate(m.targets):
        if t.table not in contracts:
            issue(("targets", i, "table"), f"unknown table {t.table!r}")
            continue
        c = contracts[t.table]
        for name, spec in t.columns.items():
            loc = ("targets", i, "columns", name)
            if name not in c.column_names:
                issue(loc, f"{t.table} has no column {name!r}")
                continue
            col = c.column(name)
            if spec.unit is not None:
                if col.unit is None:
                    issue(loc, f"{name} has no unit in the contract; remove unit")
                else:
                    try:
                        affine(spec.unit, col.unit)
                    except UnitError as exc:
                        issue(loc, str(exc))
            if (
                spec.format or spec.timezone or spec.epoch or spec.elapsed_since
            ) and col.type not in (
                "timestamp",
                "date",
            ):
                issue(loc, "format/timezone/epoch/elapsed_since apply to timestamp columns")
            if isinstance(spec.value, str):
                for var in _TEMPLATE_VARS.findall(spec.value):
                    known = {
                        "file_stem",
                        "file_name",
                        "file_parent",
                        "file_grandparent",
                        "row",
                        "index",
                    }
                    known |= set(m.vars)
                    for fv in m.file_vars.values():
                        known |= set(fv)
                    if var not in known:
                        issue(loc, f"unknown template variable {{{var}}}")
        for col in c.columns:
            if col.name not in t.columns and not col.nullable and col.missing_rule != "fill":
                issue(("targets", i, "columns"), f"required column {col.name!r} is not mapped")
    return out


def load_mapping(path: str | Path) -> Mapping:
    """Load a mapping file; every problem is reported with file and line.

    Raises
    ------
    CatalogError
        On YAML, schema or semantic errors.
    """
    data, lines = load_yaml_with_lines(path)
    try:
        m = Mapping.model_validate(data)
    except Exception as exc:
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            raise CatalogError(_issues(path, exc, lines)) from None
        raise
    problems = semantic_issues(m, str(path), lines)
    if problems:
        raise CatalogError(problems)
    return m.model_copy(update={"origin": str(path)})


def _builtin_dir() -> Path:
    return Path(str(resources.files("autopersona.ingest") / "mappings"))


def builtin_mappings() -> dict[str, Path]:
    """Mappings shipped with autopersona, by name (file stem)."""
    return {p.stem: p for p in sorted(_builtin_dir().glob("*.yaml"))}


def resolve_mapping(name_or_path: str | Path) -> Mapping:
    """Load a mapping by file path, or by the name of a built-in mapping (e.g. ``twizy``).

    Raises
    ------
    FileNotFoundError
        If it is neither a file nor a built-in name.
    """
    p = Path(name_or_path)
    if p.is_file():
        return load_mapping(p)
    builtins = builtin_mappings()
    if str(name_or_path) in builtins:
        return load_mapping(builtins[str(name_or_path)])
    raise FileNotFoundError(
        f"no mapping file {str(name_or_path)!r} and no built-in mapping of that name "
        f"(built-in: {', '.join(builtins) or 'none'})"
    )
