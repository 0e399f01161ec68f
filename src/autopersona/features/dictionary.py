"""The feature dictionary: every feature's name, unit, definition, sources and purposes, as data.

Relational features are declared in ``dictionary/<domain>.yaml`` (validated with pydantic,
errors with file and line); a domain whose features are computed per vehicle in code (mobility)
has a file too, naming the module that declares them (``declared_in``) instead of listing them.

Every file declares the consent **purposes** its features serve (``purposes``: ``analytics``,
``marketing``, ``ubi``, ``partner_sharing``); a feature may narrow them with its own
``purposes``.  The feature build honours them (:mod:`autopersona.features.consent`): an entity
gets a row only when its people consent to one of its domain's purposes, a feature's value only
when they consent to one of that feature's purposes, and models fitted on the fleet (the trip
purpose HMM) are fitted only on consenting vehicles.  The tag catalogue is checked against them:
a tag may read a feature only if the feature serves the tag's purpose.

Examples
--------
>>> from autopersona.features.dictionary import feature_dictionary
>>> f = feature_dictionary()["harsh_brake_per_100km"]
>>> f.unit, f.domain, f.purposes
('1/100km', 'driving', ('analytics', 'ubi'))
>>> domain_purposes()["mobility"]
('analytics', 'ubi')
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autopersona.catalog import load_folder, load_model
from autopersona.contracts import load_contracts

__all__ = [
    "DomainDictionary",
    "FeatureSpec",
    "Purpose",
    "all_domains",
    "domain_purposes",
    "domains",
    "feature_dictionary",
    "load_domain",
    "purposes_of",
]

#: Consent purposes (those of :mod:`autopersona.privacy.consent`).
Purpose = Literal["marketing", "ubi", "analytics", "partner_sharing"]


def _unique_purposes(v: tuple[Purpose, ...]) -> tuple[Purpose, ...]:
    dup = sorted({p for p in v if v.count(p) > 1})
    if dup:
        raise ValueError(f"purpose(s) listed twice: {', '.join(dup)}")
    return v


class FeatureSpec(BaseModel):
    """One feature.

    ``purposes`` are the consent purposes it serves: its own when it lists some, else its
    file's.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    definition: str
    sources: list[str] = Field(min_length=1)
    domain: str = ""
    entity: str = ""
    purposes: tuple[Purpose, ...] = ()

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, v: tuple[Purpose, ...]) -> tuple[Purpose, ...]:
        return _unique_purposes(v)


class DomainDictionary(BaseModel):
    """A file of features of one domain, all per ``entity`` and period.

    ``purposes`` are the consent purposes the domain's features serve (at least one).  A
    domain computed in code names its module in ``declared_in`` and lists no features.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: Literal[
        "driving", "mobility", "cabin", "service", "charging", "commerce", "sentiment", "churn"
    ]
    entity: Literal["vin", "customer_id"]
    table: str = Field(pattern=r"^features_[a-z_]+$")
    description: str
    purposes: tuple[Purpose, ...] = Field(min_length=1)
    declared_in: str | None = Field(default=None, pattern=r"^autopersona(\.[a-z_]+)+$")
    features: list[FeatureSpec] = Field(default_factory=list)

    @field_validator("purposes")
    @classmethod
    def _purposes(cls, v: tuple[Purpose, ...]) -> tuple[Purpose, ...]:
        return _unique_purposes(v)

    @field_validator("features")
    @classmethod
    def _unique(cls, v: list[FeatureSpec]) -> list[FeatureSpec]:
        names = [f.name for f in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate feature name(s): {', '.join(dup)}")
        known = set(load_contracts())
        for f in v:
            unknown = [s for s in f.sources if s not in known]
            if unknown:
                raise ValueError(f"{f.name}: unknown source table(s) {unknown}")
        return v

    @model_validator(mode="after")
    def _features_or_code(self) -> Self:
        if self.declared_in is None and not self.features:
            raise ValueError("list the domain's features, or name the module declaring them")
        if self.declared_in is not None and self.features:
            raise ValueError(f"features are declared in {self.declared_in}: list none here")
        return self


def load_domain(path: str | Path) -> DomainDictionary:
    """Load one dictionary file; each feature gets its file's domain, entity and purposes."""
    d = load_model(path, DomainDictionary)
    feats = [
        f.model_copy(
            update={"domain": d.domain, "entity": d.entity, "purposes": f.purposes or d.purposes}
        )
        for f in d.features
    ]
    return d.model_copy(update={"features": feats})


def _dir() -> Path:
    return Path(str(resources.files("autopersona.features") / "dictionary"))


@lru_cache(maxsize=1)
def all_domains() -> dict[str, DomainDictionary]:
    """Every domain file, by domain (those declared in code included, without features)."""
    return load_folder(_dir(), load_domain, lambda d: d.domain)


def domains() -> dict[str, DomainDictionary]:
    """Every domain whose features the dictionary files list, by domain."""
    return {k: d for k, d in all_domains().items() if d.declared_in is None}


def domain_purposes() -> dict[str, tuple[str, ...]]:
    """The consent purposes of each domain's features, by domain."""
    return {k: tuple(d.purposes) for k, d in all_domains().items()}


def feature_dictionary() -> dict[str, FeatureSpec]:
    """All features by name (relational domains plus per-vehicle modules that declare some)."""
    out: dict[str, FeatureSpec] = {}
    for d in domains().values():
        for f in d.features:
            out[f.name] = f
    import importlib

    for d in all_domains().values():
        if d.declared_in is None:
            continue
        module = importlib.import_module(d.declared_in)
        key = f"{d.domain.upper()}_FEATURES"
        for entry in getattr(module, key):
            spec = FeatureSpec.model_validate(entry)
            spec = spec.model_copy(
                update={
                    "domain": d.domain,
                    "entity": d.entity,
                    "purposes": spec.purposes or d.purposes,
                }
            )
            out.setdefault(spec.name, spec)
    return out


def purposes_of(domain: str, name: str) -> tuple[str, ...]:
    """The purposes feature ``name`` of ``domain`` serves (the domain's for other columns).

    >>> purposes_of("charging", "sessions"), purposes_of("driving", "driving_age_days")
    (('analytics',), ('analytics', 'ubi'))
    """
    d = all_domains()[domain]
    for f in d.features:
        if f.name == name:
            return tuple(f.purposes)
    spec = feature_dictionary().get(name)
    if spec is not None and spec.domain == domain:
        return tuple(spec.purposes)
    return tuple(d.purposes)
