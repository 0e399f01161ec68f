"""Request and response bodies of the API (pydantic models, published in the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt

__all__ = [
    "AudienceCount",
    "AudienceQuery",
    "AudienceSample",
    "ConsentBatch",
    "ConsentIn",
    "ErasureRequest",
    "EventBatch",
    "ExperimentArm",
    "ExperimentReport",
    "ExperimentSummary",
    "IngestResult",
    "Ping",
    "Profile",
    "QuarantinedRow",
    "TagAssignment",
    "TagInfo",
]

EntityType = Literal["vin", "customer_id"]


class _In(BaseModel):
    # strict: no silent coercion of JSON types (false is not 0, "1" is not 1)
    model_config = ConfigDict(extra="forbid", strict=True)


def _text_time(v: Any) -> Any:
    if v is not None and not isinstance(v, str | datetime):
        raise ValueError("expected an ISO 8601 date-time string")
    return v


#: A time given as an RFC 3339 string (numbers are not taken as epoch seconds).
TextTime = Annotated[datetime, Field(strict=False), BeforeValidator(_text_time)]


class Ping(BaseModel):
    """A constant answer."""

    ok: bool = True


class TagAssignment(BaseModel):
    """One version of one tag value of one entity."""

    entity_type: str
    entity: str
    tag_id: str
    value: str | None
    score: float | None
    reasons: Any = Field(description="Case or grade that fired and the inputs it read.")
    as_of: datetime
    valid_from: datetime
    valid_to: datetime | None
    confirmed_at: datetime
    catalogue_version: str | None
    model_version: str | None
    computed_at: datetime


class Profile(BaseModel):
    """An entity's tags at a point in time (a person: the tags of all its VINs and accounts)."""

    kind: Literal["vin", "customer", "person"]
    id: str
    as_of: datetime | None = Field(description="Requested point in time; null means current.")
    entities: list[str] = Field(description="VINs and account ids whose tags are included.")
    tags: list[TagAssignment]


class TagInfo(BaseModel):
    """A tag of the catalogue."""

    id: str
    tier: str
    category: str
    entity: str
    method: str
    cadence: str
    values: list[str] | None
    definition: str
    inputs: list[str]
    sources: list[str]


class AudienceQuery(_In):
    """An audience: a tag expression over one entity type, at a point in time."""

    expression: str = Field(
        min_length=1,
        max_length=2000,
        examples=["l1_vehicle_tier == 'luxury' and l1_energy_type in ['BEV', 'PHEV']"],
    )
    entity_type: EntityType = "vin"
    as_of: str | None = Field(default=None, description="ISO date or time; default now.")
    limit: StrictInt = Field(default=20, ge=1, le=1000, description="Sample size (sample only).")
    seed: StrictInt = Field(default=0, ge=0, le=2**31 - 1, description="Sample seed (sample only).")


class AudienceCount(BaseModel):
    """Size of an audience."""

    expression: str
    entity_type: EntityType
    as_of: datetime | None
    count: int
    total: int = Field(description="Entities of this type with at least one tag.")


class AudienceSample(AudienceCount):
    """Size of an audience and a random sample of its members."""

    entities: list[str]


class EventBatch(_In):
    """Rows of one canonical table, as JSON objects keyed by contract column."""

    rows: list[dict[str, Any]] = Field(min_length=1)


class QuarantinedRow(BaseModel):
    """A quarantined row: its 1-based position in the batch, the field and the reason."""

    row: int | None
    field: str | None
    reason: str


class IngestResult(BaseModel):
    """What happened to a batch: ``read = loaded + duplicates + quarantined``."""

    table: str
    run_id: str
    read: int
    loaded: int
    duplicates: int
    quarantined: int
    reasons: dict[str, int]
    quarantine: list[QuarantinedRow] = Field(description="Up to 200 quarantined rows.")
    notes: list[str]


class ConsentIn(_In):
    """A consent given or withdrawn."""

    account_id: str = Field(min_length=1, max_length=200)
    purpose: Literal["marketing", "ubi", "analytics", "partner_sharing"]
    channel: Literal["any", "head_unit", "app", "sms", "email"] = "any"
    granted: StrictBool
    ts: TextTime | None = Field(default=None, description="Default: now.")
    source: str | None = Field(default="api", max_length=200)


class ConsentBatch(_In):
    """Consent updates."""

    consents: list[ConsentIn] = Field(min_length=1, max_length=10_000)


class ErasureRequest(_In):
    """Erase a person (all linked accounts and VINs), an account or a VIN."""

    kind: Literal["person", "account", "vin"]
    subject: str = Field(min_length=1, max_length=200, pattern=r"\S")
    request_id: str | None = Field(
        default=None, max_length=200, description="Ticket number (stored only as a hash)."
    )


class ExperimentArm(BaseModel):
    """One arm's four-layer funnel and conversion rate with its 95% Wilson interval."""

    arm: str
    assigned: int
    reach: int
    interaction: int
    conversion: int
    value: float
    referrers: int = 0
    rate: float | None
    rate_low: float | None
    rate_high: float | None


class ExperimentSummary(BaseModel):
    """A campaign (strategy) with feedback events."""

    campaign_id: str
    arms: list[str]
    persons: int
    events: int


class ExperimentReport(BaseModel):
    """Funnel per arm and treatment-minus-control conversion difference with a 95% interval."""

    campaign_id: str
    arms: list[ExperimentArm]
    treatment: str | None
    control: str | None
    diff: float | None
    diff_low: float | None
    diff_high: float | None
    p_value: float | None
