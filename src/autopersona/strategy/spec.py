r"""The strategy catalogue: strategies and channels declared as data.

Strategies live in ``strategy/catalogue/*.yaml`` (one file may hold several), channels and the
global delivery policy in ``strategy/channels.yaml``.  Files are validated with pydantic
(``extra="forbid"``) and then checked as a whole — names in expressions and templates,
``prev()`` on features only, values compared with a tag's allowed values, channels that
exist, calendar columns that exist, duplicate ids — and every problem is reported as
``file:line: path: message`` (:class:`~autopersona.catalog.CatalogError`).

A strategy is one cell of the scenario–strategy matrix (lifecycle × travel scenario ×
vehicle type), an audience (an expression over tags *and* features in the tag expression
language, :mod:`autopersona.tags.expr`), one trigger, ordered channels (the first one
allowed by consent, quiet hours and caps is used), content variants (``string.Template``
text with ``${name}`` fields, never ``eval``), an offer, a priority, caps and experiment
settings.

Triggers
--------
``schedule``  every ``day`` / ``week`` / ``month``; the trigger key is the period's start.
``calendar``  relative to a date column (e.g. the ADAS trial's ``ends_at``): fires while
              the as-of time is within ``[date + from_days, date + to_days]``; the key is the
              date, so each date fires once.
``metric``    a condition over features with ``prev()`` (the previous period), evaluated
              on the latest complete period; the key is that period's end.
``event``     a live vehicle event of ``type`` whose payload fields (declared with their
              kind) satisfy ``condition``; the key is the event id.

Examples
--------
>>> cat = load_strategies()
>>> s = cat.strategies["t2_brake_wear_commute"]
>>> s.trigger.kind, s.channels
('metric', ['head_unit', 'app_push', 'sms'])
>>> sorted(cat.channels)
['app_push', 'email', 'head_unit', 'sms']
"""

from __future__ import annotations

import hashlib
import re
import string
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autopersona.catalog import (
    CatalogError,
    CatalogIssue,
    issues_from_validation,
    line_for,
    load_yaml_with_lines,
)
from autopersona.tags.expr import Expr, ExprError, parse

__all__ = [
    "CalendarTrigger",
    "Caps",
    "Cell",
    "ChannelCatalogue",
    "ChannelRule",
    "ChannelSpec",
    "Content",
    "EventTrigger",
    "Experiment",
    "Fatigue",
    "MetricTrigger",
    "OfferArm",
    "Policy",
    "ScheduleTrigger",
    "StrategyCatalogue",
    "StrategyFile",
    "StrategySpec",
    "Trigger",
    "builtin_dir",
    "channels_file",
    "context_names",
    "load_channels",
    "load_strategies",
]

_ID = r"^[a-z][a-z0-9_]*$"
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
Loc = tuple[str | int, ...]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# ----------------------------------------------------------------------------- channels
class QuietHours(_Strict):
    """Local time span in which the channel stays silent (``start`` > ``end`` spans midnight)."""

    start: str = Field(pattern=_HHMM)
    end: str = Field(pattern=_HHMM)

    @model_validator(mode="after")
    def _not_empty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are equal: an empty span (drop quiet_hours instead)")
        return self

    def minutes(self) -> tuple[int, int]:
        """``(start, end)`` as minutes after local midnight."""
        h1, m1 = map(int, self.start.split(":"))
        h2, m2 = map(int, self.end.split(":"))
        return h1 * 60 + m1, h2 * 60 + m2


class DrivingSafety(_Strict):
    """No message on the channel while the vehicle moves faster than ``max_speed_mps``."""

    max_speed_mps: float = Field(ge=0)
    hold_hours: float = Field(gt=0, description="A held message expires after this long.")


class ChannelSpec(_Strict):
    """One delivery channel."""

    id: str = Field(pattern=_ID)
    description: str = ""
    consent_channel: Literal["head_unit", "app", "sms", "email"]
    needs_vin: bool = False
    quiet_hours: QuietHours | None = None
    cap_person_day: int | None = Field(default=None, ge=0)
    response_weight: float = Field(default=1.0, ge=0)
    driving_safety: DrivingSafety | None = None


class Fatigue(_Strict):
    """Rest a person after ``max_unanswered`` messages in ``days`` days without a response."""

    max_unanswered: int = Field(ge=1)
    days: float = Field(gt=0)


class Policy(_Strict):
    """Rules over all strategies and channels."""

    arbitration_window_hours: float = Field(default=24, ge=0)
    fatigue: Fatigue | None = None
    cap_person_day: int = Field(default=2, ge=0)
    cap_global_day: int = Field(default=100_000, ge=0)
    default_timezone: str = "UTC"

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v


class ChannelCatalogue(_Strict):
    """The channels file: the policy and the channels."""

    description: str = ""
    policy: Policy = Policy()
    channels: list[ChannelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> ChannelCatalogue:
        ids = [c.id for c in self.channels]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"channel ids repeat: {dup}")
        return self

    def by_id(self) -> dict[str, ChannelSpec]:
        """Channels keyed by id, in file order."""
        return {c.id: c for c in self.channels}


# ----------------------------------------------------------------------------- strategies
Lifecycle = Literal[
    "any",
    "early_ownership",
    "mid_ownership",
    "late_ownership",
    "prospect",
    "new",
    "active",
    "loyal",
    "at_risk",
    "churned",
]
Scenario = Literal["any", "long_trip", "daily_commute", "business", "leisure", "shopping"]
VehicleType = Literal["any", "BEV", "PHEV", "EREV", "ICE", "HEV", "ADAS"]


class Cell(_Strict):
    """The strategy's cell of the scenario–strategy matrix (descriptive; the audience decides)."""

    lifecycle: Lifecycle
    scenario: Scenario
    vehicle: VehicleType


class ScheduleTrigger(_Strict):
    """Fire every day, week (Monday) or month (the 1st); the key is the period's start."""

    every: Literal["day", "week", "month"]


class CalendarTrigger(_Strict):
    """Fire while ``date + from_days <= as_of <= date + to_days`` for a date column's value."""

    table: str
    column: str
    where: dict[str, str | bool] = Field(default_factory=dict)
    from_days: int
    to_days: int

    @model_validator(mode="after")
    def _ordered(self) -> CalendarTrigger:
        if self.to_days < self.from_days:
            raise ValueError("to_days must be >= from_days")
        return self


class MetricTrigger(_Strict):
    """Fire when ``condition`` (features, ``prev()``) holds on the latest complete period."""

    condition: str
    max_age_days: float = Field(default=7, gt=0)


class EventTrigger(_Strict):
    """Fire on a live vehicle event of ``type`` whose payload satisfies ``condition``."""

    type: str = Field(pattern=_ID)
    payload: dict[str, Literal["num", "str", "bool"]] = Field(default_factory=dict)
    condition: str | None = None


class Trigger(_Strict):
    """Exactly one of ``schedule``, ``calendar``, ``metric``, ``event``."""

    schedule: ScheduleTrigger | None = None
    calendar: CalendarTrigger | None = None
    metric: MetricTrigger | None = None
    event: EventTrigger | None = None

    @model_validator(mode="after")
    def _one(self) -> Trigger:
        given = [k for k in ("schedule", "calendar", "metric", "event") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of schedule, calendar, metric, event"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def kind(self) -> str:
        """``schedule`` | ``calendar`` | ``metric`` | ``event``."""
        for k in ("schedule", "calendar", "metric", "event"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def decision_kind(self) -> str:
        """The trigger as logged: calendar triggers are schedules."""
        return "schedule" if self.kind == "calendar" else self.kind


class Variant(_Strict):
    """Content used where ``when`` holds (the first matching variant wins)."""

    when: str | None = None
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)


class Content(_Strict):
    """Content variants (``${field}`` templates) and defaults for null fields.

    The last variant is the default: it has no ``when``.
    """

    variants: list[Variant] = Field(min_length=1)
    defaults: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_last(self) -> Content:
        if self.variants[-1].when is not None:
            raise ValueError("the last variant is the default and takes no 'when'")
        return self


class PerPerson(_Strict):
    """At most ``count`` sends of the strategy per person in ``days`` days."""

    count: int = Field(ge=1)
    days: float = Field(gt=0)


class Caps(_Strict):
    """Per-person frequency of this strategy and its total sends per UTC day."""

    per_person: PerPerson | None = None
    per_day: int | None = Field(default=None, ge=0)


class Experiment(_Strict):
    """Experiment arms, by deterministic hashing of the person.

    ``control_share`` of the audience is held out (logged, not sent); ``baseline_share`` ×
    the number of audience people a batch trigger fired for, drawn at random (by hash, per
    week) from the non-audience people, get the message too (the untargeted baseline;
    ``1.0`` = the same volume).  Live-event strategies have no baseline arm.
    """

    control_share: float = Field(default=0.1, ge=0, le=0.9)
    baseline_share: float = Field(default=0.0, ge=0, le=1.0)
    salt: str = ""


class ChannelRule(_Strict):
    """Channel matching: where ``when`` holds, try ``channels`` in this order instead."""

    when: str
    channels: list[str] = Field(min_length=1)


#: Fields an offer arm's own title/body may use besides ``offer_<key>``.
ARM_FIELDS = ("person_id", "vin", "strategy_id", "trigger_key")


class OfferArm(_Strict):
    """An offer or coupon variant of a strategy, chosen per message by Thompson sampling.

    The batch run samples on the conversions the feedback recorded for each arm
    (:mod:`autopersona.strategy.offers`).  ``offer`` is merged over the strategy's ``offer``.  An arm that changes an offer field
    the content shows must bring its own ``title``/``body`` (templates over ``offer_<key>``
    and :data:`ARM_FIELDS` only).
    """

    id: str = Field(pattern=_ID)
    offer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    title: str | None = None
    body: str | None = None


class StrategySpec(_Strict):
    """One strategy of the catalogue."""

    id: str = Field(pattern=_ID)
    name: str
    description: str = ""
    source: str = ""
    entity: Literal["vin", "customer_id"] = "vin"
    purpose: Literal["marketing", "ubi", "analytics", "partner_sharing"] = "marketing"
    cell: Cell
    audience: str
    trigger: Trigger
    channels: list[str] = Field(min_length=1)
    channel_rules: list[ChannelRule] = Field(default_factory=list)
    content: Content
    offer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    offer_arms: list[OfferArm] = Field(default_factory=list)
    value_cny: float = Field(default=0.0, ge=0)
    response_rate: float = Field(default=0.05, ge=0, le=1)
    priority: int = Field(default=50, ge=0, le=1000)
    caps: Caps = Caps()
    experiment: Experiment = Experiment()
    enabled: bool = True
    file: str = Field(default="", exclude=True)
    line: int = Field(default=1, exclude=True)

    @model_validator(mode="after")
    def _checks(self) -> StrategySpec:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels repeat")
        if self.experiment.control_share + min(self.experiment.baseline_share, 1.0) > 1.5:
            raise ValueError("control_share + baseline_share too large")  # pragma: no cover
        if self.trigger.event is not None and self.entity != "vin":
            raise ValueError("event triggers need entity vin (events come from vehicles)")
        if self.offer_arms:
            self._check_arms()
        return self

    def _check_arms(self) -> None:
        ids = [a.id for a in self.offer_arms]
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise ValueError(f"offer_arms: two or more arms with distinct ids (got {ids})")
        shown = {
            i[len("offer_") :]
            for _, text in self.templates()
            for i in string.Template(text).get_identifiers()
            if i.startswith("offer_")
        }
        for a in self.offer_arms:
            changed = sorted(k for k in shown if k in a.offer and a.offer[k] != self.offer.get(k))
            if changed and (a.title is None or a.body is None):
                raise ValueError(
                    f"offer arm {a.id!r} changes {', '.join(changed)} shown by the content: "
                    "give the arm its own title and body"
                )
            allowed = {f"offer_{k}" for k in {**self.offer, **a.offer}} | set(ARM_FIELDS)
            for text in (a.title, a.body):
                names = set(string.Template(text).get_identifiers()) if text else set()
                if names - allowed:
                    raise ValueError(
                        f"offer arm {a.id!r}: unknown template field(s) "
                        f"{', '.join(sorted(names - allowed))} (use offer_<key> and "
                        f"{', '.join(ARM_FIELDS)})"
                    )

    def expressions(self) -> list[tuple[Loc, str]]:
        """``(location, expression)`` of every expression the strategy declares."""
        out: list[tuple[Loc, str]] = [(("audience",), self.audience)]
        if self.trigger.metric:
            out.append((("trigger", "metric", "condition"), self.trigger.metric.condition))
        if self.trigger.event and self.trigger.event.condition:
            out.append((("trigger", "event", "condition"), self.trigger.event.condition))
        for i, v in enumerate(self.content.variants):
            if v.when:
                out.append((("content", "variants", i, "when"), v.when))
        for i, r in enumerate(self.channel_rules):
            out.append((("channel_rules", i, "when"), r.when))
        return out

    def channel_orders(self) -> list[tuple[tuple[str | int, ...], list[str]]]:
        """``(location, channels)`` of the default order and of every channel rule."""
        out: list[tuple[tuple[str | int, ...], list[str]]] = [(("channels",), self.channels)]
        for i, r in enumerate(self.channel_rules):
            out.append((("channel_rules", i, "channels"), r.channels))
        return out

    def templates(self) -> list[tuple[Loc, str]]:
        """``(location, template)`` of every content template."""
        out: list[tuple[Loc, str]] = []
        for i, v in enumerate(self.content.variants):
            out.append((("content", "variants", i, "title"), v.title))
            out.append((("content", "variants", i, "body"), v.body))
        return out

    def digest(self) -> str:
        """Hash of the declaration."""
        skip = set() if self.offer_arms else {"offer_arms"}  # digests of strategies without
        dumped = self.model_dump_json(by_alias=True, exclude=skip)  # arms stay as they were
        return hashlib.sha256(dumped.encode()).hexdigest()[:16]


class StrategyFile(_Strict):
    """One strategy catalogue file."""

    description: str = ""
    strategies: list[StrategySpec] = Field(min_length=1)


@dataclass
class StrategyCatalogue:
    """Strategies and channels, validated together; ``parsed`` holds parsed expressions."""

    strategies: dict[str, StrategySpec]
    channels: dict[str, ChannelSpec]
    policy: Policy
    files: list[str]
    version: str
    parsed: dict[str, dict[Loc, Expr]] = field(default_factory=dict)

    def enabled(self) -> list[StrategySpec]:
        """Enabled strategies, by id."""
        return [s for _, s in sorted(self.strategies.items()) if s.enabled]


# ----------------------------------------------------------------------------- names
def builtin_dir() -> Path:
    """The built-in strategy folder."""
    return Path(str(resources.files("autopersona.strategy") / "catalogue"))


def channels_file() -> Path:
    """The built-in channels file."""
    return Path(str(resources.files("autopersona.strategy") / "channels.yaml"))


#: Fields every template may use besides profile names and ``offer_<key>``.
_CONTEXT = (
    "person_id",
    "vin",
    "strategy_id",
    "trigger_key",
    "trigger_date",
    "local_date",
    "days_to_trigger_date",
)


def context_names(spec: StrategySpec) -> set[str]:
    """Template fields provided by the engine for ``spec`` (besides profile names).

    >>> sorted(context_names(load_strategies().strategies["t2_adas_trial_end"]))[:3]
    ['days_to_trigger_date', 'local_date', 'offer_code']
    """
    out = set(_CONTEXT) | {f"offer_{k}" for k in spec.offer}
    out |= {f"offer_{k}" for a in spec.offer_arms for k in a.offer}
    if spec.trigger.event:
        out |= set(spec.trigger.event.payload)
    return out


@lru_cache(maxsize=1)
def _tag_catalogue() -> Any:
    from autopersona.tags.spec import load_catalogue

    return load_catalogue()


def _contracts() -> Any:
    from autopersona.contracts import load_contracts

    return load_contracts()


# ----------------------------------------------------------------------------- loading
def load_channels(path: str | Path | None = None) -> ChannelCatalogue:
    """Load the channels file (default: the built-in one).

    Raises
    ------
    CatalogError
        With file and line for every problem.
    """
    p = Path(path) if path is not None else channels_file()
    data, lines = load_yaml_with_lines(p)
    try:
        return ChannelCatalogue.model_validate(data)
    except pydantic.ValidationError as exc:
        raise CatalogError(issues_from_validation(p, exc, lines)) from None


def _load_file(path: Path) -> tuple[StrategyFile, dict[Any, int]]:
    data, lines = load_yaml_with_lines(path)
    try:
        f = StrategyFile.model_validate(data)
    except pydantic.ValidationError as exc:
        raise CatalogError(issues_from_validation(path, exc, lines)) from None
    items = [
        s.model_copy(update={"file": str(path), "line": line_for(lines, ("strategies", i, "id"))})
        for i, s in enumerate(f.strategies)
    ]
    return f.model_copy(update={"strategies": items}), lines


def load_strategies(
    folder: str | Path | None = None,
    extra_files: list[str | Path] | None = None,
    *,
    channels: str | Path | ChannelCatalogue | None = None,
) -> StrategyCatalogue:
    """Load and check every ``*.yaml`` in ``folder`` (default: the built-in catalogue).

    Parameters
    ----------
    folder
        Strategy folder.
    extra_files
        More files checked with the folder (a file with the name of one in the folder
        replaces it).
    channels
        Channels file or an already loaded :class:`ChannelCatalogue` (default: built-in).

    Raises
    ------
    CatalogError
        Listing every problem in every file, each with file and line.
    """
    chan = channels if isinstance(channels, ChannelCatalogue) else load_channels(channels)
    root = Path(folder) if folder is not None else builtin_dir()
    paths: dict[str, Path] = {p.name: p for p in sorted(root.glob("*.yaml"))}
    for e in extra_files or []:
        paths[Path(e).name] = Path(e)
    errors: list[CatalogIssue] = []
    strategies: dict[str, StrategySpec] = {}
    parsed: dict[str, dict[Loc, Expr]] = {}
    for name in sorted(paths):
        path = paths[name]
        try:
            f, lines = _load_file(path)
        except CatalogError as exc:
            errors.extend(exc.errors)
            continue
        for i, s in enumerate(f.strategies):
            if s.id in strategies:
                first = strategies[s.id]
                loc: Loc = ("strategies", i, "id")
                errors.append(
                    CatalogIssue(
                        str(path),
                        line_for(lines, loc),
                        " -> ".join(map(str, loc)),
                        f"duplicate strategy id {s.id!r} "
                        f"(first declared at {first.file}:{first.line})",
                    )
                )
                continue
            strategies[s.id] = s
            errors.extend(_check(s, chan, path, lines, i, parsed.setdefault(s.id, {})))
    if errors:
        raise CatalogError(errors)
    h = hashlib.sha256()
    for name in sorted(paths):
        h.update(name.encode() + b"\0" + paths[name].read_bytes() + b"\0")
    h.update(chan.model_dump_json().encode())
    return StrategyCatalogue(
        strategies=strategies,
        channels=chan.by_id(),
        policy=chan.policy,
        files=[str(paths[n]) for n in sorted(paths)],
        version=h.hexdigest()[:16],
        parsed=parsed,
    )


_TEMPLATE_ID = re.compile(r"^[a-z_][a-z0-9_]*$")


def _check(
    s: StrategySpec,
    chan: ChannelCatalogue,
    path: Path,
    lines: dict[Any, int],
    i: int,
    parsed: dict[Loc, Expr],
) -> list[CatalogIssue]:
    from autopersona.tags.spec import known_names

    out: list[CatalogIssue] = []
    base: Loc = ("strategies", i)

    def issue(loc: Loc, msg: str) -> None:
        full = base + loc
        out.append(CatalogIssue(str(path), line_for(lines, full), " -> ".join(map(str, full)), msg))

    tags = _tag_catalogue().tags
    names = known_names(s.entity)
    tag_ids = {t for t, spec in tags.items() if spec.entity == s.entity}
    payload = set(s.trigger.event.payload) if s.trigger.event else set()
    channels = chan.by_id()
    for where, order in s.channel_orders():
        if len(set(order)) != len(order):
            issue(where, "channels repeat")
        for j, c in enumerate(order):
            if c not in channels:
                issue((*where, j), f"unknown channel {c!r} (known: {', '.join(channels)})")
            elif channels[c].needs_vin and s.entity != "vin":
                issue((*where, j), f"channel {c!r} needs a vehicle, the strategy is per {s.entity}")
    for loc, src in s.expressions():
        try:
            e = parse(src)
        except ExprError as exc:
            issue(loc, f"column {exc.pos}: {exc.message}")
            continue
        parsed[loc] = e
        allowed_payload = loc[:2] == ("trigger", "event") or loc[0] == "content"
        for n, pos in e.name_positions():
            if n in names or n in tag_ids or (allowed_payload and n in payload):
                continue
            if n in tags:
                issue(loc, f"column {pos}: tag {n!r} is per {tags[n].entity}, not {s.entity}")
            elif n in payload:
                issue(
                    loc, f"column {pos}: payload field {n!r} is only known in the event condition"
                )
            else:
                issue(loc, f"column {pos}: unknown feature, tag or field {n!r}")
        for n in e.prev_names():
            if not names.get(n, "").startswith("features_"):
                issue(loc, f"prev() needs a feature, {n!r} is not one")
        for n, lit, pos in e.compared_literals():
            t = tags.get(n)
            if t is not None and t.values is not None and lit not in t.values:
                issue(loc, f"column {pos}: {lit!r} is not a value of tag {n!r}")
    fields = set(names) | tag_ids | context_names(s)
    for loc, text in s.templates():
        tpl = string.Template(text)
        if not tpl.is_valid():
            issue(loc, "invalid template: use ${name} fields and $$ for a dollar sign")
            continue
        for ident in tpl.get_identifiers():
            if not _TEMPLATE_ID.match(ident) or ident not in fields:
                issue(loc, f"unknown template field ${{{ident}}}")
    if s.trigger.calendar:
        cal = s.trigger.calendar
        contracts = _contracts()
        key = "vin" if s.entity == "vin" else "account_id"
        c = contracts.get(cal.table)
        if c is None:
            issue(("trigger", "calendar", "table"), f"unknown table {cal.table!r}")
        else:
            cols = {col.name: col for col in c.columns}
            if key not in cols:
                issue(("trigger", "calendar", "table"), f"table {cal.table!r} has no {key} column")
            col = cols.get(cal.column)
            if col is None:
                issue(("trigger", "calendar", "column"), f"unknown column {cal.column!r}")
            elif col.type not in ("date", "timestamp"):
                issue(("trigger", "calendar", "column"), f"{cal.column!r} is not a date or time")
            for k, v in cal.where.items():
                wc = cols.get(k)
                if wc is None:
                    issue(("trigger", "calendar", "where", k), f"unknown column {k!r}")
                elif wc.allowed and v not in wc.allowed:
                    issue(("trigger", "calendar", "where", k), f"{v!r} is not allowed in {k}")
    if s.trigger.metric:
        e2 = parsed.get(("trigger", "metric", "condition"))
        if e2 is not None and not e2.prev_names():
            issue(("trigger", "metric", "condition"), "a metric change needs prev(feature)")
    return out
