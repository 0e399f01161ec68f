"""Ingestion: validate, clean, de-duplicate and load source files into the warehouse.

For each file and each target table of its mapping the engine runs, inside DuckDB:

1. **stage** the file (:mod:`autopersona.ingest.readers`), keeping line numbers;
2. **exact duplicates** of a source record are dropped and counted;
3. **typing and validation** per contract column: parse, convert units, nulls by the column's
   ``missing`` rule, ranges, allowed values, plausible timestamps — every failure is a reason
   naming the row and the field;
4. **key conflicts**: two rows with one primary key but different values — the later one is
   quarantined;
5. **cleaning** in each entity's time order: GPS drift spikes (implied speed to *both*
   neighbours above the limit), CAN signal jumps (a sample jumping away from both neighbours),
   monotonic columns going backwards; then forward-fill of ``missing: ffill`` columns;
6. **idempotent load**: rows already in the warehouse with the same key and values count as
   duplicates, same key with other values are quarantined, the rest is inserted.

Every row read ends up in exactly one of loaded / duplicates / quarantined, and the engine
checks that the counts add up.  Quarantined rows keep file, row, field, reason and the raw
record.  Each file is one transaction: a file that fails as a whole loads nothing.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from autopersona.contracts import Contract, get_contract
from autopersona.contracts.model import Column
from autopersona.ingest.errors import IngestError
from autopersona.ingest.mapping import ColumnSpec, Condition, Mapping, Target
from autopersona.ingest.readers import Staged, detect_format, stage_file
from autopersona.store.warehouse import QUARANTINE_TABLE, REPAIRS_TABLE, RUNS_TABLE, Warehouse
from autopersona.units import affine

__all__ = [
    "TRUTH_MARKER",
    "FileReport",
    "IngestReport",
    "TargetReport",
    "ingest",
    "ingest_file",
]

#: A folder holding this file is simulator ground truth; ingestion refuses to read it.
TRUTH_MARKER = ".autopersona-truth"
MIN_TS = "1980-01-01"
MAX_FUTURE = "7 days"
MAX_TS = "2100-01-01"
_HAVERSINE = (
    "2 * 6371008.8 * asin(sqrt(pow(sin(radians({la2} - {la1}) / 2), 2) + "
    "cos(radians({la1})) * cos(radians({la2})) * pow(sin(radians({lo2} - {lo1}) / 2), 2)))"
)


@dataclass
class TargetReport:
    """Counts for one target table of one file: ``read = loaded + duplicates + quarantined``."""

    table: str
    read: int = 0
    loaded: int = 0
    duplicates: int = 0
    quarantined: int = 0
    out_of_order: int = 0
    repaired: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def check(self) -> None:
        """Raise if the counts do not add up (an internal error, never expected)."""
        if self.read != self.loaded + self.duplicates + self.quarantined:
            raise AssertionError(f"counts do not add up for {self.table}: {self}")


@dataclass
class FileReport:
    """What happened to one file."""

    path: str
    sha256: str
    mapping: str
    source_rows: int
    targets: list[TargetReport]
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class IngestReport:
    """Totals over files; ``read`` sums every target's rows so the keys add up."""

    run_id: str
    files: list[FileReport] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def _sum(self, key: str) -> int:
        return sum(int(getattr(t, key)) for f in self.files for t in f.targets)

    @property
    def read(self) -> int:
        """Rows read, summed over targets."""
        return self._sum("read")

    @property
    def loaded(self) -> int:
        """Rows loaded."""
        return self._sum("loaded")

    @property
    def duplicates(self) -> int:
        """Rows dropped as exact duplicates."""
        return self._sum("duplicates")

    @property
    def quarantined(self) -> int:
        """Rows quarantined with a reason."""
        return self._sum("quarantined")

    def by_table(self) -> dict[str, TargetReport]:
        """Counts per target table over all files."""
        out: dict[str, TargetReport] = {}
        for f in self.files:
            for t in f.targets:
                agg = out.setdefault(t.table, TargetReport(t.table))
                for k in (
                    "read",
                    "loaded",
                    "duplicates",
                    "quarantined",
                    "out_of_order",
                    "repaired",
                ):
                    setattr(agg, k, getattr(agg, k) + getattr(t, k))
                for r, n in t.reasons.items():
                    agg.reasons[r] = agg.reasons.get(r, 0) + n
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the keys ``read``, ``loaded``, ``duplicates``, ``quarantined``."""
        return {
            "run_id": self.run_id,
            "read": self.read,
            "loaded": self.loaded,
            "duplicates": self.duplicates,
            "quarantined": self.quarantined,
            "tables": {k: asdict(v) for k, v in self.by_table().items()},
            "files": [asdict(f) for f in self.files],
            "errors": self.errors,
            "skipped": self.skipped,
        }


# ============================================================================ helpers
def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, float)):
        return repr(v)
    return "'" + str(v).replace("'", "''") + "'"


def sha256_file(path: Path) -> str:
    """SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_truth(path: Path) -> bool:
    p = path.resolve()
    return any((d / TRUTH_MARKER).exists() for d in [p if p.is_dir() else p.parent, *p.parents])


def expand_paths(paths: Iterable[str | Path], pattern: str | None = None) -> list[Path]:
    """Files named, and files under folders named (sorted), skipping hidden files.

    Raises
    ------
    IngestError
        For a path that does not exist, or one holding simulator ground truth.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise IngestError("no such file or folder", file=str(p))
        if _is_truth(p):
            raise IngestError(
                "this is simulator ground truth; no pipeline step may read it", file=str(p)
            )
        if p.is_dir():
            found = sorted(p.rglob(pattern or "*"))
            out.extend(
                f
                for f in found
                if f.is_file()
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
                and (pattern is not None or f.suffix.lower() in _KNOWN)
                and not _is_truth(f)
            )
        else:
            out.append(p)
    return out


_KNOWN = {".parquet", ".pq", ".csv", ".tsv", ".jsonl", ".ndjson", ".json", ".plt", ".xlsx", ".log"}


def infer_table(path: Path) -> str | None:
    """The contract a canonically named file belongs to (``motion.parquet`` → ``motion``)."""
    from autopersona.contracts import load_contracts

    names = load_contracts()
    for cand in (path.stem, path.parent.name):
        base = cand.split(".")[0]
        if base in names:
            return base
    return None


# ============================================================================ SQL building
@dataclass
class _Col:
    name: str
    value: str  # typed value expression (after fill)
    reason: str  # reason expression (NULL when fine)
    field: str  # source field(s) named in messages
    repair: str = "NULL"  # repair message expression (value nulled), NULL when none


class _Builder:
    """Builds the typed projection of one target from the staged source."""

    def __init__(
        self,
        target: Target,
        contract: Contract,
        src_types: dict[str, str],
        variables: dict[str, str],
        first_row: int = 1,
    ) -> None:
        self.first_row = first_row
        self.t = target
        self.c = contract
        self.types = src_types
        self.vars = variables

    def _src_is_text(self, name: str) -> bool:
        return self.types.get(name, "VARCHAR") in ("VARCHAR", "BLOB")

    def _raw(self, spec: ColumnSpec, nulls: list[str]) -> tuple[str, bool]:
        """(raw expression, is_text) for a spec."""
        if spec.value is not None:
            v = spec.value
            if isinstance(v, str):
                text = v
                for k, val in self.vars.items():
                    text = text.replace("{" + k + "}", val)
                e = _lit(text)
                if "{row}" in text:
                    e = f"replace({e}, '{{row}}', CAST(_row AS VARCHAR))"
                if "{index}" in text:
                    e = f"replace({e}, '{{index}}', CAST(_row - {self.first_row - 1} AS VARCHAR))"
                return e, True
            return _lit(v), False
        if spec.json_of is not None:
            missing = [s for s in spec.json_of if s not in self.types]
            if missing:
                raise IngestError(f"mapping packs missing source column(s) {missing} as JSON")
            inner = ", ".join(f"{_q(s)} := {_q(s)}" for s in spec.json_of)
            return f"to_json(struct_pack({inner}))", False
        if spec.row_number_within is not None:
            part = ", ".join(_q(s) for s in spec.row_number_within)
            return f"row_number() OVER (PARTITION BY {part} ORDER BY _row)", False
        srcs = spec.sources
        exprs = []
        for s in srcs:
            if s not in self.types:
                raise IngestError(f"source has no column {s!r} (mapped to {self.t.table})", field=s)
            e = _q(s)
            if self.types.get(s) in ("DOUBLE", "FLOAT"):
                e = f"CASE WHEN isnan({e}) THEN NULL ELSE {e} END"  # NaN is pandas' null
            if self._src_is_text(s):
                allnulls = [*nulls, *spec.null_values]
                e = f"trim({e})"
                if allnulls:
                    e = f"CASE WHEN {e} IN ({', '.join(_lit(n) for n in allnulls)}) THEN NULL ELSE {e} END"
            exprs.append(e)
        if len(exprs) == 1:
            return exprs[0], self._src_is_text(srcs[0])
        anynull = " OR ".join(f"({e}) IS NULL" for e in exprs)
        joined = " || ' ' || ".join(f"CAST({e} AS VARCHAR)" for e in exprs)
        return f"CASE WHEN {anynull} THEN NULL ELSE {joined} END", True

    def column(self, col: Column, nulls: list[str]) -> _Col:
        spec = self.t.columns.get(col.name)
        if spec is None:
            typed = f"CAST(NULL AS {col.duckdb_type})"
            raw, text = "NULL", False
            fieldname = col.name
        else:
            raw, text = self._raw(spec, nulls)
            fieldname = ", ".join(spec.sources) or col.name
            if spec.as_integer:
                raw = f"CAST(TRY_CAST(TRY_CAST({raw} AS DOUBLE) AS BIGINT) AS VARCHAR)"
                text = True
            if spec.prefix is not None:
                raw = f"({_lit(spec.prefix)} || CAST({raw} AS VARCHAR))"
                text = True
            if spec.lower:
                raw = f"lower(CAST({raw} AS VARCHAR))"
                text = True
            if spec.map:
                cases = " ".join(
                    f"WHEN {_lit(str(k))} THEN {_lit(v) if v is None else _lit(str(v))}"
                    for k, v in spec.map.items()
                )
                raw = f"CASE CAST({raw} AS VARCHAR) {cases} ELSE CAST({raw} AS VARCHAR) END"
                text = True
            if spec.startswith is not None:
                raw = f"starts_with(CAST({raw} AS VARCHAR), {_lit(spec.startswith)})"
                text = False
            typed = f"CAST(({self._typed(col, spec, raw, text)}) AS {col.duckdb_type})"
        parse_fail = "FALSE" if spec is None else f"({raw}) IS NOT NULL AND ({typed}) IS NULL"
        value = typed
        if col.missing_rule == "fill":
            value = f"coalesce({typed}, {_lit(col.default)})"
        checks: list[tuple[str, str]] = []
        shown = f"left(CAST({raw} AS VARCHAR), 80)"
        how = col.type + (f" with format {spec.format}" if spec and spec.format else "")
        checks.append(
            (parse_fail, f"format('{col.name}: cannot parse ''{{}}'' as {how}', {shown})")
        )
        if col.missing_rule == "quarantine":
            checks.append((f"({typed}) IS NULL", _lit(f"{col.name}: missing value (required)")))
        ranges: list[tuple[str, str]] = []
        if col.min is not None:
            ranges.append(
                (
                    f"({typed}) < {col.min!r}",
                    f"format('{col.name}: {{}} below minimum {col.min:g}', {typed})",
                )
            )
        if col.max is not None:
            ranges.append(
                (
                    f"({typed}) > {col.max!r}",
                    f"format('{col.name}: {{}} above maximum {col.max:g}', {typed})",
                )
            )
        repair = "NULL"
        if col.out_of_range == "null" and ranges:
            bad = " OR ".join(f"({cond})" for cond, _ in ranges)
            value = f"CASE WHEN {bad} THEN NULL ELSE {value} END"
            repair = (
                "CASE "
                + " ".join(f"WHEN {cond} THEN {msg} || ' (set to null)'" for cond, msg in ranges)
                + " END"
            )
        else:
            checks.extend(ranges)
        if col.allowed:
            allowed = ", ".join(_lit(a) for a in col.allowed)
            shown_allowed = ", ".join(str(a) for a in col.allowed).replace("'", "''")
            checks.append(
                (
                    f"({typed}) NOT IN ({allowed})",
                    f"format('{col.name}: ''{{}}'' is not one of {shown_allowed}', {typed})",
                )
            )
        if col.type == "timestamp":
            # The event time may not lie in the future (clock faults); other instants may
            # (a trial's end date), within reason.
            upper = (
                f"now() + INTERVAL '{MAX_FUTURE}'"
                if col.name == self.c.time_column
                else f"TIMESTAMPTZ '{MAX_TS}'"
            )
            checks.append(
                (
                    f"({typed}) < TIMESTAMPTZ '{MIN_TS}' OR ({typed}) > {upper}",
                    f"format('{col.name}: {{}} is outside the plausible range', {typed})",
                )
            )
        whens = " ".join(f"WHEN {cond} THEN {msg}" for cond, msg in checks)
        reason = f"CASE {whens} END"
        return _Col(col.name, value, reason, fieldname, repair)

    def _typed(self, col: Column, spec: ColumnSpec, raw: str, text: bool) -> str:
        t = col.type
        v = f"CAST({raw} AS VARCHAR)"
        if t == "string":
            return v
        if t == "float64":
            e = f"TRY_CAST({raw} AS DOUBLE)"
            if spec.unit and col.unit and spec.unit != col.unit:
                a, b = affine(spec.unit, col.unit)
                e = f"({e} * {a!r} + {b!r})"
            return e
        if t == "int64":
            if not text:
                return f"TRY_CAST({raw} AS BIGINT)"
            d = f"TRY_CAST({raw} AS DOUBLE)"
            return f"CASE WHEN {d} = floor({d}) AND abs({d}) < 9e18 THEN CAST({d} AS BIGINT) END"
        if t == "bool":
            if not text:
                return f"TRY_CAST({raw} AS BOOLEAN)"
            lv = f"lower(trim({v}))"
            return (
                f"CASE WHEN {lv} IN ('true','t','1','yes','y','1.0') THEN TRUE "
                f"WHEN {lv} IN ('false','f','0','no','n','0.0') THEN FALSE END"
            )
        if t == "json":
            return raw if spec.json_of else f"TRY_CAST({v} AS JSON)"
        if t == "date":
            if spec.format:
                return f"CAST(try_strptime({v}, {_fmt_list(spec.format)}) AS DATE)"
            return f"TRY_CAST({raw} AS DATE)"
        # timestamp
        tz = spec.timezone
        if spec.epoch:
            div = {"s": 1, "ms": 1_000, "us": 1_000_000}[spec.epoch]
            return f"to_timestamp(TRY_CAST({raw} AS DOUBLE) / {div})"
        if spec.elapsed_since:
            base = spec.elapsed_since
            for k, val in self.vars.items():
                base = base.replace("{" + k + "}", val)
            secs = f"TRY_CAST({raw} AS DOUBLE)"
            if spec.spread_ties:
                secs = (
                    f"({secs} + (row_number() OVER (PARTITION BY {raw} ORDER BY _row) - 1)"
                    f" / count(*) OVER (PARTITION BY {raw}))"
                )
            return (
                f"(CAST({_lit(base)} AS TIMESTAMPTZ) + "
                f"to_microseconds(CAST(round({secs} * 1e6) AS BIGINT)))"
            )
        if spec.format:
            naive = f"try_strptime({v}, {_fmt_list(spec.format)})"
            if "%z" in spec.format or "%Z" in spec.format:
                return naive
            return f"timezone({_lit(tz or 'UTC')}, {naive})"
        src_type = self.types.get(spec.sources[0], "VARCHAR") if spec.sources else "VARCHAR"
        if src_type.startswith("TIMESTAMP WITH TIME ZONE"):
            return raw
        if src_type.startswith("TIMESTAMP") or src_type == "DATE":
            return f"timezone({_lit(tz or 'UTC')}, CAST({raw} AS TIMESTAMP))"
        if tz:
            return f"timezone({_lit(tz)}, TRY_CAST({v} AS TIMESTAMP))"
        return f"TRY_CAST({v} AS TIMESTAMPTZ)"


def _fmt_list(fmt: str | list[str]) -> str:
    if isinstance(fmt, list):
        return "[" + ", ".join(_lit(f) for f in fmt) + "]"
    return _lit(fmt)


def _when_sql(cond: Condition | None) -> str:
    if cond is None:
        return "TRUE"
    c = f"trim(CAST({_q(cond.column)} AS VARCHAR))"
    if cond.equals is not None:
        return f"{c} = {_lit(str(cond.equals))}"
    if cond.not_equals is not None:
        return f"{c} IS DISTINCT FROM {_lit(str(cond.not_equals))}"
    vals = ", ".join(_lit(str(v)) for v in (cond.in_ or []))
    return f"{c} IN ({vals})"


# ============================================================================ engine
#: Quarantine reason of a row that carries an erased person's identifier.
ERASED_REASON = "erased person"


def _privacy_hook(wh: Warehouse) -> Any:
    """Pseudonymisation at ingest when on (:class:`autopersona.privacy.pseudo.IngestHook`)."""
    hook = getattr(wh, "ingest_hook", None)
    if hook is None:
        from autopersona.settings import get_settings

        if get_settings().pseudonymise:
            from autopersona.privacy.pseudo import IngestHook

            hook = IngestHook.from_settings()
            setattr(wh, "ingest_hook", hook)  # noqa: B010 (not a Warehouse attribute)
    if hook is not None:
        hook.install(wh.con)
    return hook


class _Run:
    def __init__(self, wh: Warehouse, run_id: str) -> None:
        self.wh = wh
        self.con: duckdb.DuckDBPyConnection = wh.con
        self.run_id = run_id
        self.hook = _privacy_hook(wh)
        self._suppression: bool | None = None  # erased identifiers on file (read once)

    def suppress(self, c: Any) -> None:
        """Quarantine rows carrying an erased person's identifier (``_ap_typed`` in place).

        Erasure (:func:`autopersona.privacy.erase.erase_person`) leaves keyed hashes of the
        person's identifiers in ``erasure_suppression``; a row whose personal-data column
        (``pii`` in the contract) holds one of them gets the reason, so re-delivered data of
        an erased person is kept out of every table (and of future training sets).  Its
        quarantine row keeps file, row, field and reason but not the raw record.
        """
        con = self.con
        if self._suppression is None:
            from autopersona.privacy.erase import SUPPRESSION_TABLE

            n = self.one(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                [SUPPRESSION_TABLE],
            )
            self._suppression = bool(n) and bool(
                self.one(f"SELECT count(*) FROM {SUPPRESSION_TABLE}")
            )
        if not self._suppression:
            return
        from autopersona.privacy.erase import suppressed

        for col in c.columns:
            if not col.pii:
                continue
            name = _q(col.name)
            values = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT CAST({name} AS VARCHAR) FROM _ap_typed "
                    f"WHERE {name} IS NOT NULL"
                ).fetchall()
            ]
            hit = sorted(suppressed(self.wh, values))
            if not hit:
                continue
            reason = f"{ERASED_REASON}: {col.name} is on the erasure suppression list"
            con.execute(
                f"UPDATE _ap_typed SET _reasons = list_append(_reasons, {_lit(reason)}), "
                f"_field = coalesce(_field, {_lit(col.name)}) "
                f"WHERE CAST({name} AS VARCHAR) IN (SELECT unnest(?::VARCHAR[]))",
                [hit],
            )

    def one(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        rows = self.con.execute(sql, list(params or [])).fetchall()
        return rows[0][0] if rows else None

    def target(
        self,
        staged: Staged,
        decoded: str,
        target: Target,
        mapping: Mapping,
        path: Path,
        sha: str,
        variables: dict[str, str],
    ) -> TargetReport:
        con = self.con
        c = get_contract(target.table)
        rep = TargetReport(c.table)
        types = {r[0]: r[1] for r in con.execute(f'DESCRIBE "{decoded}"').fetchall()}
        for cond_col in [target.when.column] if target.when else []:
            if cond_col not in types:
                raise IngestError(
                    f"condition column {cond_col!r} is not in the source", file=str(path)
                )
        b = _Builder(target, c, types, variables, staged.first_row)
        cols = [b.column(col, mapping.null_values) for col in c.columns]
        if self.hook is not None:  # identifiers become pseudonyms before any table sees them
            row = {col.name: x.value for col, x in zip(c.columns, cols, strict=True)}
            cols = [
                replace(x, value=self.hook.wrap(col, x.value, row=row))
                for col, x in zip(c.columns, cols, strict=True)
            ]
        src_cols = [x for x in staged.columns if x in types]
        where = _when_sql(target.when)

        # reader errors belong to every target
        rep.read += staged.reader_errors

        # Quarantined rows are collected step by step into _ap_q (row, field, reason, raw).
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _ap_q (_row BIGINT, field VARCHAR, reason VARCHAR, raw VARCHAR)"
        )
        if staged.reader_errors:
            con.execute(
                f'INSERT INTO _ap_q SELECT _row, field, reason, raw FROM "{staged.errors_table}"'
            )

        # 1+2. the rows this target takes, typed, with every problem of each row as a reason.
        # Identical source records are duplicates before mapping only when the mapping computes
        # key values from row order (row_number_within, spread_ties); otherwise duplicates are
        # found on the mapped key below, which is cheaper and equivalent.
        computed_keys = any(
            sp.row_number_within is not None or sp.spread_ties for sp in target.columns.values()
        )
        positional = any(
            isinstance(sp.value, str) and ("{row}" in sp.value or "{index}" in sp.value)
            for sp in target.columns.values()
        )
        source = f'(SELECT *, FALSE AS _dup FROM "{decoded}" WHERE {where})'
        if computed_keys and not positional:
            part = ", ".join(_q(x) for x in src_cols) or "1"
            source = (
                f"(SELECT *, row_number() OVER (PARTITION BY {part} ORDER BY _row) > 1 AS _dup "
                f'FROM "{decoded}" WHERE {where})'
            )
        value_sql = ", ".join(f"{x.value} AS {_q(x.name)}" for x in cols)
        reasons = ", ".join(x.reason for x in cols)
        fields = ", ".join(
            f"CASE WHEN ({x.reason}) IS NOT NULL THEN {_lit(x.field)} END" for x in cols
        )
        utf8 = "_bad_utf8" if "_bad_utf8" in types else "CAST([] AS VARCHAR[])"
        repairs = ", ".join(x.repair for x in cols if x.repair != "NULL")
        repairs_sql = (
            f"list_filter([{repairs}], lambda r: r IS NOT NULL)"
            if repairs
            else "CAST([] AS VARCHAR[])"
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ap_typed AS
                SELECT _row, _dup, {value_sql},
                       list_concat(
                         list_transform({utf8}, lambda f: 'non-UTF-8 bytes in field ' || f),
                         list_filter([{reasons}], lambda r: r IS NOT NULL)) AS _reasons,
                       coalesce(({utf8})[1], list_filter([{fields}], lambda f: f IS NOT NULL)[1]) AS _field,
                       {repairs_sql} AS _repairs
                FROM {source} s"""
        )
        self.suppress(c)
        n_sel, n_rawdup = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE _dup) FROM _ap_typed"
        ).fetchall()[0]
        rep.read += int(n_sel)
        rep.duplicates += int(n_rawdup)
        con.execute(
            "INSERT INTO _ap_q SELECT _row, _field, array_to_string(_reasons, '; '), NULL "
            "FROM _ap_typed WHERE NOT _dup AND len(_reasons) > 0"
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _ap_rep AS SELECT _row, _repairs FROM _ap_typed "
            "WHERE NOT _dup AND len(_reasons) = 0 AND len(_repairs) > 0"
        )
        names = [_q(n) for n in c.column_names]
        collist = ", ".join(names)
        pk_names = [_q(k) for k in c.primary_key]
        pk = ", ".join(pk_names)

        # 3. exact duplicates (same key, same values as the key's first row) and key conflicts
        # (same key, other values). Only keys seen more than once need a look: a hash
        # aggregate finds them, and only their rows are windowed.
        same_first = (
            " AND ".join(
                f"{n} IS NOT DISTINCT FROM first_value({n}) OVER w"
                for n in names
                if n not in pk_names
            )
            or "TRUE"
        )
        ok = "NOT _dup AND len(_reasons) = 0"
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ap_dupkeys AS
                SELECT {pk} FROM _ap_typed WHERE {ok} GROUP BY ALL HAVING count(*) > 1"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ap_multi AS
                SELECT _row, {pk}, first_value(_row) OVER w AS _first,
                       {same_first} AS _same
                FROM (SELECT * FROM _ap_typed t SEMI JOIN _ap_dupkeys k USING ({pk}) WHERE {ok})
                WINDOW w AS (PARTITION BY {pk} ORDER BY _row)"""
        )
        rep.duplicates += int(
            self.one("SELECT count(*) FROM _ap_multi WHERE _row <> _first AND _same")
        )
        keyfmt = ", ".join(f"{k}={{}}" for k in c.primary_key)
        keyargs = ", ".join(pk_names)
        con.execute(
            f"""INSERT INTO _ap_q SELECT _row, {_lit(c.primary_key[0])},
                  format('duplicate key ({keyfmt}) with different values; first at row {{}}',
                         {keyargs}, _first), NULL
                FROM _ap_multi WHERE _row <> _first AND NOT _same"""
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _ap_keyed AS
                SELECT * EXCLUDE (_dup, _reasons, _field, _repairs) FROM _ap_typed t
                WHERE {ok} AND _row NOT IN (SELECT _row FROM _ap_multi WHERE _row <> _first)"""
        )
        for tmp in ("_ap_typed", "_ap_dupkeys", "_ap_multi"):
            con.execute(f"DROP TABLE {tmp}")
        keyed = "_ap_keyed"

        # 4. cleaning in each entity's time order (one sort), counting late records on the way
        clean = self._cleaning_sql(c)
        ent, ts = c.entity, c.time_column
        has_time = bool(ent and ts and ent in c.column_names)
        if clean is not None:
            expr, field_expr, window, needed = clean
            # The window runs over the narrow columns the rules read; flagged rows are then
            # removed from the wide table by an anti-join, so wide rows are never sorted.
            narrow = ", ".join(dict.fromkeys(["_row", *(_q(x) for x in needed)]))
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ap_clean AS
                    SELECT _row, {expr} AS _creason, {field_expr} AS _cfield,
                           coalesce(_prev_row > _row, FALSE) AS _late
                    FROM (SELECT {narrow}, {window} FROM {keyed} k WINDOW w AS
                          (PARTITION BY {_q(ent or "")} ORDER BY {_q(ts or "")}, _row))"""
            )
            rep.out_of_order = int(self.one("SELECT count(*) FROM _ap_clean WHERE _late"))
            con.execute(
                "INSERT INTO _ap_q SELECT _row, _cfield, _creason, NULL FROM _ap_clean "
                "WHERE _creason IS NOT NULL"
            )
            ready_src = (
                f"(SELECT * FROM {keyed} k ANTI JOIN (SELECT _row FROM _ap_clean "
                "WHERE _creason IS NOT NULL) x USING (_row))"
            )
        else:
            if has_time:
                rep.out_of_order = int(
                    self.one(
                        f"""SELECT count(*) FILTER (WHERE late) FROM (SELECT
                            coalesce(lag(_row) OVER (PARTITION BY {_q(ent or "")}
                            ORDER BY {_q(ts or "")}, _row) > _row, FALSE) AS late FROM {keyed} k)"""
                    )
                )
            ready_src = keyed

        # 5. forward fill within the entity's time order
        ff = [col for col in c.columns if col.missing_rule == "ffill"]
        if ff and has_time:
            fills = ", ".join(
                f"coalesce({_q(col.name)}, last_value({_q(col.name)} IGNORE NULLS) OVER "
                f"(PARTITION BY {_q(ent or '')} ORDER BY {_q(ts or '')}, _row ROWS BETWEEN "
                f"UNBOUNDED PRECEDING AND 1 PRECEDING)) AS {_q(col.name)}"
                for col in ff
            )
            excl = ", ".join(_q(col.name) for col in ff)
            ready_src = f"(SELECT * EXCLUDE ({excl}), {fills} FROM {ready_src} r0)"

        # 6. against what the warehouse already holds (nothing to compare with when empty)
        target_empty = self.one(f"SELECT count(*) FROM (SELECT 1 FROM {_q(c.table)} LIMIT 1)") == 0
        if target_empty:
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _ap_final AS SELECT *, 0 AS _status FROM {ready_src} r"
            )
        else:
            on = " AND ".join(f"r.{k} = e.{k}" for k in pk_names)
            same = (
                " AND ".join(
                    f"r.{n} IS NOT DISTINCT FROM e.{n}" for n in names if n not in pk_names
                )
                or "TRUE"
            )
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE _ap_final AS
                    SELECT r.*, CASE WHEN e.{pk_names[0]} IS NULL THEN 0
                                     WHEN {same} THEN 1 ELSE 2 END AS _status
                    FROM {ready_src} r LEFT JOIN {_q(c.table)} e ON {on}"""
            )
        for tmp in ("_ap_keyed", "_ap_clean"):
            con.execute(f"DROP TABLE IF EXISTS {tmp}")
        counts = con.execute(
            "SELECT count(*) FILTER (WHERE _status = 0), count(*) FILTER (WHERE _status = 1) "
            "FROM _ap_final"
        ).fetchall()[0]
        rep.loaded, n_known = int(counts[0]), int(counts[1])
        rep.duplicates += n_known
        con.execute(
            f"""INSERT INTO _ap_q SELECT _row, {_lit(c.primary_key[0])},
                  format('key ({keyfmt}) already loaded with different values', {keyargs}), NULL
                FROM _ap_final WHERE _status = 2"""
        )
        con.execute(
            f"INSERT INTO {_q(c.table)} ({collist}) SELECT {collist} FROM _ap_final "
            "WHERE _status = 0"
        )
        repaired_rows = """FROM _ap_rep t SEMI JOIN (SELECT _row FROM _ap_final WHERE _status = 0) f
                ON t._row = f._row"""
        rep.repaired = int(self.one(f"SELECT count(*) {repaired_rows}"))
        if rep.repaired:
            con.execute(
                f"INSERT INTO {REPAIRS_TABLE} SELECT ?, ?, ?, ?, t._row, unnest(t._repairs), now() "
                + repaired_rows,
                [self.run_id, str(path), sha, c.table],
            )
        con.execute("DROP TABLE _ap_final")

        # quarantine: every reason row, with the raw source record, once per file/table/row
        raw_json = (
            "CAST(to_json(struct_pack("
            + ", ".join(f"{_q(x)} := d.{_q(x)}" for x in src_cols)
            + ")) AS VARCHAR)"
            if src_cols
            else "NULL"
        )
        rep.quarantined = int(self.one("SELECT count(*) FROM _ap_q"))
        raw_sql = f"coalesce(q.raw, {raw_json})"
        if self.hook is not None:
            raw_sql = self.hook.raw(raw_sql)
        # an erased person's row is counted and explained, but no copy of it is kept
        raw_sql = f"CASE WHEN q.reason LIKE '%{ERASED_REASON}%' THEN NULL ELSE {raw_sql} END"
        if rep.quarantined:
            con.execute(
                f"""INSERT INTO {QUARANTINE_TABLE}
                    SELECT ?, ?, ?, ?, q._row, q.field, q.reason, {raw_sql}, now()
                    FROM _ap_q q LEFT JOIN "{decoded}" d ON d._row = q._row
                    WHERE NOT EXISTS (
                        SELECT 1 FROM {QUARANTINE_TABLE} x WHERE x.source_sha256 = ?
                        AND x.target_table = ? AND x.row_number IS NOT DISTINCT FROM q._row
                        AND x.reason = q.reason)""",
                [self.run_id, str(path), sha, c.table, sha, c.table],
            )
            for kind, n in con.execute(
                r"""SELECT regexp_replace(reason, ':.*$|\(.*$', '') AS k, count(*) FROM _ap_q
                   GROUP BY 1 ORDER BY 2 DESC"""
            ).fetchall():
                rep.reasons[str(kind).strip()] = int(n)
        for tmp in ("_ap_q", "_ap_rep"):
            con.execute(f"DROP TABLE IF EXISTS {tmp}")
        rep.check()
        return rep

    @staticmethod
    def _cleaning_sql(c: Contract) -> tuple[str, str, str, list[str]] | None:
        """(reason expr, field expr, neighbour columns, columns read) for the cleaning pass.

        Neighbours (previous/next time, position and signal values within the entity's time
        order) are computed once as columns by window functions over ``w``; the reasons are
        plain expressions over them.
        """
        ent, ts = c.entity, c.time_column
        if not (ent and ts):
            return None
        win: dict[str, str] = {
            "_prev_ts": f"lag({_q(ts)}) OVER w",
            "_next_ts": f"lead({_q(ts)}) OVER w",
            "_prev_row": "lag(_row) OVER w",
        }
        checks: list[tuple[str, str, str]] = []  # condition, message expr, field
        dt_prev = f"epoch({_q(ts)} - _prev_ts)"
        dt_next = f"epoch(_next_ts - {_q(ts)})"
        g = c.cleaning.gps_drift
        if g:
            la, lo = _q(g.lat), _q(g.lon)
            win.update(
                {
                    "_prev_lat": f"lag({la}) OVER w",
                    "_prev_lon": f"lag({lo}) OVER w",
                    "_next_lat": f"lead({la}) OVER w",
                    "_next_lon": f"lead({lo}) OVER w",
                }
            )
            d_in = _HAVERSINE.format(la1="_prev_lat", lo1="_prev_lon", la2=la, lo2=lo)
            d_out = _HAVERSINE.format(la1=la, lo1=lo, la2="_next_lat", lo2="_next_lon")
            v_in = f"(({d_in}) / greatest({dt_prev}, 1e-3))"
            v_out = f"(({d_out}) / greatest({dt_next}, 1e-3))"
            checks.append(
                (
                    f"{v_in} > {g.max_speed_mps} AND {v_out} > {g.max_speed_mps}",
                    f"format('GPS drift: implied speed {{}} m/s in, {{}} m/s out (limit {g.max_speed_mps:g})', "
                    f"round({v_in}, 1), round({v_out}, 1))",
                    g.lat,
                )
            )
        for i, j in enumerate(c.cleaning.jumps):
            x = _q(j.column)
            prev, nxt = f"_prev_j{i}", f"_next_j{i}"
            win[prev] = f"lag({x}) OVER w"
            win[nxt] = f"lead({x}) OVER w"
            lim_in = f"greatest({j.min_jump}, {j.max_rate_per_s} * {dt_prev})"
            lim_out = f"greatest({j.min_jump}, {j.max_rate_per_s} * {dt_next})"
            checks.append(
                (
                    f"abs({x} - {prev}) > {lim_in} AND abs({x} - {nxt}) > {lim_out} "
                    f"AND sign({x} - {prev}) = sign({x} - {nxt})",
                    f"format('signal jump in {j.column}: {{}} -> {{}} -> {{}}', {prev}, {x}, {nxt})",
                    j.column,
                )
            )
        for i, col in enumerate(c.columns):
            if col.monotonic == "increasing":
                x = _q(col.name)
                pmax = f"_pmax_{i}"
                win[pmax] = (
                    f"max({x}) OVER (PARTITION BY {_q(ent)} ORDER BY {_q(ts)}, _row "
                    "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)"
                )
                checks.append(
                    (
                        f"{x} < {pmax} - 1e-6",
                        f"format('{col.name} went backwards: {{}} after {{}}', {x}, {pmax})",
                        col.name,
                    )
                )
        if not checks:
            return None
        reason = "CASE " + " ".join(f"WHEN {cond} THEN {msg}" for cond, msg, _ in checks) + " END"
        fieldx = "CASE " + " ".join(f"WHEN {cond} THEN {_lit(f)}" for cond, _, f in checks) + " END"
        select = ", ".join(f"{e} AS {n}" for n, e in win.items())
        needed = [ent, ts]
        if g:
            needed += [g.lat, g.lon]
        needed += [j.column for j in c.cleaning.jumps]
        needed += [col.name for col in c.columns if col.monotonic]
        return reason, fieldx, select, needed


def _drop(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop a temp table or view if it exists."""
    try:
        con.execute(f"DROP TABLE IF EXISTS {_q(name)}")
    except duckdb.CatalogException:
        con.execute(f"DROP VIEW IF EXISTS {_q(name)}")


def _decode_view(con: duckdb.DuckDBPyConnection, staged: Staged) -> str:
    """A table with text columns decoded from bytes and a list of fields with bad UTF-8."""
    if not staged.binary:
        return staged.table
    name = staged.table + "_d"
    if staged.columns:
        cols = ", ".join(f"try(decode({_q(s)})) AS {_q(s)}" for s in staged.columns)
        bad = ", ".join(
            f"CASE WHEN {_q(s)} IS NOT NULL AND try(decode({_q(s)})) IS NULL THEN {_lit(s)} END"
            for s in staged.columns
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT _row, {cols},
                list_filter([{bad}], lambda f: f IS NOT NULL) AS _bad_utf8 FROM "{staged.table}" """
        )
    else:
        con.execute(f'CREATE OR REPLACE TEMP TABLE "{name}" AS SELECT _row FROM "{staged.table}"')
    con.execute(f'DROP TABLE "{staged.table}"')
    return name


def ingest_file(
    wh: Warehouse,
    path: str | Path,
    *,
    mapping: Mapping | None = None,
    table: str | None = None,
    run_id: str | None = None,
    vin: str | None = None,
) -> FileReport:
    """Ingest one file; see :func:`ingest`.

    Raises
    ------
    IngestError
        If the file cannot be ingested at all; then nothing of it is loaded.
    """
    path = Path(path)
    run_id = run_id or uuid.uuid4().hex[:12]
    if _is_truth(path):
        raise IngestError(
            "this is simulator ground truth; no pipeline step may read it", file=str(path)
        )
    t0 = time.perf_counter()
    started = datetime.now(UTC)
    fmt = (mapping.format if mapping else None) or detect_format(path)
    sha = sha256_file(path) if path.exists() else ""
    con = wh.con
    if fmt == "candump":
        from autopersona.ingest.canload import stage_candump

        staged = stage_candump(con, path, "_ap_stage", vin=vin)
        table = table or "vehicle_signals"
    else:
        staged = stage_file(
            con,
            path,
            fmt,
            mapping.csv if mapping else _default_csv(),
            "_ap_stage",
            sheet=mapping.sheet if mapping else None,
        )
    notes = list(staged.notes)
    if mapping is None:
        table = table or infer_table(path)
        if table is None:
            raise IngestError(
                "cannot tell which table this file is for; pass --table or --mapping",
                file=str(path),
            )
        contract = get_contract(table)
        mapping = Mapping.identity(table, staged.columns)
        missing = [
            col.name
            for col in contract.columns
            if col.name not in staged.columns and not col.nullable and col.missing_rule != "fill"
        ]
        if missing:
            raise IngestError(
                f"missing required column(s) {', '.join(missing)} for table {table}",
                file=str(path),
            )
        absent = [n for n in contract.column_names if n not in staged.columns]
        extra = [s for s in staged.columns if s not in contract.column_names]
        if absent:
            notes.append(f"columns absent from the source, loaded as null: {', '.join(absent)}")
        if extra:
            notes.append(f"source columns not in the contract, ignored: {', '.join(extra)}")
    decoded = _decode_view(con, staged)
    variables = mapping.variables(path)
    run = _Run(wh, run_id)
    reports: list[TargetReport] = []
    con.execute("BEGIN TRANSACTION")
    try:
        for tgt in mapping.targets:
            t1 = time.perf_counter()
            rep = run.target(staged, decoded, tgt, mapping, path, sha, variables)
            reports.append(rep)
            con.execute(
                f"INSERT INTO {RUNS_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    run_id,
                    str(path),
                    sha,
                    mapping.origin or mapping.name,
                    rep.table,
                    rep.read,
                    rep.loaded,
                    rep.duplicates,
                    rep.quarantined,
                    started,
                    time.perf_counter() - t1,
                ],
            )
        con.execute("COMMIT")
    except IngestError as exc:
        con.execute("ROLLBACK")
        if exc.file is None:
            exc.file = str(path)
        raise
    except Exception:
        con.execute("ROLLBACK")
        raise
    finally:
        for tmp in (decoded, staged.table, staged.errors_table):
            _drop(con, tmp)
    if run.hook is not None:  # the file's new pseudonyms are in the vault once it is loaded
        run.hook.flush()
    return FileReport(
        str(path),
        sha,
        mapping.origin or mapping.name,
        staged.rows,
        reports,
        time.perf_counter() - t0,
        notes,
    )


def _default_csv() -> Any:
    from autopersona.ingest.mapping import CsvOptions

    return CsvOptions()


def ingest(
    paths: Iterable[str | Path],
    warehouse: Warehouse,
    *,
    mapping: Mapping | None = None,
    table: str | None = None,
    vin: str | None = None,
    progress: bool = False,
    keep_going: bool = True,
) -> IngestReport:
    r"""Ingest files (or folders of files) into ``warehouse``.

    Parameters
    ----------
    paths
        Files or folders; folders are walked (hidden files and ground truth are skipped).
    warehouse
        Target warehouse.
    mapping
        How the source maps to contracts; default: files already in contract shape, the table
        taken from ``table`` or the file name (``motion.parquet``).
    table
        Target table for files in contract shape.
    vin
        VIN for sources that carry none (CAN logs).
    progress
        Show a progress bar.
    keep_going
        On a file-level error, record it and go on with the next file (``False``: raise).

    Returns
    -------
    IngestReport
        Counts per file and table; ``read = loaded + duplicates + quarantined``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "pois.csv").write_text(
    ...     "poi_id,name,category,lat,lon\n"
    ...     "p1,Cafe,restaurant,31.2,121.4\n"
    ...     "p2,Moon,restaurant,95.0,121.4\n"
    ...     "p1,Cafe,restaurant,31.2,121.4\n")
    >>> with Warehouse(":memory:") as wh:
    ...     r = ingest([d / "pois.csv"], wh)
    >>> r.read, r.loaded, r.duplicates, r.quarantined
    (3, 1, 1, 1)
    """
    paths = list(paths)
    files = expand_paths(paths, mapping.files if mapping else None)
    report = IngestReport(run_id=uuid.uuid4().hex[:12])
    if mapping is None and table is None:
        # Inside a folder, files that belong to no table (a manifest, a README) are skipped
        # and listed; a file named explicitly must belong to one.
        named = {Path(p).resolve() for p in paths if Path(p).is_file()}
        skipped = [f for f in files if f.resolve() not in named and infer_table(f) is None]
        files = [f for f in files if f not in skipped]
        report.skipped = [str(f) for f in skipped]
    bar = None
    task = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
        )
        bar.start()
        task = bar.add_task("", total=len(files))
    try:
        for f in files:
            if bar is not None and task is not None:
                bar.update(task, description=f.name)
            try:
                report.files.append(
                    ingest_file(
                        warehouse, f, mapping=mapping, table=table, run_id=report.run_id, vin=vin
                    )
                )
            except IngestError as exc:
                if not keep_going:
                    raise
                report.errors.append(str(exc))
            if bar is not None and task is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return report


def report_json(report: IngestReport) -> str:
    """The report as JSON text."""
    return json.dumps(report.to_dict(), indent=2, default=str)
