"""Analysts' writes: each checks the stored data, writes the row, and records the change; callers hold the transaction."""

from __future__ import annotations

import datetime
import json

import shapely

from app import border_store, store, vocab
from app.storage import Connection
from app.errors import Gone, InvalidParameter, NotFound
from app.history import period_start
from app.migrations import ATTACHED_TABLE
from app.models import (
    LIST_FIELDS, MissileCreate, MissileFields, MissileUpdate, ObservationCreate, PlaceCreate, PlaceUpdate, SiteCreate,
    SiteUpdate, SourceCreate, SourceUpdate,
)
from app.vocab import (  # noqa: F401
    MAX_ID_LENGTH, MISSILE_LIST_COLUMNS, NO_STATUS, PLACE_LIST_COLUMNS, SITE_LIST_COLUMNS, decode_list, encode_list,
    alpha3, latest_status, slugify,
)

SITE_FIELDS = tuple(SiteCreate.model_fields)
SOURCE_FIELDS = tuple(SourceCreate.model_fields)
DERIVED_SITE_FIELDS = ("missile_classes", "current_status", "status_observed_on")
SITE_STORED = tuple(f for f in SITE_FIELDS if f not in ("lon", "lat")) + DERIVED_SITE_FIELDS + store.EDIT_COLUMNS["sites"]


def _free_id(connection: Connection, table: str, base: str) -> str:
    """The base id, or base-2, base-3 ... whichever is not yet taken in the table (probes on its unique index)."""
    return free_ids(connection, table, [base])[0]


def free_ids(connection: Connection, table: str, bases: list[str]) -> list[str]:
    """A free id for each base, in order: the base, else base-2, base-3 ...; distinct from each other too.

    Each probe is one lookup on the table's unique id index, so the cost grows with the ids handed out, not
    with the table; repeated bases continue where the previous one stopped.
    """
    chosen: set[str] = set()
    next_number: dict[str, int] = {}
    ids = []
    for base in bases:
        number = next_number.get(base, 1)
        candidate = base if number == 1 else f"{base}-{number}"
        while candidate in chosen or connection.execute(
                f'SELECT 1 FROM "{table}" WHERE id = ?', (candidate,)).fetchone() is not None:
            number += 1
            candidate = f"{base}-{number}"
        next_number[base] = number + 1
        chosen.add(candidate)
        ids.append(candidate)
    return ids


# --- reading stored rows as records ----------------------------------------------------------------


def _cell(field: str, value):
    """A stored cell as a record value: JSON-array list cells become lists."""
    return decode_list(value) if field in SITE_LIST_COLUMNS else value


def _stored(field: str, value):
    """A record value as a stored cell: lists become JSON arrays, empty ones NULL."""
    return encode_list(value) if field in SITE_LIST_COLUMNS else value


def site_record(connection: Connection, site_id: str) -> dict | None:
    """A stored site as a plain record (lon/lat, lists as lists), or None."""
    row = connection.execute(f'SELECT geom, {", ".join(SITE_STORED)} FROM sites WHERE id = ?', (site_id,)).fetchone()
    if row is None:
        return None
    point = store.blob_geometry(row[0])
    located = point is not None and not point.is_empty
    record = {"id": site_id, "lon": point.x if located else None, "lat": point.y if located else None}
    record.update({field: _cell(field, value) for field, value in zip(SITE_STORED, row[1:])})
    return record


def source_record(connection: Connection, source_id: str) -> dict | None:
    """A stored source as a plain record, or None."""
    columns = ("id",) + SOURCE_FIELDS + store.EDIT_COLUMNS["sources"]
    row = connection.execute(f'SELECT {", ".join(columns)} FROM sources WHERE id = ?', (source_id,)).fetchone()
    return None if row is None else dict(zip(columns, row))


def observation_record(connection: Connection, observation_id: str) -> dict | None:
    """A stored observation as a plain record, or None."""
    cursor = connection.execute("SELECT * FROM observations WHERE id = ?", (observation_id,))
    row = cursor.fetchone()
    return None if row is None else {d[0]: v for d, v in zip(cursor.description, row) if d[0] != "fid"}


def _live_site(connection: Connection, site_id: str) -> dict:
    """A site that exists and is not retired (NotFound or Gone otherwise)."""
    record = site_record(connection, site_id)
    if record is None:
        raise NotFound(f"no site with id {site_id!r}", parameter="site_id")
    if record["retired_at"]:
        raise Gone(f"site {site_id!r} was retired at {record['retired_at']} by {record['retired_by']}",
                   parameter="site_id")
    return record


# --- checks against the stored catalogue ----------------------------------------------------------


def _known(connection: Connection, table: str, ids) -> set[str]:
    """Which of the ids exist in a table."""
    ids = list(ids)
    if not ids:
        return set()
    marks = ", ".join("?" * len(ids))
    return {row[0] for row in connection.execute(f'SELECT id FROM "{table}" WHERE id IN ({marks})', ids)}


def _check_refs(connection: Connection, field: str, table: str, ids) -> None:
    """Every id must name an existing row of the table."""
    known = _known(connection, table, ids)
    missing = [i for i in ids if i not in known]
    if missing:
        raise InvalidParameter(f"{field}: unknown {table[:-1]} id {missing[0]!r}", parameter=field)


def _check_site(connection: Connection, site: dict) -> None:
    """A whole site record agrees with itself and cites only known sources and missiles."""
    _check_refs(connection, "source_ids", "sources", site["source_ids"])
    _check_refs(connection, "missile_types", "missiles", site["missile_types"])
    check_site_fields(site)


def check_refs_known(site: dict, sources, missiles) -> None:
    """The site cites only the given known source and missile ids (InvalidParameter naming the field otherwise)."""
    for field, table, known in (("source_ids", "source", sources), ("missile_types", "missile", missiles)):
        missing = [i for i in site[field] if i not in known]
        if missing:
            raise InvalidParameter(f"{field}: unknown {table} id {missing[0]!r}", parameter=field)


def check_site_fields(site: dict) -> None:
    """A site record's coordinate fields agree with each other and with its sources."""
    located = site["lon"] is not None
    if located == (site["coord_confidence"] == "unknown"):
        raise InvalidParameter("coord_confidence must be 'unknown' exactly when lon/lat are null",
                               parameter="coord_confidence")
    if located != bool(site["coord_source_id"]):
        raise InvalidParameter("coord_source_id must be given exactly when lon/lat are given", parameter="coord_source_id")
    if site["coord_precision_m"] is not None and not located:
        raise InvalidParameter("coord_precision_m given without a coordinate", parameter="coord_precision_m")
    if site["coord_source_id"] and site["coord_source_id"] not in site["source_ids"]:
        raise InvalidParameter(f"coord_source_id {site['coord_source_id']!r} is not among source_ids",
                               parameter="coord_source_id")


def _derive(connection: Connection, site: dict) -> dict:
    """The site with its derived fields: its missiles' classes and the status of its latest observation."""
    classes = _missile_classes(connection, site["missile_types"])
    observations = connection.execute("SELECT site_id, observed_on, id, status_seen FROM observations WHERE site_id = ?",
                                      (site["id"],)).fetchall()
    return with_derived(site, classes, latest_status(observations).get(site["id"], NO_STATUS))


def with_derived(site: dict, classes: dict[str, str], status: tuple[str, str | None] = NO_STATUS) -> dict:
    """The site with its derived fields, given its missiles' classes and (status, date) of its latest observation."""
    missile_classes = vocab.site_classes(site["missile_types"], site["missile_classes_reported"], classes)
    return {**site, "missile_classes": missile_classes, "current_status": status[0], "status_observed_on": status[1]}


def _missile_classes(connection: Connection, missile_ids) -> dict[str, str]:
    """The class of each of the given missiles (one indexed lookup each)."""
    ids = list(dict.fromkeys(missile_ids))
    if not ids:
        return {}
    marks = ", ".join("?" * len(ids))
    return dict(connection.execute(f"SELECT id, class FROM missiles WHERE id IN ({marks})", ids))


# --- writing and recording ------------------------------------------------------------------------


def _diff(before: dict | None, after: dict | None) -> dict:
    """Each field whose value differs, as [from, to]."""
    if not before:  # a new record (the bulk import's case): every field that is set
        return {k: [None, v] for k, v in (after or {}).items() if v is not None}
    before, after = before or {}, after or {}
    return {k: [before.get(k), after.get(k)] for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)}


CHANGE_INSERT = ("INSERT INTO changes (at, actor, action, entity, entity_id, site_id, diff, before, after)"
                 " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def change_row(*, at: str, actor: str, action: str, entity: str, entity_id: str, site_id: str | None,
               before: dict | None, after: dict | None) -> tuple:
    """One change as the values of a change-log row (CHANGE_INSERT's order)."""
    return (at, actor, action, entity, entity_id, site_id, json.dumps(_diff(before, after)),
            None if before is None else json.dumps(before), None if after is None else json.dumps(after))


def record_change(connection, *, at: str, actor: str, action: str, entity: str, entity_id: str,
                  site_id: str | None, before: dict | None, after: dict | None) -> dict:
    """Append one change to the log and return it as stored."""
    diff = _diff(before, after)
    cursor = connection.execute(CHANGE_INSERT + " RETURNING id",
                                change_row(at=at, actor=actor, action=action, entity=entity, entity_id=entity_id,
                                           site_id=site_id, before=before, after=after))
    return {"id": cursor.fetchall()[0][0], "at": at, "actor": actor, "action": action, "entity": entity,
            "entity_id": entity_id, "site_id": site_id, "diff": diff}


def _insert(connection: Connection, table: str, row: dict) -> None:
    """Insert one row given as column -> value."""
    columns = ", ".join(f'"{c}"' for c in row)
    connection.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({", ".join("?" * len(row))})', list(row.values()))


def _assignments(row: dict) -> str:
    """`"column" = ?, ...` for an UPDATE of the row's columns."""
    return ", ".join(f'"{c}" = ?' for c in row)


def site_row(site: dict) -> dict:
    """A site record as its stored row, column -> cell: the point blob, lists as JSON arrays, and its id last."""
    located = site["lon"] is not None
    row = {"geom": store.point_blob(site["lon"], site["lat"]) if located else None}
    row.update({f: _stored(f, site[f]) for f in SITE_STORED})
    return {**row, "id": site["id"]}


def _write_site(connection: Connection, site: dict, *, insert: bool) -> None:
    """Insert or update a site's row, its point blob (the R-tree triggers follow) and gpkg_contents."""
    located = site["lon"] is not None
    row = site_row(site)
    if insert:
        _insert(connection, "sites", row)
    else:
        row.pop("id")
        assignments = ", ".join(f'"{c}" = ?' for c in row)
        connection.execute(f"UPDATE sites SET {assignments} WHERE id = ?", [*row.values(), site["id"]])
    store.touch_contents(connection, "sites", shapely.Point(site["lon"], site["lat"]) if located else None)
    border_store.write_sites(connection, [(site["id"], site.get("country"), site["lon"], site["lat"])], measure=False)


def new_site(data: SiteCreate, *, site_id: str | None, at: str, actor: str) -> dict:
    """A new site's record before its derived fields: the client's fields, lists never None, the server's."""
    site = {field: getattr(data, field) for field in SITE_FIELDS}
    site = {**site, **{f: site[f] or [] for f in LIST_FIELDS}}
    site["id"] = site_id
    site.update(created_at=at, created_by=actor, updated_at=at, updated_by=actor, retired_at=None, retired_by=None)
    return site


def site_id_base(data: SiteCreate) -> str:
    """The id a new site is named by (before a -2, -3 ... that makes it free)."""
    return slugify(data.name, "site")


def create_site(connection: Connection, data: SiteCreate, actor: str) -> dict:
    """Add a site; its id comes from its name. Returns the change."""
    at = store.utc_now()
    site = new_site(data, site_id=_free_id(connection, "sites", site_id_base(data)), at=at, actor=actor)
    _check_site(connection, site)
    site = _derive(connection, site)
    _write_site(connection, site, insert=True)
    return record_change(connection, at=at, actor=actor, action="create", entity="site", entity_id=site["id"],
                         site_id=site["id"], before=None, after=site)


def update_site(connection: Connection, site_id: str, data: SiteUpdate, actor: str) -> dict | None:
    """Change the given fields of a site (null clears); a moved site gets a new point. The change, or None if none."""
    before = _live_site(connection, site_id)
    changes = {field: getattr(data, field) for field in data.model_fields_set}
    changes = {f: ([] if v is None and f in LIST_FIELDS else v) for f, v in changes.items()}
    site = {**before, **changes}
    _check_site(connection, site)
    site = _derive(connection, site)
    if _diff(before, site) == {}:
        return None
    at = store.utc_now()
    site.update(updated_at=at, updated_by=actor)
    _write_site(connection, site, insert=False)
    return record_change(connection, at=at, actor=actor, action="update", entity="site", entity_id=site_id,
                         site_id=site_id, before=before, after=site)


def retire_site(connection: Connection, site_id: str, actor: str) -> dict:
    """Retire a site: it leaves the current catalogue, keeping its row and history. Returns the change."""
    before = _live_site(connection, site_id)
    at = store.utc_now()
    site = {**before, "retired_at": at, "retired_by": actor}
    connection.execute("UPDATE sites SET retired_at = ?, retired_by = ? WHERE id = ?", (at, actor, site_id))
    store.touch_contents(connection, "sites")
    return record_change(connection, at=at, actor=actor, action="retire", entity="site", entity_id=site_id,
                         site_id=site_id, before=before, after=site)


def add_observation(connection: Connection, site_id: str, data: ObservationCreate, actor: str) -> dict:
    """Add a dated observation to a site and re-derive its current status. Returns the change."""
    site = _live_site(connection, site_id)
    if period_start(data.observed_on) > datetime.datetime.now(datetime.timezone.utc).date():
        raise InvalidParameter(f"observed_on {data.observed_on!r} is in the future", parameter="observed_on")
    _check_refs(connection, "source_id", "sources", [data.source_id])
    at = store.utc_now()
    observation = {"id": _free_id(connection, "observations", slugify(f"{site_id}-{data.observed_on}-{data.kind}", "obs")),
                   "site_id": site_id, **data.model_dump(), "recorded_at": at, "recorded_by": actor}
    _insert(connection, "observations", observation)
    derived = _derive(connection, site)
    connection.execute("UPDATE sites SET current_status = ?, status_observed_on = ? WHERE id = ?",
                       (derived["current_status"], derived["status_observed_on"], site_id))
    store.touch_contents(connection, "observations")
    return record_change(connection, at=at, actor=actor, action="add", entity="observation",
                         entity_id=observation["id"], site_id=site_id, before=None, after=observation)


def create_source(connection: Connection, data: SourceCreate, actor: str) -> dict:
    """Add a source; its id comes from its publisher and title. Returns the change."""
    at = store.utc_now()
    source_id = _free_id(connection, "sources", slugify(f"{data.publisher} {data.title}", "source"))
    source = {"id": source_id, **{f: getattr(data, f) for f in SOURCE_FIELDS},
              "created_at": at, "created_by": actor, "updated_at": at, "updated_by": actor}
    _insert(connection, "sources", source)
    store.touch_contents(connection, "sources")
    return record_change(connection, at=at, actor=actor, action="create", entity="source", entity_id=source_id,
                         site_id=None, before=None, after=source)


def update_source(connection: Connection, source_id: str, data: SourceUpdate, actor: str) -> dict | None:
    """Change the given fields of a source. The change, or None if nothing differs."""
    before = source_record(connection, source_id)
    if before is None:
        raise NotFound(f"no source with id {source_id!r}", parameter="source_id")
    source = {**before, **{field: getattr(data, field) for field in data.model_fields_set}}
    if _diff(before, source) == {}:
        return None
    at = store.utc_now()
    source.update(updated_at=at, updated_by=actor)
    assignments = ", ".join(f'"{c}" = ?' for c in (*SOURCE_FIELDS, "updated_at", "updated_by"))
    connection.execute(f"UPDATE sources SET {assignments} WHERE id = ?",
                       [source[c] for c in (*SOURCE_FIELDS, "updated_at", "updated_by")] + [source_id])
    store.touch_contents(connection, "sources")
    return record_change(connection, at=at, actor=actor, action="update", entity="source", entity_id=source_id,
                         site_id=None, before=before, after=source)


# --- missiles --------------------------------------------------------------------------------------

MISSILE_FIELDS = ("name", "aliases", "class", "range_min_km", "range_max_km", "range_kind", "confidence", "source_ids",
                  "notes")
MISSILE_STORED = MISSILE_FIELDS + store.EDIT_COLUMNS["missiles"]


def _missile_fields(data: MissileFields, names) -> dict:
    """The given fields of a missile body keyed by column (`class` for the model's missile_class)."""
    return {("class" if name == "missile_class" else name): getattr(data, name) for name in names}


def missile_record(connection: Connection, missile_id: str) -> dict | None:
    """A stored missile as a plain record (lists as lists), or None."""
    columns = ", ".join(f'"{c}"' for c in MISSILE_STORED)
    row = connection.execute(f"SELECT {columns} FROM missiles WHERE id = ?", (missile_id,)).fetchone()
    if row is None:
        return None
    record = {"id": missile_id, **dict(zip(MISSILE_STORED, row))}
    return {k: decode_list(v) if k in MISSILE_LIST_COLUMNS else v for k, v in record.items()}


def check_missile_fields(missile: dict) -> None:
    """A missile's range fields agree with each other (as the build checks missiles.csv)."""
    low, high = missile["range_min_km"], missile["range_max_km"]
    if low is not None and high is None:
        raise InvalidParameter("range_min_km given without range_max_km", parameter="range_min_km")
    if low is not None and low > high:
        raise InvalidParameter(f"range_min_km {low:g} exceeds range_max_km {high:g}", parameter="range_min_km")
    for field in ("range_kind", "confidence"):
        if (missile[field] is None) != (high is None):
            raise InvalidParameter(f"{field} must be given exactly when range_max_km is given", parameter=field)


def _check_missile(connection: Connection, missile: dict) -> None:
    """A whole missile record agrees with itself and cites only known sources."""
    _check_refs(connection, "source_ids", "sources", missile["source_ids"])
    check_missile_fields(missile)


def _missile_row(missile: dict) -> dict:
    """A missile record as its stored row (lists as JSON arrays), its id last."""
    row = {c: (encode_list(missile[c]) if c in MISSILE_LIST_COLUMNS else missile[c]) for c in MISSILE_STORED}
    return {**row, "id": missile["id"]}


def new_missile(data: MissileCreate, *, missile_id: str, at: str, actor: str) -> dict:
    """A new missile's record: the client's fields (lists never None) and the server's."""
    missile = _missile_fields(data, MissileFields.model_fields)
    missile.update(aliases=missile["aliases"] or [], source_ids=missile["source_ids"] or [], id=missile_id,
                   created_at=at, created_by=actor, updated_at=at, updated_by=actor)
    return missile


def create_missile(connection: Connection, data: MissileCreate, actor: str) -> dict:
    """Add a missile system; its id comes from its name. Returns the change."""
    at = store.utc_now()
    missile = new_missile(data, missile_id=_free_id(connection, "missiles", slugify(data.name, "missile")), at=at,
                          actor=actor)
    _check_missile(connection, missile)
    _insert(connection, "missiles", _missile_row(missile))
    store.touch_contents(connection, "missiles")
    return record_change(connection, at=at, actor=actor, action="create", entity="missile", entity_id=missile["id"],
                         site_id=None, before=None, after=missile)


def update_missile(connection: Connection, missile_id: str, data: MissileUpdate, actor: str) -> dict | None:
    """Change the given fields of a missile; a new class re-derives the missile classes of the sites that hold it
    (each such site's change recorded too). The missile's change, or None if nothing differs."""
    before = missile_record(connection, missile_id)
    if before is None:
        raise NotFound(f"no missile with id {missile_id!r}", parameter="missile_id")
    changes = _missile_fields(data, data.model_fields_set)
    missile = {**before, **{k: ([] if v is None and k in MISSILE_LIST_COLUMNS else v) for k, v in changes.items()}}
    _check_missile(connection, missile)
    if _diff(before, missile) == {}:
        return None
    at = store.utc_now()
    missile.update(updated_at=at, updated_by=actor)
    row = _missile_row(missile)
    row.pop("id")
    connection.execute(f"UPDATE missiles SET {_assignments(row)} WHERE id = ?",
                       [*row.values(), missile_id])
    store.touch_contents(connection, "missiles")
    if missile["class"] != before["class"]:
        _rederive_classes(connection, missile_id, at=at, actor=actor)
    return record_change(connection, at=at, actor=actor, action="update", entity="missile", entity_id=missile_id,
                         site_id=None, before=before, after=missile)


def sites_holding(connection: Connection, missile_id: str) -> list[str]:
    """The ids of the sites (retired ones too) whose missile_types list the missile."""
    rows = connection.execute("SELECT id, missile_types FROM sites WHERE instr(missile_types, ?) > 0",
                              (json.dumps(missile_id),)).fetchall()
    return [site_id for site_id, cell in rows if missile_id in decode_list(cell)]


def _rederive_classes(connection: Connection, missile_id: str, *, at: str, actor: str) -> None:
    """Re-derive missile_classes of every site holding the missile, recording each site whose classes changed."""
    for site_id in sites_holding(connection, missile_id):
        before = site_record(connection, site_id)
        classes = vocab.site_classes(before["missile_types"], before["missile_classes_reported"],
                                     _missile_classes(connection, before["missile_types"]))
        if classes == before["missile_classes"]:
            continue
        connection.execute("UPDATE sites SET missile_classes = ? WHERE id = ?", (encode_list(classes), site_id))
        record_change(connection, at=at, actor=actor, action="update", entity="site", entity_id=site_id,
                      site_id=site_id, before=before, after={**before, "missile_classes": classes})
    store.touch_contents(connection, "sites")


# --- places ----------------------------------------------------------------------------------------

PLACE_FIELDS = tuple(PlaceCreate.model_fields)
PLACE_STORED = tuple(f for f in PLACE_FIELDS if f not in ("lon", "lat")) + store.EDIT_COLUMNS["places"]


def place_record(connection: Connection, place_id: str) -> dict | None:
    """A stored place as a plain record (lon/lat, lists as lists), or None."""
    columns = ", ".join(f'"{c}"' for c in PLACE_STORED)
    row = connection.execute(f"SELECT geom, {columns} FROM places WHERE id = ?", (place_id,)).fetchone()
    if row is None:
        return None
    point = store.blob_geometry(row[0])
    record = {"id": place_id, "lon": point.x, "lat": point.y, **dict(zip(PLACE_STORED, row[1:]))}
    return {k: decode_list(v) if k in PLACE_LIST_COLUMNS else v for k, v in record.items()}


def place_names(connection: Connection, *, other_than: str | None = None) -> dict[str, str]:
    """Every casefolded id, name and alias `near=` answers to, with the place it names (one place left out)."""
    names: dict[str, str] = {}
    for place_id, name, aliases in connection.execute("SELECT id, name, aliases FROM places"):
        if place_id != other_than:
            for text in (place_id, name, *decode_list(aliases)):
                names.setdefault(str(text).casefold(), place_id)
    return names


def check_place_names(place: dict, taken: dict[str, str]) -> None:
    """The place's name and aliases name no other place (case-insensitive) and repeat none of each other."""
    seen: set[str] = set()
    for field, text in [("name", place["name"]), *(("aliases", alias) for alias in place["aliases"])]:
        key = text.casefold()
        if key in taken:
            raise InvalidParameter(f"{field}: {text!r} already names the place {taken[key]!r}", parameter=field)
        if key in seen:
            raise InvalidParameter(f"{field}: {text!r} is given twice (names are compared case-insensitively)",
                                   parameter=field)
        seen.add(key)


def _check_place(connection: Connection, place: dict) -> None:
    """A whole place record cites a known source and names no other place."""
    _check_refs(connection, "source_id", "sources", [place["source_id"]])
    check_place_names(place, place_names(connection, other_than=place["id"]))


def place_row(place: dict) -> dict:
    """A place record as its stored row, column -> cell: the point blob, lists as JSON arrays, and its id last."""
    row = {"geom": store.point_blob(place["lon"], place["lat"])}
    row.update({c: (encode_list(place[c]) if c in PLACE_LIST_COLUMNS else place[c]) for c in PLACE_STORED})
    return {**row, "id": place["id"]}


def new_place(data: PlaceCreate, *, place_id: str, at: str, actor: str) -> dict:
    """A new place's record: the client's fields (aliases never None) and the server's."""
    place = {field: getattr(data, field) for field in PLACE_FIELDS}
    place.update(aliases=place["aliases"] or [], id=place_id, created_at=at, created_by=actor, updated_at=at,
                 updated_by=actor)
    return place


def create_place(connection: Connection, data: PlaceCreate, actor: str) -> dict:
    """Add a reference place; its id comes from its name. Returns the change."""
    at = store.utc_now()
    place = new_place(data, place_id=_free_id(connection, "places", slugify(data.name, "place")), at=at, actor=actor)
    _check_place(connection, place)
    _insert(connection, "places", place_row(place))
    store.touch_contents(connection, "places", shapely.Point(place["lon"], place["lat"]))
    return record_change(connection, at=at, actor=actor, action="create", entity="place", entity_id=place["id"],
                         site_id=None, before=None, after=place)


def update_place(connection: Connection, place_id: str, data: PlaceUpdate, actor: str) -> dict | None:
    """Change the given fields of a place (a new lon/lat moves it). The change, or None if nothing differs."""
    before = place_record(connection, place_id)
    if before is None:
        raise NotFound(f"no place with id {place_id!r}", parameter="place_id")
    changes = {field: getattr(data, field) for field in data.model_fields_set}
    place = {**before, **{k: ([] if v is None and k in PLACE_LIST_COLUMNS else v) for k, v in changes.items()}}
    _check_place(connection, place)
    if _diff(before, place) == {}:
        return None
    at = store.utc_now()
    place.update(updated_at=at, updated_by=actor)
    row = place_row(place)
    row.pop("id")
    connection.execute(f"UPDATE places SET {_assignments(row)} WHERE id = ?",
                       [*row.values(), place_id])
    store.touch_contents(connection, "places", shapely.Point(place["lon"], place["lat"]))
    return record_change(connection, at=at, actor=actor, action="update", entity="place", entity_id=place_id,
                         site_id=None, before=before, after=place)


# --- named lines attached to countries ------------------------------------------------------------


def attach_borders(connection: Connection, border_id: str, countries: list[str], actor: str, *,
                   detach: bool = False) -> list[dict]:
    """Attach a named line (a row of the borders layer) to countries, so their sites are measured against it (or
    detach it); each pair that changes is recorded. Returns the changes (none when every pair already was so)."""
    row = connection.execute("SELECT kind FROM borders WHERE id = ?", (border_id,)).fetchone()
    if row is None:
        raise NotFound(f"no border with id {border_id!r} (coastlines and land borders are measured without"
                       " attaching)", parameter="border_id")
    at, changes = store.utc_now(), []
    for country in dict.fromkeys(countries):
        problem = alpha3(blank_ok=False)(country, {})
        if problem:
            raise InvalidParameter(problem, parameter="country")
        attached = connection.execute(f'SELECT 1 FROM "{ATTACHED_TABLE}" WHERE border_id = ? AND country = ?',
                                      (border_id, country)).fetchone() is not None
        if attached != detach:
            continue
        pair = {"border_id": border_id, "country": country}
        if detach:
            connection.execute(f'DELETE FROM "{ATTACHED_TABLE}" WHERE border_id = ? AND country = ?',
                               (border_id, country))
        else:
            _insert(connection, ATTACHED_TABLE, pair)
        changes.append(record_change(connection, at=at, actor=actor, action="detach" if detach else "attach",
                                     entity="attached_border", entity_id=f"{border_id}:{country}", site_id=None,
                                     before=pair if detach else None, after=None if detach else pair))
    if changes:
        store.touch_contents(connection, ATTACHED_TABLE)
        border_store.rewrite_countries(connection, {change["entity_id"].rsplit(":", 1)[1] for change in changes})
    return changes
