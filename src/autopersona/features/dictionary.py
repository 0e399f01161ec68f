"""The feature dictionary: every feature's name, unit, definition and source tables, as data.

Relational features are declared in ``dictionary/<domain>.yaml`` (validated with pydantic,
errors with file and line); per-vehicle modules may contribute entries in code.

Examples
--------
>>> from autopersona.features.dictionary import feature_dictionary
>>> f = feature_dictionary()["harsh_brake_per_100km"]
>>> f.unit, f.domain
('1/100km', 'driving')
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autopersona.catalog import load_folder, load_model
from autopersona.contracts import load_contracts

__all__ = ["DomainDictionary", "FeatureSpec", "feature_dictionary", "load_domain"]


class FeatureSpec(BaseModel):
    """One feature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    unit: str
    definition: str
    sources: list[str] = Field(min_length=1)
    domain: str = ""
    entity: str = ""


class DomainDictionary(BaseModel):
    """A file of features of one domain, all per ``entity`` and period."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    domain: Literal[
        "driving", "mobility", "cabin", "service", "charging", "commerce", "sentiment", "churn"
    ]
    entity: Literal["vin", "customer_id"]
    table: str = Field(pattern=r"^features_[a-z_]+$")
    description: str
    features: list[FeatureSpec] = Field(min_length=1)

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


def load_domain(path: str | Path) -> DomainDictionary:
    """Load one dictionary file; each feature gets its file's domain and entity."""
    d = load_model(path, DomainDictionary)
    feats = [f.model_copy(update={"domain": d.domain, "entity": d.entity}) for f in d.features]
    return d.model_copy(update={"features": feats})


def _dir() -> Path:
    return Path(str(resources.files("autopersona.features") / "dictionary"))


@lru_cache(maxsize=1)
def domains() -> dict[str, DomainDictionary]:
    """Every declared domain dictionary, by domain."""
    return load_folder(_dir(), load_domain, lambda d: d.domain)


def feature_dictionary() -> dict[str, FeatureSpec]:
    """All features by name (relational domains plus per-vehicle modules that declare some)."""
    out: dict[str, FeatureSpec] = {}
    for d in domains().values():
        for f in d.features:
            out[f.name] = f
    try:
        import importlib

        mobility = importlib.import_module("autopersona.features.mobility")
        for entry in getattr(mobility, "MOBILITY_FEATURES", []):
            spec = FeatureSpec.model_validate(entry)
            out.setdefault(spec.name, spec)
    except ImportError:  # pragma: no cover - mobility is optional while it is being built
        pass
    return out
