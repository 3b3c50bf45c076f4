"""What a client may send to create or change a record, and what a write answers: unknown fields are refused."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationInfo, field_validator,
    model_validator,
)

from app.vocab import LIST_FIELDS, MISSILE_CLASSES, VOCAB, alpha3, date, url  # noqa: F401  (LIST_FIELDS importable here as before)

MAX_TEXT = 4000
MAX_NAME = 200
MAX_ITEMS = 50

_CONTROL = re.compile(r"[\x00-\x1f\x7f\ufffe\uffff]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")


def _no_control(pattern: re.Pattern):
    """A validator refusing control characters (they cannot be written to KML/XML, and no name needs one)."""
    def check(value: str) -> str:
        found = pattern.search(value)
        if found:
            raise ValueError(f"contains the control character U+{ord(found.group()):04X}")
        return value
    return AfterValidator(check)


def _not_bool(value):
    """A number field refuses JSON true/false (which would otherwise be read as 1 and 0)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not a boolean")
    return value


Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME),
                 _no_control(_CONTROL)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_TEXT), _no_control(_CONTROL_BUT_LINES)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), _no_control(_CONTROL)]
Id = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME,
                                       pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False), BeforeValidator(_not_bool)]
Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False), BeforeValidator(_not_bool)]
Precision = Annotated[float, Field(ge=0, le=1e6, allow_inf_nan=False), BeforeValidator(_not_bool)]
MAX_RANGE_KM = 20_040  # half the Earth's circumference: no range reaches farther
RangeKm = Annotated[float, Field(ge=0, le=MAX_RANGE_KM, allow_inf_nan=False), BeforeValidator(_not_bool)]


def _vocabulary(name: str):
    """A Literal type of one vocabulary from the build's rules."""
    return Literal[VOCAB[name]]  # type: ignore[valid-type]


def _checked(rule):
    """A pydantic validator from one of the build's cell rules (None means ok, else the problem)."""
    def check(value: str) -> str:
        problem = rule(value, {})
        if problem:
            raise ValueError(problem)
        return value
    return check


def _unique(values: list[str]) -> list[str]:
    """A list without repeats."""
    if len(set(values)) != len(values):
        raise ValueError("repeats an item")
    return values


PartialDate = Annotated[str, StringConstraints(strip_whitespace=True, max_length=10), AfterValidator(_checked(date))]
Url = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), AfterValidator(_checked(url))]
Country = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=3), AfterValidator(_checked(alpha3(blank_ok=False)))]
Ids = Annotated[list[Id], Field(max_length=MAX_ITEMS), AfterValidator(_unique)]
Names = Annotated[list[Name], Field(max_length=MAX_ITEMS), AfterValidator(_unique)]
MissileClass = Literal[MISSILE_CLASSES]  # type: ignore[valid-type]


class WriteModel(BaseModel):
    """A request body: unknown fields (including server-owned ones) answer 422."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class UpdateModel(WriteModel):
    """A PATCH body: it must change at least one field."""

    @model_validator(mode="after")
    def _something(self):
        """An update changes at least one field."""
        if not self.model_fields_set:
            raise ValueError("give at least one field to change")
        return self


class SiteFields(WriteModel):
    """The fields of a site a client may set; every field optional (a PATCH)."""

    name: Name | None = None
    aliases: Names | None = None
    country: Country | None = None
    province: Name | None = None
    lon: Longitude | None = None
    lat: Latitude | None = None
    coord_confidence: _vocabulary("coord_confidence") | None = None
    coord_precision_m: Precision | None = None
    coord_source_id: Id | None = None
    facility_type: _vocabulary("facility_type") | None = None
    declared_status: _vocabulary("declared_status") | None = None
    missile_types: Ids | None = None
    missile_classes_reported: Annotated[list[MissileClass], Field(max_length=len(MISSILE_CLASSES)),
                                        AfterValidator(_unique)] | None = None
    unit_size: _vocabulary("unit_size") | None = None
    belt: _vocabulary("belt") | None = None
    belt_notes: Text | None = None
    notes: Text | None = None
    source_ids: Ids | None = None

    @model_validator(mode="after")
    def _lon_lat_together(self):
        """A coordinate is given (or cleared) as a pair."""
        if ("lon" in self.model_fields_set) != ("lat" in self.model_fields_set) or (self.lon is None) != (self.lat is None):
            raise ValueError("give lon and lat together (or both null to clear the coordinate)")
        return self


class SiteUpdate(SiteFields, UpdateModel):
    """PATCH /sites/{id}: the fields to change; null clears an optional field."""

    @field_validator("name", "country", "facility_type", "declared_status", "source_ids", "coord_confidence")
    @classmethod
    def _kept(cls, value, info: ValidationInfo):
        """The fields every site must have are never blanked (the error names the field)."""
        if value in (None, []):
            raise ValueError(f"{info.field_name} cannot be cleared")
        return value


class SiteCreate(SiteFields):
    """POST /sites: a new site; the server gives its id from its name."""

    name: Name
    country: Country
    facility_type: _vocabulary("facility_type")
    declared_status: _vocabulary("declared_status") = "unknown"
    coord_confidence: _vocabulary("coord_confidence") = "unknown"
    source_ids: Annotated[Ids, Field(min_length=1)]


class ObservationCreate(WriteModel):
    """POST /sites/{id}/observations: a dated observation; the server gives its id and records who and when."""

    observed_on: PartialDate = Field(min_length=4)
    kind: _vocabulary("kind")
    status_seen: _vocabulary("status_seen") = "unknown"
    source_id: Id
    notes: Text | None = None


class SourceFields(WriteModel):
    """The fields of a source a client may set; every field optional (a PATCH)."""

    title: Title | None = None
    publisher: Name | None = None
    published_on: PartialDate | None = None
    url: Url | None = None
    notes: Text | None = None


class SourceUpdate(SourceFields, UpdateModel):
    """PATCH /sources/{id}: the fields to change; null clears an optional field."""

    @field_validator("title", "publisher")
    @classmethod
    def _kept(cls, value, info: ValidationInfo):
        """A source keeps a title and a publisher (the error names the field)."""
        if value is None:
            raise ValueError(f"{info.field_name} cannot be cleared")
        return value


class SourceCreate(SourceFields):
    """POST /sources: a new source; the server gives its id from its publisher and title."""

    title: Title
    publisher: Name


class MissileFields(WriteModel):
    """The fields of a missile system a client may set; every field optional (a PATCH)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, populate_by_name=False)

    name: Name | None = None
    aliases: Names | None = None
    missile_class: MissileClass | None = Field(None, alias="class")
    range_min_km: RangeKm | None = None
    range_max_km: RangeKm | None = None
    range_kind: _vocabulary("range_kind") | None = None
    confidence: _vocabulary("confidence") | None = None
    source_ids: Ids | None = None
    notes: Text | None = None


class MissileUpdate(MissileFields, UpdateModel):
    """PATCH /missiles/{id}: the fields to change; null clears an optional field."""

    @field_validator("name", "missile_class", "source_ids")
    @classmethod
    def _kept(cls, value, info: ValidationInfo):
        """A missile keeps a name, a class and its sources (the error names the field)."""
        if value in (None, []):
            raise ValueError(f"{'class' if info.field_name == 'missile_class' else info.field_name} cannot be cleared")
        return value


class MissileCreate(MissileFields):
    """POST /missiles: a new missile system; the server gives its id from its name. A range needs its kind and
    confidence, and every missile its sources."""

    name: Name
    missile_class: MissileClass = Field(alias="class")
    source_ids: Annotated[Ids, Field(min_length=1)]


class PlaceFields(WriteModel):
    """The fields of a reference place a client may set; every field optional (a PATCH)."""

    name: Name | None = None
    aliases: Names | None = None
    kind: _vocabulary("place_kind") | None = None
    country: Country | None = None
    lon: Longitude | None = None
    lat: Latitude | None = None
    source_id: Id | None = None
    notes: Text | None = None

    @model_validator(mode="after")
    def _lon_lat_together(self):
        """A place moves with both coordinates at once."""
        if ("lon" in self.model_fields_set) != ("lat" in self.model_fields_set):
            raise ValueError("give lon and lat together")
        return self


class PlaceUpdate(PlaceFields, UpdateModel):
    """PATCH /places/{id}: the fields to change; null clears an optional field."""

    @field_validator("name", "kind", "lon", "lat", "source_id")
    @classmethod
    def _kept(cls, value, info: ValidationInfo):
        """A place keeps its name, kind, coordinate and source (the error names the field)."""
        if value is None:
            raise ValueError(f"{info.field_name} cannot be cleared")
        return value


class PlaceCreate(PlaceFields):
    """POST /places: a new reference place; the server gives its id from its name."""

    name: Name
    kind: _vocabulary("place_kind")
    lon: Longitude
    lat: Latitude
    source_id: Id


class Change(BaseModel):
    """One recorded change: who made it, when, and each field's value before and after."""

    id: int
    at: str
    actor: str
    action: Literal["create", "update", "retire", "add", "attach", "detach"]
    entity: Literal["site", "observation", "source", "missile", "place", "attached_border"]
    entity_id: str
    site_id: str | None
    diff: dict[str, tuple[object, object]] = Field(description="field -> [from, to]")


class SiteRead(BaseModel):
    """A site as stored: the client's fields, the derived ones, and the server-owned id, times and editors."""

    id: str
    name: str
    aliases: list[str]
    country: str
    province: str | None
    lon: float | None
    lat: float | None
    coord_confidence: str
    coord_precision_m: float | None
    coord_source_id: str | None
    facility_type: str
    declared_status: str
    missile_types: list[str]
    missile_classes_reported: list[str]
    unit_size: str | None
    belt: str | None
    belt_notes: str | None
    notes: str | None
    source_ids: list[str]
    missile_classes: list[str] = Field(description="Classes of its missiles and the classes reported without a type.")
    current_status: str = Field(description="The status seen by its latest observation that saw one.")
    status_observed_on: str | None
    created_at: str | None = Field(description="UTC; null for sites from the bundled build.")
    created_by: str | None
    updated_at: str | None
    updated_by: str | None
    retired_at: str | None
    retired_by: str | None


class ObservationRead(BaseModel):
    """An observation as stored, with the server-owned id and who recorded it when."""

    id: str
    site_id: str
    observed_on: str
    kind: str
    status_seen: str
    source_id: str
    notes: str | None
    recorded_at: str | None
    recorded_by: str | None


class SourceRead(BaseModel):
    """A source as stored, with the server-owned id, times and editors."""

    id: str
    title: str
    publisher: str
    published_on: str | None
    url: str | None
    notes: str | None
    created_at: str | None
    created_by: str | None
    updated_at: str | None
    updated_by: str | None


class SiteWritten(BaseModel):
    """What a site write answers: the site as stored now and the change made (null when nothing changed)."""

    record: SiteRead
    change: Change | None


class ObservationWritten(BaseModel):
    """What adding an observation answers."""

    record: ObservationRead
    change: Change


class SourceWritten(BaseModel):
    """What a source write answers: the source as stored now and the change made (null when nothing changed)."""

    record: SourceRead
    change: Change | None


class MissileRead(BaseModel):
    """A missile system as stored, with the server-owned id, times and editors."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    name: str
    aliases: list[str]
    missile_class: str = Field(alias="class")
    range_min_km: float | None
    range_max_km: float | None
    range_kind: str | None
    confidence: str | None
    source_ids: list[str]
    notes: str | None
    created_at: str | None = Field(description="UTC; null for missiles from the bundled build.")
    created_by: str | None
    updated_at: str | None
    updated_by: str | None


class PlaceRead(BaseModel):
    """A reference place as stored, with the server-owned id, times and editors."""

    id: str
    name: str
    aliases: list[str]
    kind: str
    country: str | None
    lon: float
    lat: float
    source_id: str
    notes: str | None
    created_at: str | None = Field(description="UTC; null for places from the bundled build.")
    created_by: str | None
    updated_at: str | None
    updated_by: str | None


class MissileWritten(BaseModel):
    """What a missile write answers: the missile as stored now and the change made (null when nothing changed)."""

    model_config = ConfigDict(serialize_by_alias=True)

    record: MissileRead
    change: Change | None


class PlaceWritten(BaseModel):
    """What a place write answers: the place as stored now and the change made (null when nothing changed)."""

    record: PlaceRead
    change: Change | None
