"""Import sites, missile systems or places from CSV, GeoJSON or KML: every row checked as the matching POST checks a
body, then all written in one transaction (sites in bulk)."""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import time
from collections.abc import Callable, Iterable
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydantic
import shapely

from app import border_store, edits, store
from app.storage import Connection, bulk_copier
from app.errors import CatalogueError
from app.models import LIST_FIELDS, MissileCreate, PlaceCreate, SiteCreate
from app.vocab import decode_list

SITE_FIELDS = tuple(SiteCreate.model_fields)


@dataclass(frozen=True)
class RecordKind:
    """What an import adds: its name, the body model each row must pass, its fields as a file names them, which of
    them are lists, and whether a row has a point (lon/lat from a geometry)."""

    name: str
    model: type
    fields: tuple[str, ...]
    lists: frozenset[str]
    located: bool


SITES = RecordKind("sites", SiteCreate, SITE_FIELDS, LIST_FIELDS, True)
MISSILES = RecordKind("missiles", MissileCreate, tuple(f.alias or n for n, f in MissileCreate.model_fields.items()),
                      frozenset({"aliases", "source_ids"}), False)
PLACES = RecordKind("places", PlaceCreate, tuple(PlaceCreate.model_fields), frozenset({"aliases"}), True)
RECORD_KINDS = {kind.name: kind for kind in (SITES, MISSILES, PLACES)}
KINDS = {".csv": "csv", ".geojson": "geojson", ".json": "geojson", ".kml": "kml"}
KML_NAMESPACES = ("http://www.opengis.net/kml/2.2", "http://earth.google.com/kml/2.2",
                  "http://earth.google.com/kml/2.1", "http://earth.google.com/kml/2.0", "")


class MalformedFile(Exception):
    """The file cannot be read as a whole (unknown type, not UTF-8, bad JSON, not KML, no header): nothing is written."""


@dataclass
class Row:
    """One row or feature as read: its number (CSV line, or 1-based feature number) and its fields or why it is bad."""

    number: int
    fields: dict | None = None
    problem: str | None = None


@dataclass
class Outcome:
    """What became of one row: the id it got (or would get; `site_id` whatever the kind) or the reason it was
    refused."""

    number: int
    name: str | None
    site_id: str | None = None
    lon: float | None = None
    lat: float | None = None
    problem: str | None = None


@dataclass
class ImportResult:
    """The whole import: each row's outcome and whether anything was committed."""

    path: Path
    unit: str  # "line" (CSV) or "feature" (GeoJSON, KML): what a row number counts
    kind: str = "sites"  # what the rows add: sites, missiles or places
    outcomes: list[Outcome] = field(default_factory=list)
    written: bool = False
    dry_run: bool = False
    check_seconds: float = 0.0  # reading the catalogue's ids and checking every row (no lock held)
    write_seconds: float = 0.0  # making ids free and inserting (the write transaction, when written)

    @property
    def bad(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem is not None]

    @property
    def good(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.problem is None]


# --- reading files --------------------------------------------------------------------------------


def file_kind(path: Path) -> str:
    """csv, geojson or kml, by the file's extension."""
    kind = KINDS.get(Path(path).suffix.lower())
    if kind is None:
        raise MalformedFile(f"{path}: unknown file type {Path(path).suffix or '(no extension)'!r};"
                            f" expected {', '.join(KINDS)}")
    return kind


def read_rows(path: Path, kind: RecordKind = SITES) -> tuple[str, list[Row]]:
    """The rows of a CSV, GeoJSON or KML file of one kind of record, with what a row number counts ("line" or
    "feature")."""
    path = Path(path)
    file_type = file_kind(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MalformedFile(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MalformedFile(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    reader = {"csv": read_csv, "geojson": read_geojson, "kml": read_kml}[file_type]
    try:
        rows = reader(text, kind)
    except MalformedFile as exc:
        raise MalformedFile(f"{path}: {exc}") from None
    return ("line" if file_type == "csv" else "feature"), rows


def _cell_value(name: str, value: str, kind: RecordKind = SITES):
    """A text cell as a field value: a list field as a JSON array, or `;`-separated (items stripped, blanks dropped)."""
    return decode_list(value) if name in kind.lists else value


def _text_fields(pairs: Iterable[tuple[str, str | None]], kind: RecordKind = SITES) -> dict:
    """Named text cells as the kind's body: an empty cell of a known field is left out (its default applies);
    a cell of an unknown field is kept whatever its value, so validation refuses it."""
    fields = {}
    for name, value in pairs:
        value = "" if value is None else value
        if name in kind.fields:
            if value.strip():
                fields[name] = _cell_value(name, value, kind)
        else:
            fields[name] = value
    return fields


def read_csv(text: str, kind: RecordKind = SITES) -> list[Row]:
    """CSV with a header of the kind's field names (POST's body fields); list fields `; `-separated. Row numbers are
    file lines."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    singular = kind.name[:-1]
    try:
        header = next(reader, None)
        if header is None or not any(cell.strip() for cell in header):
            raise MalformedFile(f"no header line (expected {singular} field names, e.g."
                                f" {','.join(kind.fields[:3])},...)")
        header = [cell.strip() for cell in header]
        if not set(header) & set(kind.fields):
            raise MalformedFile(f"line 1 is not a header: none of {header[:5]!r} is a {singular} field"
                                f" (expected names such as {', '.join(kind.fields[:4])})")
        repeated = sorted({name for name in header if header.count(name) > 1})
        if repeated:
            raise MalformedFile(f"header repeats column {repeated[0]!r}")
        if "" in header:
            raise MalformedFile(f"header column {header.index('') + 1} has no name")
        rows, last_line = [], reader.line_num
        for cells in reader:
            start, last_line = last_line + 1, reader.line_num
            if not cells or not any(cell.strip() for cell in cells):
                continue
            if len(cells) > len(header):
                rows.append(Row(start, problem=f"{len(cells)} cells but the header has {len(header)} columns"))
                continue
            rows.append(Row(start, _text_fields(zip(header, cells + [""] * (len(header) - len(cells))), kind)))
    except csv.Error as exc:
        raise MalformedFile(f"line {reader.line_num}: {exc}") from None
    return rows


def read_geojson(text: str, kind: RecordKind = SITES) -> list[Row]:
    """A GeoJSON FeatureCollection (or one Feature): Point geometry is lon/lat, null geometry an unknown
    coordinate, properties are the fields. Row numbers count features from 1."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedFile(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if isinstance(document, dict) and document.get("type") == "Feature":
        features = [document]
    elif isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise MalformedFile("FeatureCollection has no 'features' list")
    else:
        kind = document.get("type") if isinstance(document, dict) else type(document).__name__
        raise MalformedFile(f"not a GeoJSON FeatureCollection or Feature (type {kind!r})")
    return [_geojson_row(number, feature, kind) for number, feature in enumerate(features, 1)]


def _geojson_row(number: int, feature, kind: RecordKind = SITES) -> Row:
    """One GeoJSON feature as a row."""
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return Row(number, problem="not a GeoJSON Feature")
    properties = feature.get("properties")
    if properties is None:
        properties = {}
    if not isinstance(properties, dict):
        return Row(number, problem="properties: not an object")
    fields = _json_fields(properties, kind)
    if "geometry" not in feature:
        return Row(number, fields, "geometry: missing (give null for an unknown coordinate)")
    geometry = feature["geometry"]
    if geometry is None:
        return Row(number, fields)
    if not kind.located:
        return Row(number, fields, f"geometry: a {kind.name[:-1]} has none (give null)")
    if not isinstance(geometry, dict) or geometry.get("type") != "Point":
        shape = geometry.get("type") if isinstance(geometry, dict) else type(geometry).__name__
        return Row(number, fields, f"geometry: {shape} is not a Point (a {kind.name[:-1]} is one point"
                                   + (", or null when unknown)" if kind is SITES else ")"))
    coordinates = geometry.get("coordinates")
    if not isinstance(coordinates, list) or len(coordinates) not in (2, 3):
        return Row(number, fields, "geometry: a Point's coordinates must be [lon, lat]")
    for name in ("lon", "lat"):
        if name in fields:
            return Row(number, fields, f"{name}: the coordinate comes from the geometry, not the properties")
    fields["lon"], fields["lat"] = coordinates[0], coordinates[1]
    return Row(number, fields)


def _json_fields(properties: dict, kind: RecordKind = SITES) -> dict:
    """GeoJSON properties as the kind's body: a null or blank value of a known field is left out (as an empty CSV
    cell), a list field may also be one `; `-separated string (as GIS tools write lists); unknown fields are kept."""
    fields = {}
    for name, value in properties.items():
        if name in kind.fields:
            if value is None or (isinstance(value, str) and not value.strip()):
                continue
            if name in kind.lists and isinstance(value, str):
                value = _cell_value(name, value, kind)
        fields[name] = value
    return fields


def read_kml(text: str, kind: RecordKind = SITES) -> list[Row]:
    """KML: each Placemark (in document order, in any Folder) is a row; its name is the site's name, its Point
    (lon,lat) the coordinate, its ExtendedData Data (or SimpleData) elements the other fields."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(text.encode("utf-8"), parser=parser)
    except etree.XMLSyntaxError as exc:
        raise MalformedFile(f"not KML: XML error: {exc}") from None
    namespace, _, local = root.tag.rpartition("}") if isinstance(root.tag, str) else ("", "", "")
    namespace = namespace.lstrip("{")
    if local != "kml" or namespace not in KML_NAMESPACES:
        raise MalformedFile(f"not KML: the root element is <{local or root.tag}>"
                            + (f" in namespace {namespace!r}" if namespace else "") + ", not <kml>")
    ns = f"{{{namespace}}}" if namespace else ""
    return [_kml_row(number, element, ns, kind) for number, element in enumerate(root.iter(f"{ns}Placemark"), 1)]


def _kml_row(number: int, element, ns: str, kind: RecordKind = SITES) -> Row:
    """One KML Placemark as a row, parsed by fastkml."""
    from fastkml import Placemark
    from fastkml.data import Data, SchemaData

    try:
        placemark = Placemark.class_from_element(ns=ns, name_spaces=None, element=element, strict=True)
    except Exception as exc:  # fastkml's KMLParseError and whatever its parsers raise on bad content
        return Row(number, problem=f"Placemark: {_first_line(exc)}")
    pairs: list[tuple[str, str | None]] = []
    for item in (placemark.extended_data.elements if placemark.extended_data else []):
        if isinstance(item, Data):
            pairs.append((item.name or "", item.value))
        elif isinstance(item, SchemaData):
            pairs.extend((simple.name or "", simple.value) for simple in item.data)
    named = {name for name, _ in pairs}
    for data in element.iter(f"{ns}Data", f"{ns}SimpleData"):  # fastkml leaves out a Data with no value
        name = data.get("name") or ""
        if name not in named:
            pairs.append((name, ""))
            named.add(name)
    fields = _text_fields(pairs, kind)
    if placemark.name is not None and placemark.name.strip():
        if "name" in fields and fields["name"].strip() != placemark.name.strip():
            return Row(number, fields, f"name: the Placemark's <name> {placemark.name!r} and its Data name"
                                       f" {fields['name']!r} differ")
        fields["name"] = placemark.name
    geometry = placemark.geometry
    if geometry is None:
        return Row(number, fields)
    if not kind.located:
        return Row(number, fields, f"geometry: a {kind.name[:-1]} has none")
    if getattr(geometry, "geom_type", type(geometry).__name__) != "Point":
        shape = getattr(geometry, "geom_type", type(geometry).__name__)
        return Row(number, fields, f"geometry: {shape} is not a Point (a {kind.name[:-1]} is one point"
                                   + (", or none when unknown)" if kind is SITES else ")"))
    for name in ("lon", "lat"):
        if name in fields:
            return Row(number, fields, f"{name}: the coordinate comes from the Point, not ExtendedData")
    fields["lon"], fields["lat"] = geometry.x, geometry.y  # KML coordinates are lon,lat[,alt]
    return Row(number, fields)


def _first_line(exc: Exception) -> str:
    """An exception's message, first line only."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- validating and writing -----------------------------------------------------------------------


def validation_message(exc: pydantic.ValidationError) -> str:
    """Every problem pydantic found, each as `field: message` (as the API names the parameter)."""
    parts = []
    for error in exc.errors():
        location = ".".join(str(part) for part in error.get("loc", ()))
        message = error.get("msg", "invalid value")
        parts.append(f"{location}: {message}" if location else message)
    return "; ".join(parts)


def _number(value) -> float | None:
    """A coordinate as a float for the report (None when absent)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def import_rows(connection, rows: list[Row], *, actor: str, unit: str, path: Path,
                skip_bad: bool = False, dry_run: bool = False,
                advance: Callable[[], None] | None = None) -> ImportResult:
    """Check every row, then create a site for each good one in ONE bulk `BEGIN IMMEDIATE` transaction.

    Each row is validated by SiteCreate and checked as edits.create_site checks a site (its sources and missiles
    against the stored catalogue), all before anything is written. The write happens only when no row is bad,
    or some are and `skip_bad` is set and at least one is good; a dry run writes nothing (it still gives each
    good row the id it would get). The write holds the lock for the inserts alone: ids are made free through
    the unique index, rows and change records are inserted with executemany.
    """
    reading, writing = _transactions(connection)
    result = ImportResult(path=Path(path), unit=unit, dry_run=dry_run)
    started = time.perf_counter()
    with reading() as reader:
        known = _known_ids(reader)
    sites = []
    for row in rows:
        outcome, site = _check_row(row, known, actor)
        result.outcomes.append(outcome)
        if site is not None:
            sites.append((outcome, site))
        if advance is not None:
            advance()
    if not sites or (result.bad and not skip_bad):
        result.check_seconds = time.perf_counter() - started
        return result
    with reading() as reader:
        batch = _prepare(reader, [site for _, site in sites], actor)
    result.check_seconds = time.perf_counter() - started
    if not dry_run:
        started = time.perf_counter()
        writing(lambda writer: _write(writer, batch, known))
        result.write_seconds = time.perf_counter() - started
        result.written = True
    for (outcome, _), site_id in zip(sites, batch.ids):
        outcome.site_id = site_id
    return result


def _known_ids(connection: Connection) -> dict[str, dict]:
    """The stored source ids and each missile's class, read once for the whole check."""
    return {"sources": dict.fromkeys(row[0] for row in connection.execute("SELECT id FROM sources")),
            "missiles": dict(connection.execute("SELECT id, class FROM missiles"))}


def _check_row(row: Row, known: dict[str, dict], actor: str) -> tuple[Outcome, dict | None]:
    """One row's outcome and, when good, its new site record (its id still the base to make free, no times)."""
    fields = row.fields or {}
    name = fields.get("name") if isinstance(fields.get("name"), str) else None
    outcome = Outcome(row.number, name, lon=_number(fields.get("lon")), lat=_number(fields.get("lat")))
    if row.problem is not None:
        outcome.problem = row.problem
        return outcome, None
    try:
        data = SiteCreate.model_validate(fields)
    except pydantic.ValidationError as exc:
        outcome.problem = validation_message(exc)
        return outcome, None
    site = edits.new_site(data, site_id=edits.site_id_base(data), at="", actor=actor)
    try:
        edits.check_refs_known(site, known["sources"], known["missiles"])
        edits.check_site_fields(site)
    except CatalogueError as exc:
        outcome.problem = exc.message
        return outcome, None
    outcome.name, outcome.lon, outcome.lat = data.name, data.lon, data.lat
    return outcome, edits.with_derived(site, known["missiles"])


@dataclass
class _Batch:
    """The checked sites ready to insert: their id bases, the ids they were given, and the rows to write."""

    sites: list[dict]
    bases: list[str]
    ids: list[str]
    at: str
    actor: str
    site_rows: list[tuple] = field(default_factory=list)
    change_rows: list[tuple] = field(default_factory=list)
    columns: tuple[str, ...] = ()

    def build(self, positions) -> None:
        """(Re)build the site and change rows at the given positions from the current ids."""
        for at in positions:
            record = {**self.sites[at], "id": self.ids[at], "created_at": self.at, "updated_at": self.at}
            row = edits.site_row(record)
            self.columns = tuple(row)
            self.site_rows[at] = tuple(row.values())
            self.change_rows[at] = edits.change_row(at=self.at, actor=self.actor, action="create", entity="site",
                                                    entity_id=record["id"], site_id=record["id"], before=None,
                                                    after=record)


def _prepare(connection: Connection, sites: list[dict], actor: str) -> _Batch:
    """Free ids for the sites as the catalogue stands now, and every row to insert (the costly part, done without
    the write lock)."""
    bases = [site["id"] for site in sites]
    batch = _Batch(sites, bases, edits.free_ids(connection, "sites", bases), store.utc_now(), actor,
                   [()] * len(sites), [()] * len(sites))
    batch.build(range(len(sites)))
    border_store.warm(connection, {site.get("country") for site in sites if site.get("lon") is not None})
    return batch


def _write(connection: Connection, batch: _Batch, known: dict[str, dict]) -> None:
    """Under the write lock: check the cited ids and the prepared ids are still good (rebuilding the rows of any id
    taken meanwhile), then insert the sites and their change records in bulk."""
    _check_still_known(connection, batch.sites, known)
    if _taken(connection, batch.ids):
        fresh = edits.free_ids(connection, "sites", batch.bases)
        changed = [at for at, (old, new) in enumerate(zip(batch.ids, fresh)) if old != new]
        batch.ids = fresh
        batch.build(changed)
    if bulk_copier(connection) is not None:  # a database store's connection: COPY does it in bulk
        connection.copy_rows("sites", batch.columns, batch.site_rows)
        connection.copy_rows("changes", CHANGE_COLUMNS, batch.change_rows)
        border_store.write_sites(connection, [(site_id, s.get("country"), s["lon"], s["lat"])
                                              for site_id, s in zip(batch.ids, batch.sites)])
        return
    _insert_sites(connection, batch)
    connection.executemany(edits.CHANGE_INSERT, batch.change_rows)
    store.touch_contents(connection, "sites")
    located = [(s["lon"], s["lat"]) for s in batch.sites if s["lon"] is not None]
    if located:
        lons, lats = [lon for lon, _ in located], [lat for _, lat in located]
        for corner in ((min(lons), min(lats)), (max(lons), max(lats))):
            store.touch_contents(connection, "sites", shapely.Point(*corner))


CHANGE_COLUMNS = ("at", "actor", "action", "entity", "entity_id", "site_id", "diff", "before", "after")
RTREE_INSERT_TRIGGER = "rtree_sites_geom_insert"  # the GeoPackage R-tree extension's trigger on sites.geom
COUNT_INSERT_TRIGGER = "trigger_insert_feature_count_sites"  # GDAL's feature-count trigger


def _insert_sites(connection: Connection, batch: _Batch) -> None:
    """Insert the site rows with executemany, and do in bulk what the per-row insert triggers would do.

    The R-tree trigger calls five Python functions a row and the feature-count trigger updates a row each time;
    together they cost two thirds of the insert. Within this transaction the two triggers are dropped, the rows
    inserted with explicit fids, their points added to the R-tree and the count raised once, then the triggers
    are created again from their stored SQL: atomic with the rest (a failure rolls all of it back).
    """
    triggers = dict(connection.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'sites' AND name IN (?, ?)",
        (RTREE_INSERT_TRIGGER, COUNT_INSERT_TRIGGER)))
    for name in triggers:
        connection.execute(f'DROP TRIGGER "{name}"')
    last = connection.execute("SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sites'), 0),"
                              " coalesce((SELECT max(fid) FROM sites), 0))").fetchone()[0]
    fids = range(last + 1, last + 1 + len(batch.site_rows))
    columns = ", ".join(f'"{c}"' for c in ("fid", *batch.columns))
    connection.executemany(f"INSERT INTO sites ({columns}) VALUES ({', '.join('?' * (len(batch.columns) + 1))})",
                           [(fid, *row) for fid, row in zip(fids, batch.site_rows)])
    if RTREE_INSERT_TRIGGER in triggers:
        connection.executemany('INSERT INTO "rtree_sites_geom" VALUES (?, ?, ?, ?, ?)',
                               [(fid, s["lon"], s["lon"], s["lat"], s["lat"]) for fid, s in zip(fids, batch.sites)
                                if s["lon"] is not None])
    if COUNT_INSERT_TRIGGER in triggers:
        connection.execute("UPDATE gpkg_ogr_contents SET feature_count = feature_count + ?"
                           " WHERE lower(table_name) = lower('sites')", (len(batch.site_rows),))
    for sql in triggers.values():
        connection.execute(sql)
    border_store.write_sites(connection, [(site_id, s.get("country"), s["lon"], s["lat"])
                                          for site_id, s in zip(batch.ids, batch.sites)])


def _taken(connection: Connection, ids: list[str], chunk: int = 500) -> bool:
    """Whether any of the ids is already in sites (indexed lookups, a chunk at a time)."""
    for start in range(0, len(ids), chunk):
        part = ids[start:start + chunk]
        marks = ", ".join("?" * len(part))
        if connection.execute(f"SELECT 1 FROM sites WHERE id IN ({marks}) LIMIT 1", part).fetchone():
            return True
    return False


def _check_still_known(connection: Connection, sites: list[dict], known: dict[str, dict]) -> None:
    """Every source and missile the rows cite still exists, the missiles with the class they had when checked."""
    cited = {"sources": {i for s in sites for i in s["source_ids"]},
             "missiles": {i for s in sites for i in s["missile_types"]}}
    now = _known_ids(connection)
    for table, ids in cited.items():
        changed = sorted(i for i in ids if i not in now[table] or now[table][i] != known[table][i])
        if changed:
            raise CatalogueError(f"{table[:-1]} {changed[0]!r} changed while the import was checked; run it again")


@contextmanager
def _read_transaction(connection: Connection):
    """One read transaction (a consistent view, no lock held against writers)."""
    connection.execute("BEGIN")
    try:
        yield connection
    finally:
        connection.execute("ROLLBACK")


def _transactions(target) -> tuple[Callable, Callable]:
    """(reading, writing) for an SQLite connection or a store: `with reading() as connection` is one read
    transaction; `writing(work)` runs `work(connection)` in one write transaction and returns its result."""
    if not hasattr(target, "reading"):  # a connection, not a store
        def write(work):
            with store.transaction(target):
                return work(target)
        return (lambda: _read_transaction(target)), write
    return target.reading, target.write


def import_records(connection, rows: list[Row], *, kind: RecordKind, actor: str, unit: str,
                   path: Path, skip_bad: bool = False, dry_run: bool = False,
                   advance: Callable[[], None] | None = None) -> ImportResult:
    """Check every row of missiles or places, then add each good one in ONE `BEGIN IMMEDIATE` transaction.

    Each row is validated by the POST body model and checked as the POST checks it (its sources against the stored
    catalogue, a missile's range fields, a place's name and aliases against every other place's and the file's
    earlier rows), all before anything is written; then each is written as POST writes it, with its change record.
    The same rules as import_rows decide whether anything is written.
    """
    reading, writing = _transactions(connection)
    result = ImportResult(path=Path(path), unit=unit, kind=kind.name, dry_run=dry_run)
    started = time.perf_counter()
    with reading() as reader:
        sources = dict.fromkeys(row[0] for row in reader.execute("SELECT id FROM sources"))
        names = edits.place_names(reader) if kind is PLACES else {}
    good = []
    for row in rows:
        outcome, data = _check_record(row, kind, sources, names)
        result.outcomes.append(outcome)
        if data is not None:
            good.append((outcome, data))
        if advance is not None:
            advance()
    result.check_seconds = time.perf_counter() - started
    if not good or (result.bad and not skip_bad):
        return result
    create = edits.create_missile if kind is MISSILES else edits.create_place
    started = time.perf_counter()
    if dry_run:
        with reading() as reader:
            ids = edits.free_ids(reader, kind.name, [_id_base(kind, data) for _, data in good])
    else:
        ids = writing(lambda writer: [create(writer, data, actor)["entity_id"] for _, data in good])
    for (outcome, _), record_id in zip(good, ids):
        outcome.site_id = record_id
    if not dry_run:
        result.write_seconds, result.written = time.perf_counter() - started, True
    return result


def _id_base(kind: RecordKind, data) -> str:
    """The id a new missile or place is named by, before a -2, -3 ... makes it free."""
    return edits.slugify(data.name, kind.name[:-1])


def _check_record(row: Row, kind: RecordKind, sources: dict, names: dict[str, str]):
    """One row's outcome and, when good, its validated body; a good place's names join `names` (later rows may
    not reuse them)."""
    fields = row.fields or {}
    name = fields.get("name") if isinstance(fields.get("name"), str) else None
    outcome = Outcome(row.number, name, lon=_number(fields.get("lon")), lat=_number(fields.get("lat")))
    if row.problem is not None:
        outcome.problem = row.problem
        return outcome, None
    try:
        data = kind.model.model_validate(fields)
        if kind is MISSILES:
            missile = edits.new_missile(data, missile_id="", at="", actor="")
            edits.check_refs_known({"source_ids": missile["source_ids"], "missile_types": []}, sources, {})
            edits.check_missile_fields(missile)
        else:
            place = edits.new_place(data, place_id="", at="", actor="")
            if place["source_id"] not in sources:
                raise CatalogueError(f"source_id: unknown source id {place['source_id']!r}", parameter="source_id")
            edits.check_place_names(place, names)
            base = _id_base(kind, data)
            names.update({text.casefold(): base for text in (place["name"], *place["aliases"])})
    except pydantic.ValidationError as exc:
        outcome.problem = validation_message(exc)
        return outcome, None
    except CatalogueError as exc:
        outcome.problem = exc.message
        return outcome, None
    outcome.name = data.name
    return outcome, data


def import_file(path: Path, gpkg, *, actor: str, skip_bad: bool = False, dry_run: bool = False,
                on_rows: Callable[[int], Callable[[], None] | None] | None = None,
                kind: RecordKind = SITES) -> ImportResult:
    """Read a file and import its rows of one kind into the GeoPackage at `gpkg`, or into a store (see import_rows
    and import_records).

    `on_rows(count)` is called once the file is read and may return a callback called after each row is checked.
    """
    with _gc_paused():
        unit, rows = read_rows(path, kind)
    if hasattr(gpkg, "write"):  # a store (the PostGIS engine): its own read and write transactions
        advance = on_rows(len(rows)) if on_rows is not None else None
        with _gc_paused():
            run = import_records if kind is not SITES else import_rows
            extra = {"kind": kind} if kind is not SITES else {}
            return run(gpkg, rows, actor=actor, unit=unit, path=path, skip_bad=skip_bad, dry_run=dry_run,
                       advance=advance, **extra)
    gpkg = Path(gpkg)
    if not gpkg.is_file():
        raise FileNotFoundError(f"GeoPackage not found: {gpkg}")
    advance = on_rows(len(rows)) if on_rows is not None else None
    with closing(store.connect(gpkg)) as connection, _gc_paused():
        store.ensure_edit_schema(connection)
        if kind is not SITES:
            return import_records(connection, rows, kind=kind, actor=actor, unit=unit, path=path, skip_bad=skip_bad,
                                  dry_run=dry_run, advance=advance)
        return import_rows(connection, rows, actor=actor, unit=unit, path=path, skip_bad=skip_bad,
                           dry_run=dry_run, advance=advance)


@contextmanager
def _gc_paused():
    """Python's cyclic collector paused: a large import allocates millions of small dicts and lists, none cyclic,
    and the collector's full passes over them cost about a third of the check."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --- backups --------------------------------------------------------------------------------------


@dataclass
class BackupResult:
    """A backup's file, its size, SQLite's integrity verdict and its site rows."""

    path: Path
    size: int
    integrity: list[str]
    sites: int
    retired: int

    @property
    def ok(self) -> bool:
        return self.integrity == ["ok"]


def backup(source, destination: Path, *, force: bool = False) -> BackupResult:
    """A consistent copy of the GeoPackage through SQLite's backup API (or a store's GeoPackage export of one
    snapshot), then checked with PRAGMA integrity_check.

    Refuses an existing destination unless `force`, the source itself, and a destination with a -wal or -shm
    file beside it (SQLite would replay that stale log over the copy when it is opened).
    """
    destination = Path(destination)
    if hasattr(source, "export_gpkg"):  # a store: its export is one snapshot, written beside then moved in
        _check_destination(None, destination, force)
        source.export_gpkg(destination)
        return check_backup(destination)
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(f"GeoPackage not found: {source}")
    _check_destination(source, destination, force)
    store.copy_consistent(source, destination)
    return check_backup(destination)


def _check_destination(source: Path | None, destination: Path, force: bool) -> None:
    """FileExistsError or FileNotFoundError unless a backup may be written at `destination`."""
    if destination.is_dir():
        raise FileExistsError(f"{destination} is a directory; give the backup's file name")
    if not destination.parent.is_dir():
        raise FileNotFoundError(f"no such directory: {destination.parent} (backup creates none: make it first)")
    if destination.exists():
        if source is not None and (destination.resolve() == source.resolve() or destination.samefile(source)):
            raise FileExistsError(f"{destination} is the GeoPackage being backed up")
        if not force:
            raise FileExistsError(f"{destination} exists (give --force to replace it)")
    for suffix in ("-wal", "-shm", "-journal"):
        leftover = destination.with_name(destination.name + suffix)
        if leftover.exists():
            raise FileExistsError(f"{leftover} exists beside the destination: SQLite would apply it to the copy;"
                                  " choose another name or remove it if no database uses it")


def check_backup(path: Path) -> BackupResult:
    """Integrity check and site count of a GeoPackage, opened read-only."""
    with closing(store.connect_readonly(path)) as connection:
        integrity = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        sites = connection.execute("SELECT count(*) FROM sites").fetchone()[0]
        columns = {row[1] for row in connection.execute('PRAGMA table_info("sites")')}
        retired = (connection.execute("SELECT count(*) FROM sites WHERE retired_at IS NOT NULL").fetchone()[0]
                   if "retired_at" in columns else 0)
    return BackupResult(Path(path), Path(path).stat().st_size, integrity, sites, retired)
