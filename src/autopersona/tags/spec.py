r"""The tag catalogue: every tag declared as data in ``tags/catalogue/*.yaml``.

A tag has an id, a tier (L1 basic … L4 potential, or a commerce level), a category, the
values it may take, a definition, a method (``rule``, ``score``, ``cluster`` or ``model``)
with that method's configuration, its inputs (features, master-data columns or other tags),
its source tables, a refresh cadence and the consent purpose it serves (the file's default
``purpose`` unless the tag names its own; every tag must end up with one).  Files are
validated with pydantic
(``extra="forbid"``) and then checked as a whole — unknown names, values outside
``values``, duplicate ids across files, dependency cycles — and every problem is reported as
``file:line: path: message``.

Adding a tag is editing YAML: drop a file into the catalogue folder (or pass another folder)
and :func:`load_catalogue` picks it up.  Files under ``pending/`` read features that are not
in the feature dictionary yet; they load with ``include_pending=True``.

Examples
--------
>>> cat = load_catalogue()
>>> t = cat.tags["l1_vehicle_tier"]
>>> t.tier, t.method, t.values, t.cadence, t.purpose
('L1', 'rule', ['luxury', 'mid', 'economy'], 'static', 'analytics')
>>> cat.tags["l4_ubi_risk"].purpose, cat.tags["l4_vas_sensitivity"].purpose
('ubi', 'marketing')
>>> cat.version[:7] == cat.version[:7].lower()
True
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from autopersona.catalog import (
    CatalogError,
    CatalogIssue,
    issues_from_validation,
    line_for,
    load_yaml_with_lines,
)
from autopersona.tags.expr import Expr, ExprError, parse

__all__ = [
    "CADENCE_DAYS",
    "PURPOSES",
    "Catalogue",
    "CatalogueFile",
    "ClusterConfig",
    "Label",
    "LabelEvent",
    "ModelConfig",
    "RuleConfig",
    "ScoreConfig",
    "TagSpec",
    "builtin_dir",
    "known_names",
    "load_catalogue",
    "pending_files",
]

Tier = Literal["L1", "L2", "L3", "L4", "basic", "behaviour", "interest", "value", "attitude"]
Method = Literal["rule", "score", "cluster", "model"]
Cadence = Literal["static", "weekly", "monthly", "quarterly"]
Entity = Literal["vin", "customer_id"]
#: Processing purposes of the consent registry (:mod:`autopersona.privacy.consent`).
Purpose = Literal["marketing", "ubi", "analytics", "partner_sharing"]
PURPOSES: tuple[str, ...] = get_args(Purpose)

#: Days after which a tag of each cadence is due again (static: never, once computed).
CADENCE_DAYS: dict[str, int | None] = {
    "static": None,
    "weekly": 7,
    "monthly": 30,
    "quarterly": 91,
}

_ID = r"^[a-z][a-z0-9_]*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Case(_Strict):
    """One rule case: ``value`` (or the value of the expression ``value_of``) where ``when``."""

    value: str | None = None
    value_of: str | None = None
    when: str

    @model_validator(mode="after")
    def _one_value(self) -> Case:
        if (self.value is None) == (self.value_of is None):
            raise ValueError("give exactly one of value or value_of")
        return self


class RuleConfig(_Strict):
    """Ordered cases; the first whose ``when`` is true gives the value, else ``else``."""

    cases: list[Case] = Field(min_length=1)
    else_: str | None = Field(default=None, alias="else")


class Grade(_Strict):
    """A grade: ``value`` where the score is at least ``min`` (grades are tried in order)."""

    value: str
    min: float


class ScoreConfig(_Strict):
    """A numeric score from an expression, graded by cut-offs (or the score itself as value)."""

    expression: str
    grades: list[Grade] = Field(default_factory=list)
    else_: str | None = Field(default=None, alias="else")

    @model_validator(mode="after")
    def _descending(self) -> ScoreConfig:
        mins = [g.min for g in self.grades]
        if mins != sorted(mins, reverse=True):
            raise ValueError("grades must be ordered by descending min")
        return self


class KRange(_Strict):
    """Range of cluster counts to try."""

    min: int = Field(ge=2)
    max: int = Field(ge=2)

    @model_validator(mode="after")
    def _ordered(self) -> KRange:
        if self.max < self.min:
            raise ValueError("max must be >= min")
        return self


class Naming(_Strict):
    """Name clusters for the business: rank centroids by an expression, then map to values.

    Centroids are sorted by ``rank_by`` (evaluated on the centroid's feature values),
    descending unless ``ascending``, and split into ``len(values)`` contiguous groups that take
    the tag's values in order.
    """

    rank_by: str
    ascending: bool = False


class ClusterConfig(_Strict):
    """Unsupervised segmentation (built by :mod:`autopersona.tags.cluster`).

    ``window`` is the number of latest complete feature periods (at or before the as-of
    time) whose values are averaged per entity before clustering: a style shows over
    several weeks, one week alone is noisy.
    """

    features: list[str] = Field(min_length=1)
    scale: Literal["standard", "robust", "none"] = "standard"
    algorithms: list[Literal["kmeans", "dbscan", "gmm"]] = Field(min_length=1)
    k: KRange
    selection: list[Literal["silhouette", "calinski_harabasz", "davies_bouldin"]] = Field(
        min_length=1
    )
    naming: Naming
    min_rows: int = Field(default=20, ge=2)
    window: int = Field(default=4, ge=1)


class LabelEvent(_Strict):
    """Rows of a warehouse table that count as the labelled behaviour.

    An entity is positive at a snapshot when ``table`` holds a row with its key in
    ``entity``, a ``time`` after the snapshot and within the horizon, and ``where`` (an
    expression over the table's columns, same language as rules) true.
    """

    table: str
    entity: str = "vin"
    time: str = "ts"
    where: str | None = None
    amount: str | None = Field(
        default=None, description="Regression: expression summed over the events."
    )


class Label(_Strict):
    """The supervised target: what is predicted, from which table, over which horizon.

    ``positive: event`` labels 1 when any of ``events`` happens within ``horizon_days``
    after the snapshot; ``positive: no_event`` labels 1 when none does (churn).
    """

    definition: str
    sources: list[str] = Field(min_length=1)
    horizon_days: int = Field(ge=1)
    events: list[LabelEvent] = Field(min_length=1)
    positive: Literal["event", "no_event"] = "event"


class ModelConfig(_Strict):
    """Supervised model (built by :mod:`autopersona.tags.model`); its score is graded.

    Training takes ``snapshots`` past as-of dates ``snapshot_every_days`` apart, the latest
    one ``horizon_days`` before the as-of time (so every label is already observed); the
    latest ``valid_snapshots`` validate, the earlier ones train.
    """

    task: Literal["classification", "regression"]
    algorithms: list[Literal["lightgbm", "xgboost", "sklearn_gbdt", "logistic"]] = Field(
        min_length=1
    )
    features: list[str] = Field(min_length=1)
    label: Label
    retrain: Cadence = "monthly"
    grades: list[Grade] = Field(default_factory=list)
    else_: str | None = Field(default=None, alias="else")
    snapshots: int = Field(default=8, ge=2)
    snapshot_every_days: int = Field(default=30, ge=1)
    valid_snapshots: int = Field(default=2, ge=1)
    min_rows: int = Field(default=100, ge=10)
    min_positives: int = Field(default=10, ge=2)
    history_days: int | None = Field(default=730, ge=1)

    @model_validator(mode="after")
    def _split(self) -> ModelConfig:
        if self.valid_snapshots >= self.snapshots:
            raise ValueError("valid_snapshots must leave at least one training snapshot")
        return self


class TagSpec(_Strict):
    """One tag of the catalogue."""

    id: str = Field(pattern=_ID)
    tier: Tier
    category: str
    entity: Entity = "vin"
    values: list[str] | None = Field(
        description="Allowed values; null for open values (numbers, regions)."
    )
    definition: str
    method: Method
    inputs: list[str] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)
    cadence: Cadence
    purpose: Purpose | None = Field(
        default=None,
        description="Purpose whose consent the tag needs: entities without it (at the as-of "
        "time) get no value, a value they had is closed, and a cluster or model tag fits "
        "without them.  Default: the file's ``purpose``; every tag ends up with one.",
    )
    rule: RuleConfig | None = None
    score: ScoreConfig | None = None
    cluster: ClusterConfig | None = None
    model: ModelConfig | None = None
    file: str = Field(default="", exclude=True)
    line: int = Field(default=1, exclude=True)

    @model_validator(mode="after")
    def _method_config(self) -> TagSpec:
        configs: dict[str, BaseModel | None] = {
            "rule": self.rule,
            "score": self.score,
            "cluster": self.cluster,
            "model": self.model,
        }
        if configs[self.method] is None:
            raise ValueError(f"method {self.method} needs a '{self.method}' section")
        extra = [k for k, v in configs.items() if v is not None and k != self.method]
        if extra:
            raise ValueError(f"method {self.method} takes no {', '.join(extra)} section")
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError("values repeat")
        return self

    def expressions(self) -> list[tuple[tuple[str | int, ...], str]]:
        """``(location inside the tag, expression)`` of every expression the tag declares."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        if self.rule:
            for i, c in enumerate(self.rule.cases):
                out.append((("rule", "cases", i, "when"), c.when))
                if c.value_of is not None:
                    out.append((("rule", "cases", i, "value_of"), c.value_of))
        if self.score:
            out.append((("score", "expression"), self.score.expression))
        return out

    def label_filters(self) -> list[tuple[tuple[str | int, ...], str]]:
        """``(location, expression)`` of the ``where`` filters of a model's label events."""
        if self.model is None:
            return []
        return [
            (("model", "label", "events", i, "where"), e.where)
            for i, e in enumerate(self.model.label.events)
            if e.where is not None
        ]

    def produced_values(self) -> list[tuple[tuple[str | int, ...], str]]:
        """``(location, value)`` of every literal value the config can assign."""
        out: list[tuple[tuple[str | int, ...], str]] = []
        for sec in ("rule", "score", "model"):
            cfg = getattr(self, sec)
            if cfg is None:
                continue
            for i, c in enumerate(getattr(cfg, "cases", []) or []):
                if c.value is not None:
                    out.append(((sec, "cases", i, "value"), c.value))
            for i, g in enumerate(getattr(cfg, "grades", []) or []):
                out.append(((sec, "grades", i, "value"), g.value))
            if cfg.else_ is not None:
                out.append(((sec, "else"), cfg.else_))
        return out

    def digest(self) -> str:
        """Hash of the tag's declaration (changes when its definition changes)."""
        blob = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CatalogueFile(_Strict):
    """One catalogue file: a description, the default purpose of its tags, and its tags.

    ``purpose`` is the consent purpose of every tag of the file that declares none of its
    own (e.g. ``analytics`` for a file of profile tags, with a ``marketing`` propensity tag
    overriding it).  A tag left without a purpose is an error.
    """

    description: str = ""
    purpose: Purpose | None = None
    tags: list[TagSpec] = Field(min_length=1)


@dataclass
class Catalogue:
    """All tags of a catalogue folder, validated together."""

    tags: dict[str, TagSpec]
    files: list[str]
    version: str
    parsed: dict[str, dict[tuple[str | int, ...], Expr]] = field(default_factory=dict)
    #: Problems that do not stop loading: a tag reading a feature that does not serve the
    #: tag's purpose (it gets values only for people who also consent to one the feature
    #: serves, since the feature build keeps no other rows).
    warnings: list[CatalogIssue] = field(default_factory=list)

    def dependencies(self, tag_id: str) -> list[str]:
        """Tag ids ``tag_id`` reads, directly."""
        return [i for i in self.tags[tag_id].inputs if i in self.tags]

    def order(self, ids: list[str] | None = None) -> list[str]:
        """``ids`` (default all) plus their dependencies, dependencies first.

        >>> load_catalogue().order(["l2_usage_intensity", "l1_vehicle_tier"])
        ['l2_usage_intensity', 'l1_vehicle_tier']
        """
        out: list[str] = []
        seen: set[str] = set()

        def visit(t: str) -> None:
            if t in seen:
                return
            seen.add(t)
            for d in self.dependencies(t):
                visit(d)
            out.append(t)

        for t in ids if ids is not None else sorted(self.tags):
            visit(t)
        return out


# ----------------------------------------------------------------------------- names
def builtin_dir() -> Path:
    """The catalogue shipped with autopersona."""
    return Path(str(resources.files("autopersona.tags") / "catalogue"))


_PII = {"vin", "account_id", "name", "phone", "email", "attributes"}


@lru_cache(maxsize=4)
def known_names(entity: str) -> dict[str, str]:
    """Names a tag of ``entity`` may read, mapped to the table holding them.

    Features map to ``features_<domain>``, and so does ``<domain>_age_days``: days from the
    end of the latest period read from that table to the as-of time.  Master-data columns (``vehicles`` for VINs,
    ``accounts`` for customers, without identifiers and personal contact data) map to their
    table.

    >>> known_names("vin")["msrp_cny"], known_names("vin")["aggressiveness_index"]
    ('vehicles', 'features_driving')
    """
    from autopersona.contracts import load_contracts
    from autopersona.features.dictionary import domains, feature_dictionary

    out: dict[str, str] = {}
    master = "vehicles" if entity == "vin" else "accounts"
    for c in load_contracts()[master].column_names:
        if c not in _PII:
            out[c] = master
    for d in domains().values():
        if d.entity == entity:
            for f in d.features:
                out[f.name] = d.table
    for f in feature_dictionary().values():
        if f.entity == entity and f.name not in out:
            out[f.name] = f"features_{f.domain}"
    for table in sorted({t for t in out.values() if t.startswith("features_")}):
        out.setdefault(f"{table.removeprefix('features_')}_age_days", table)
    return out


def _tables() -> set[str]:
    from autopersona.contracts import load_contracts

    return set(load_contracts())


# ----------------------------------------------------------------------------- loading
def _load_file(path: Path) -> tuple[CatalogueFile, dict[Any, int], list[CatalogIssue]]:
    """The file's tags (each with its effective purpose), line map and purpose issues."""
    data, lines = load_yaml_with_lines(path)
    try:
        f = CatalogueFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise CatalogError(issues_from_validation(path, exc, lines)) from None
    missing = [
        CatalogIssue(
            str(path),
            line_for(lines, ("tags", i, "id")),
            f"tags -> {i} -> purpose",
            f"tag {t.id!r} has no purpose: give it one or give the file a default "
            f"(purpose: one of {', '.join(PURPOSES)})",
        )
        for i, t in enumerate(f.tags)
        if t.purpose is None and f.purpose is None
    ]
    tags = [
        t.model_copy(
            update={
                "file": str(path),
                "line": line_for(lines, ("tags", i, "id")),
                "purpose": t.purpose or f.purpose,
            }
        )
        for i, t in enumerate(f.tags)
    ]
    return f.model_copy(update={"tags": tags}), lines, missing


def pending_files(folder: str | Path | None = None) -> list[Path]:
    """Catalogue files waiting for features that have not landed yet (``pending/*.yaml``).

    They are complete catalogue files; once the features they read are in the feature
    dictionary they move up into the catalogue folder.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "pending").mkdir()
    >>> _ = (root / "pending" / "later.yaml").write_text("tags: []")
    >>> [p.name for p in pending_files(root)]
    ['later.yaml']
    >>> pending_files()  # every built-in tag is live
    []
    """
    root = Path(folder) if folder is not None else builtin_dir()
    return sorted((root / "pending").glob("*.yaml"))


def load_catalogue(
    folder: str | Path | None = None,
    extra_files: list[str | Path] | None = None,
    *,
    include_pending: bool = False,
) -> Catalogue:
    """Load and check every ``*.yaml`` in ``folder`` (default: the built-in catalogue).

    Parameters
    ----------
    folder
        Catalogue folder.
    extra_files
        More files checked with the folder (a file with the name of one in the folder
        replaces it), e.g. a file being written before it is added.
    include_pending
        Also load the folder's ``pending/`` files (see :func:`pending_files`).

    Raises
    ------
    CatalogError
        Listing every problem in every file, each with file and line.
    """
    root = Path(folder) if folder is not None else builtin_dir()
    paths: dict[str, Path] = {p.name: p for p in sorted(root.glob("*.yaml"))}
    extra = [*(pending_files(root) if include_pending else []), *(extra_files or [])]
    for e in extra:
        paths[Path(e).name] = Path(e)
    errors: list[CatalogIssue] = []
    loaded: list[tuple[Path, CatalogueFile, dict[Any, int]]] = []
    for name in sorted(paths):
        try:
            f, lines, missing = _load_file(paths[name])
        except CatalogError as exc:
            errors.extend(exc.errors)
            continue
        errors.extend(missing)
        loaded.append((paths[name], f, lines))
    tags: dict[str, TagSpec] = {}
    where: dict[str, tuple[Path, dict[Any, int], int]] = {}
    for path, f, lines in loaded:
        for i, t in enumerate(f.tags):
            if t.id in tags:
                first = tags[t.id]
                errors.append(
                    CatalogIssue(
                        str(path),
                        line_for(lines, ("tags", i, "id")),
                        f"tags -> {i} -> id",
                        f"duplicate tag id {t.id!r} (first declared at {first.file}:{first.line})",
                    )
                )
                continue
            tags[t.id] = t
            where[t.id] = (path, lines, i)
    parsed: dict[str, dict[tuple[str | int, ...], Expr]] = {}
    for tid, t in tags.items():
        path, lines, i = where[tid]
        errors.extend(_check_tag(t, tags, path, lines, i, parsed.setdefault(tid, {})))
    errors.extend(_check_cycles(tags, where))
    if errors:
        raise CatalogError(errors)
    warnings = _check_feature_purposes(tags, where)
    h = hashlib.sha256()
    for name in sorted(paths):
        h.update(name.encode() + b"\0" + paths[name].read_bytes() + b"\0")
    return Catalogue(
        tags=tags,
        files=[str(paths[n]) for n in sorted(paths)],
        version=h.hexdigest()[:16],
        parsed=parsed,
        warnings=warnings,
    )


def _check_tag(
    t: TagSpec,
    tags: dict[str, TagSpec],
    path: Path,
    lines: dict[Any, int],
    i: int,
    parsed: dict[tuple[str | int, ...], Expr],
) -> list[CatalogIssue]:
    out: list[CatalogIssue] = []
    base: tuple[str | int, ...] = ("tags", i)

    def issue(loc: tuple[str | int, ...], msg: str) -> None:
        full = base + loc
        out.append(CatalogIssue(str(path), line_for(lines, full), " -> ".join(map(str, full)), msg))

    names = known_names(t.entity)
    if t.id in names:
        issue(("id",), f"tag id {t.id!r} is also a feature or master-data column; rename it")
    tables = _tables()
    for j, s in enumerate(t.sources):
        if s not in tables:
            issue(("sources", j), f"unknown source table {s!r}")

    def known(n: str) -> str | None:
        if n in names:
            return None
        if n in tags:
            if tags[n].entity != t.entity:
                return f"tag {n!r} is per {tags[n].entity}, this tag is per {t.entity}"
            return None
        return f"unknown feature or tag {n!r}"

    for j, n in enumerate(t.inputs):
        why = known(n)
        if why:
            issue(("inputs", j), why)
    declared = set(t.inputs)
    for loc, src in t.expressions():
        try:
            e = parse(src)
        except ExprError as exc:
            issue(loc, f"column {exc.pos}: {exc.message}")
            continue
        parsed[loc] = e
        for n, pos in e.name_positions():
            why = known(n)
            if why:
                issue(loc, f"column {pos}: {why}")
            elif n not in declared:
                issue(loc, f"column {pos}: {n!r} is read but not listed in inputs")
        for n in e.prev_names():
            if not names.get(n, "").startswith("features_"):
                issue(loc, f"prev() needs a feature, {n!r} is not one")
        for n, lit, pos in e.compared_literals():
            other = tags.get(n)
            if other is not None and other.values is not None and lit not in other.values:
                issue(loc, f"column {pos}: {lit!r} is not a value of tag {n!r}")
    for sec in ("cluster", "model"):
        cfg = getattr(t, sec)
        if cfg is None:
            continue
        for j, n in enumerate(cfg.features):
            why = known(n)
            if why:
                issue((sec, "features", j), why)
            elif n not in declared:
                issue((sec, "features", j), f"{n!r} is used but not listed in inputs")
        if sec == "cluster":
            try:
                e = parse(cfg.naming.rank_by)
                for n, pos in e.name_positions():
                    if n not in cfg.features:
                        issue(
                            ("cluster", "naming", "rank_by"),
                            f"column {pos}: {n!r} is not a clustering feature",
                        )
            except ExprError as exc:
                issue(("cluster", "naming", "rank_by"), f"column {exc.pos}: {exc.message}")
            if t.values is None:
                issue(("values",), "a cluster tag needs values to name its clusters")
            elif cfg.k.min < len(t.values):
                issue(
                    ("cluster", "k", "min"),
                    f"k.min {cfg.k.min} is below the {len(t.values)} values to name",
                )
        if sec == "model":
            for j, s in enumerate(cfg.label.sources):
                if s not in tables:
                    issue(("model", "label", "sources", j), f"unknown source table {s!r}")
            out.extend(_check_label(t, path, lines, base))
    if t.values is not None:
        for loc, v in t.produced_values():
            if v not in t.values:
                issue(loc, f"value {v!r} is not in values {t.values}")
    else:
        for loc, v in t.produced_values():
            if loc[-1] != "else":
                issue(loc, f"value {v!r} given but the tag has open values (values: null)")
    if t.rule and t.values is not None:
        for j, c in enumerate(t.rule.cases):
            if c.value_of is not None:
                issue(("rule", "cases", j, "value_of"), "value_of needs open values (values: null)")
    return out


def _check_label(
    t: TagSpec,
    path: Path,
    lines: dict[Any, int],
    base: tuple[str | int, ...],
) -> list[CatalogIssue]:
    """Label events: known tables listed in ``sources``, known columns, valid filters."""
    from autopersona.contracts import load_contracts

    out: list[CatalogIssue] = []

    def issue(loc: tuple[str | int, ...], msg: str) -> None:
        full = base + loc
        out.append(CatalogIssue(str(path), line_for(lines, full), " -> ".join(map(str, full)), msg))

    assert t.model is not None
    contracts = load_contracts()
    for i, ev in enumerate(t.model.label.events):
        loc: tuple[str | int, ...] = ("model", "label", "events", i)
        if ev.table not in contracts:
            issue((*loc, "table"), f"unknown table {ev.table!r}")
            continue
        if ev.table not in t.model.label.sources:
            issue((*loc, "table"), f"table {ev.table!r} is not listed in label sources")
        cols = set(contracts[ev.table].column_names)
        for key in ("entity", "time"):
            col = getattr(ev, key)
            if col not in cols:
                issue((*loc, key), f"{ev.table} has no column {col!r}")
        for key in ("where", "amount"):
            src = getattr(ev, key)
            if src is None:
                continue
            try:
                e = parse(src)
            except ExprError as exc:
                issue((*loc, key), f"column {exc.pos}: {exc.message}")
                continue
            for n, pos in e.name_positions():
                if n not in cols:
                    issue((*loc, key), f"column {pos}: {ev.table} has no column {n!r}")
            if e.prev_names():
                issue((*loc, key), "prev() is not available in a label")
    return out


def _check_feature_purposes(
    tags: dict[str, TagSpec], where: dict[str, tuple[Path, dict[Any, int], int]]
) -> list[CatalogIssue]:
    """Tags reading a feature that does not serve the tag's purpose (warnings).

    A tag reads a feature itself or through the tags it reads.  The feature build keeps
    values only for consenters of the purposes a feature declares (``features/dictionary``),
    so such a tag gets values only for people consenting to both: the catalogue loads, with
    a warning naming the dictionary file to widen if the purpose is meant.
    """
    from autopersona.features.dictionary import all_domains, purposes_of

    out: list[CatalogIssue] = []
    feature_tables = {d.table: k for k, d in all_domains().items()}

    def reads(t: str, seen: set[str]) -> list[tuple[str, str]]:
        """(feature, tag reading it) of ``t`` and its dependencies."""
        if t in seen:
            return []
        seen.add(t)
        got: list[tuple[str, str]] = []
        for n in tags[t].inputs:
            if n in tags:
                got.extend(reads(n, seen))
            else:
                got.append((n, t))
        return got

    for u, spec in tags.items():
        if spec.purpose is None:
            continue
        names = known_names(spec.entity)
        for n, via in reads(u, set()):
            domain = feature_tables.get(names.get(n, ""))
            if domain is None:
                continue
            served = purposes_of(domain, n)
            if spec.purpose in served:
                continue
            path, lines, i = where[u]
            how = "" if via == u else f" through {via!r}"
            out.append(
                CatalogIssue(
                    str(path),
                    line_for(lines, ("tags", i, "purpose")),
                    f"tags -> {i} -> purpose",
                    f"tag {u!r} has purpose {spec.purpose!r} but reads feature {n!r}{how}, "
                    f"which serves only {', '.join(served)} (features/dictionary/{domain}.yaml): "
                    "it gets values only for people consenting to one of those too",
                )
            )
    return out


def _check_cycles(
    tags: dict[str, TagSpec], where: dict[str, tuple[Path, dict[Any, int], int]]
) -> list[CatalogIssue]:
    out: list[CatalogIssue] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []
    reported: set[frozenset[str]] = set()

    def visit(t: str) -> None:
        state[t] = 1
        stack.append(t)
        for d in tags[t].inputs:
            if d not in tags or d == "":
                continue
            if state.get(d) == 1:
                cyc = [*stack[stack.index(d) :], d]
                key = frozenset(cyc)
                if key not in reported:
                    reported.add(key)
                    path, lines, i = where[t]
                    j = tags[t].inputs.index(d)
                    loc = ("tags", i, "inputs", j)
                    out.append(
                        CatalogIssue(
                            str(path),
                            line_for(lines, loc),
                            " -> ".join(map(str, loc)),
                            "dependency cycle: " + " -> ".join(cyc),
                        )
                    )
            elif d not in state:
                visit(d)
        stack.pop()
        state[t] = 2

    for t in sorted(tags):
        if t not in state:
            visit(t)
    return out
