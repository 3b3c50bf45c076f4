"""The data build: validated text sources in, a valid, deterministic GeoPackage out, with the key facts intact."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
from osgeo_utils.samples import validate_gpkg
from pyproj import Geod

from app import store
from app.build_data import NE_FILE, build, country_ids, decode_arcs, ring

REPO = Path(__file__).resolve().parent.parent
SOURCES = REPO / "geodata" / "sources"
COMMITTED = REPO / "geodata" / "catalogue.gpkg"
LAYERS = ("sites", "missiles", "observations", "sources", "reported_distances", "places", "borders", "countries")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """One fresh build of geodata/sources into a temporary folder."""
    return build(SOURCES, tmp_path_factory.mktemp("build") / "catalogue.gpkg")


@pytest.fixture(scope="module")
def layers(built) -> dict[str, pd.DataFrame]:
    """Every layer of the fresh build, read back with pyogrio."""
    return {name: pyogrio.read_dataframe(built, layer=name) for name in LAYERS}


@pytest.fixture
def sources_copy(tmp_path) -> Path:
    """A private copy of geodata/sources that a test may corrupt."""
    return Path(shutil.copytree(SOURCES, tmp_path / "sources"))


def row(frame: pd.DataFrame, row_id: str) -> pd.Series:
    """The one row of a layer with the given id."""
    matches = frame[frame["id"] == row_id]
    assert len(matches) == 1, f"expected one row with id {row_id!r}, found {len(matches)}"
    return matches.iloc[0]


def blank(value) -> bool:
    """Whether a value read back is NULL."""
    return value is None or (not isinstance(value, str) and pd.isna(value))


# --- the file itself ------------------------------------------------------------------------------


def test_validate_gpkg_with_extra_checks_and_warnings_as_errors(built):
    argv = ["validate_gpkg", "-k", "--extra", "--warning-as-error", str(built)]
    assert validate_gpkg.main(argv, output_in_string=True) == 0, validate_gpkg.get_output_string()


def test_two_builds_are_byte_identical(built, tmp_path):
    again = build(SOURCES, tmp_path / "again.gpkg")
    assert again.read_bytes() == built.read_bytes()


def test_committed_catalogue_is_a_fresh_build(built):
    assert COMMITTED.is_file(), "geodata/catalogue.gpkg is missing: run `missile-sites build-data`"
    assert COMMITTED.read_bytes() == built.read_bytes(), "geodata/catalogue.gpkg is stale: run `missile-sites build-data`"


def test_build_returns_the_output_path_and_leaves_no_temporary_file(built):
    assert built.name == "catalogue.gpkg"
    assert sorted(p.name for p in built.parent.iterdir()) == ["catalogue.gpkg"]


# --- layers and schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("layer", "geometry_type", "count"),
    [
        ("sites", "Point", 23),
        ("missiles", None, 18),
        ("places", "Point", 15),
        ("reported_distances", None, 26),
        ("observations", None, None),
        ("sources", None, None),
        ("borders", "MultiLineString", None),
        ("countries", "MultiPolygon", None),
        ("cities", "Point", 33_961),
        ("launches", "Point", 339),
    ],
)
def test_layer_geometry_type_and_count(built, layer, geometry_type, count):
    info = pyogrio.read_info(built, layer=layer)
    assert info["geometry_type"] == geometry_type
    assert info["crs"] == ("EPSG:4326" if geometry_type else None)
    assert info["features"] == count if count is not None else info["features"] > 0


@pytest.mark.parametrize(
    ("layer", "columns"),
    [
        ("sites", ["id", "name", "aliases", "country", "province", "coord_confidence", "coord_precision_m",
                   "coord_precision_basis", "coord_precision_reason", "coord_source_id", "facility_type", "declared_status", "missile_types", "missile_classes_reported",
                   "unit_size", "belt", "belt_notes", "notes", "source_ids", "missile_classes", "current_status",
                   "status_observed_on"]),
        ("missiles", ["id", "name", "aliases", "class", "range_min_km", "range_max_km", "range_max_qualifier",
                      "range_kind", "confidence", "source_ids", "notes"]),
        ("observations", ["id", "site_id", "observed_on", "kind", "status_seen", "source_id", "notes"]),
        ("sources", ["id", "title", "publisher", "published_on", "url", "notes"]),
        ("reported_distances", ["site_id", "target_kind", "target_id", "reported_km", "source_id", "notes",
                                "explanation"]),
        ("places", ["id", "name", "kind", "country", "source_id", "notes", "aliases"]),
        ("borders", ["id", "name", "kind", "countries", "source_id", "source_version"]),
        ("countries", ["id", "iso_n3", "name", "source_id"]),
        ("cities", ["id", "name", "country", "population", "source_id"]),
    ],
)
def test_layer_columns(built, layer, columns):
    assert list(pyogrio.read_info(built, layer=layer)["fields"]) == columns


@pytest.mark.parametrize(
    ("layer", "column", "expected_dtype"),
    [
        ("sites", "coord_precision_m", "float64"),
        ("missiles", "range_min_km", "float64"),
        ("missiles", "range_max_km", "float64"),
        ("reported_distances", "reported_km", "float64"),
        ("cities", "population", "int64"),
    ],
)
def test_numeric_columns_are_real(built, layer, column, expected_dtype):
    info = pyogrio.read_info(built, layer=layer)
    assert dict(zip(info["fields"], info["dtypes"]))[column] == expected_dtype


# --- key values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("site_id", "lon_lat"),
    [
        ("sakkanmol", (126.107945, 38.584698)),
        ("kal-gol", (126.7226, 38.682288)),
        ("okpyong-dong", (127.305, 39.283889)),
        ("yeongjeo-dong", None),
        ("sil-li-ballistic-missile-support-facility", None),
    ],
)
def test_site_geometry(layers, site_id, lon_lat):
    geometry = row(layers["sites"], site_id).geometry
    if lon_lat is None:
        assert geometry is None
    else:
        assert geometry.geom_type == "Point" and (geometry.x, geometry.y) == lon_lat


@pytest.mark.parametrize(
    ("layer", "row_id", "column", "expected"),
    [
        ("sites", "sakkanmol", "coord_confidence", "exact"),
        ("sites", "sakkanmol", "declared_status", "undeclared"),
        ("sites", "sakkanmol", "missile_types", ["hwasong-5", "hwasong-6"]),
        ("sites", "sakkanmol", "belt", "first"),
        ("sites", "sakkanmol", "current_status", "active"),
        ("sites", "sakkanmol", "status_observed_on", "2018-11-12"),
        ("sites", "kumchon-ni", "coord_precision_m", 2700.0),
        ("sites", "kumchon-ni", "coord_precision_basis", "assessed"),
        ("sites", "sakkanmol", "coord_precision_m", 1600.0),
        ("sites", "sakkanmol", "coord_precision_basis", "source_extent"),
        ("sites", "hwangju-launch-area", "coord_precision_m", 15000.0),
        ("sites", "pyongyang-sunan-international-airport", "coord_precision_basis", "sources_differ"),
        ("sites", "yeongjeo-dong", "coord_precision_basis", None),
        ("sites", "yeongjeo-dong", "coord_precision_reason", None),
        ("sites", "kal-gol", "coord_confidence", "approximate"),
        ("sites", "hoejung-ni", "missile_types", None),
        ("sites", "hoejung-ni", "missile_classes", ["ICBM", "IRBM"]),
        ("sites", "yusang-ni", "missile_classes", ["ICBM"]),
        ("sites", "sinpo-shipyard", "missile_classes", ["SLBM"]),
        ("sites", "sangnam-ni", "unit_size", "battalion-or-regiment"),
        ("sites", "yeongjeo-dong", "coord_confidence", "unknown"),
        ("sites", "yeongjeo-dong", "coord_precision_m", None),
        ("sites", "yeongjeo-dong", "coord_source_id", None),
        ("sites", "okpyong-dong", "current_status", "unknown"),
        ("sites", "sil-li-ballistic-missile-support-facility", "current_status", "under_construction"),
        ("sites", "sil-li-ballistic-missile-support-facility", "status_observed_on", "2020-05-05"),
        ("sites", "sil-li-ballistic-missile-support-facility", "aliases", ["Sil-li", "신리"]),
        ("sites", "pyongyang-sunan-international-airport", "coord_confidence", "approximate"),
        ("sites", "kittaeryong-missile-base", "missile_types", ["hwasong-5", "hwasong-6", "hwasong-7"]),
        ("missiles", "hwasong-10", "range_max_qualifier", "at_least"),
        ("missiles", "hwasong-10", "range_kind", "estimate"),
        ("missiles", "hwasong-17", "range_max_qualifier", "at_least"),
        ("missiles", "hwasong-7", "range_max_qualifier", None),
        ("sources", "csis-bp-changes-part-1-2024", "published_on", "2024-06-10"),
        ("sources", "csis-bp-sil-li-2020", "url", "https://beyondparallel.csis.org/sil-li-ballistic-missile-support-facility/"),
        ("sources", "donga-97338781", "published_on", "2019-09-09"),
        ("sources", "nti-okpyong-dong", "published_on", "2003-03-01"),
        ("observations", "kal-gol-2022-11-03-event", "source_id", "cns-nk-missile-test-db-tests"),
        ("sites", "sohae-satellite-launching-station", "declared_status", "acknowledged"),
        ("sites", "sinpo-shipyard", "declared_status", "unknown"),
        ("missiles", "hwasong-16b", "range_max_km", None),
        ("missiles", "hwasong-16b", "range_kind", None),
        ("missiles", "hwasong-11da-4-5", "range_min_km", 90.0),
        ("missiles", "hwasong-11da-4-5", "range_kind", "claimed"),
        ("missiles", "hwasong-11a", "range_kind", "observed_flight"),
        ("missiles", "hwasong-19", "confidence", "low"),
        ("missiles", "hwasong-7", "range_max_km", 1300.0),
        ("missiles", "kn-25", "class", "SRBM"),
        ("places", "panmunjom", "country", None),
        ("places", "andersen-afb", "country", "GUM"),
        ("sources", "csis-bp-sakkanmol-2018", "published_on", "2018-11-12"),
        ("observations", "sakkanmol-2018-03-29-imagery", "status_seen", "active"),
        ("countries", "PRK", "iso_n3", "408"),
        ("countries", "NE_KOSOVO", "iso_n3", None),
    ],
)
def test_key_value(layers, layer, row_id, column, expected):
    value = row(layers[layer], row_id)[column]
    assert blank(value) if expected is None else value == expected


@pytest.mark.parametrize(
    ("border_id", "kind", "countries", "box"),
    [
        ("mdl", "mdl", ["KOR", "PRK"], (126.5, 37.7, 128.5, 38.7)),
        ("dmz-north", "dmz_edge", ["KOR", "PRK"], (126.5, 37.7, 128.5, 38.7)),
        ("dmz-south", "dmz_edge", ["KOR", "PRK"], (126.5, 37.7, 128.5, 38.7)),
        ("kor-prk", "land_border", ["KOR", "PRK"], (126.5, 37.7, 128.5, 38.7)),
        ("chn-prk", "land_border", ["CHN", "PRK"], (124.0, 39.5, 131.0, 43.1)),
        ("prk-rus", "land_border", ["PRK", "RUS"], (130.4, 42.2, 130.8, 42.6)),
        ("can-usa", "land_border", ["CAN", "USA"], (-141.1, 41.6, -66.8, 69.7)),
    ],
)
def test_border(layers, border_id, kind, countries, box):
    border = row(layers["borders"], border_id)
    assert (border["kind"], border["countries"]) == (kind, countries)
    assert border.geometry.geom_type == "MultiLineString" and not border.geometry.is_empty
    min_x, min_y, max_x, max_y = border.geometry.bounds
    assert box[0] <= min_x and box[1] <= min_y and max_x <= box[2] and max_y <= box[3]


def test_border_ids_are_sorted_pairs_of_lowercase_codes(layers):
    land = layers["borders"][layers["borders"]["kind"] == "land_border"]
    for border_id, countries in zip(land["id"], land["countries"]):
        first, second = border_id.split("-")
        assert first < second and countries == sorted([first.upper(), second.upper()])


def test_every_cited_id_resolves(layers):
    sources = set(layers["sources"]["id"])
    cited = {i for cell in layers["sites"]["source_ids"] for i in cell}
    cited |= {i for cell in layers["missiles"]["source_ids"] for i in cell}
    cited |= set(layers["observations"]["source_id"]) | set(layers["borders"]["source_id"])
    assert cited <= sources


def test_reported_distance_to_the_dmz_maps_to_the_mdl(layers):
    reported = layers["reported_distances"]
    sakkanmol = reported[(reported["site_id"] == "sakkanmol") & (reported["target_kind"] == "border")].iloc[0]
    assert (sakkanmol["target_id"], sakkanmol["reported_km"]) == ("mdl", 85.0)
    assert "from the DMZ" in sakkanmol["notes"]


# --- countries cut at ±180°, valid, none empty; the GeoPackage version ------------------------------

GEOD = Geod(ellps="WGS84")
QUANTUM_DEG = 0.0036  # the TopoJSON's longitude quantization step (its transform's scale)


def _topojson_area_km2(country_id: str) -> float:
    """A unit's area straight from the source rings, on WGS84 (a -180/180 step is a zero-length edge there)."""
    topology = json.loads((SOURCES / NE_FILE).read_text(encoding="utf-8"))
    arcs = decode_arcs(topology)
    geometries = topology["objects"]["countries"]["geometries"]
    geometry = geometries[country_ids(geometries).index(country_id)]
    total = 0.0
    for rings in geometry["arcs"] if geometry["type"] == "MultiPolygon" else [geometry["arcs"]]:
        for index, indexes in enumerate(rings):
            lons, lats = zip(*ring(arcs, indexes))
            area = abs(GEOD.polygon_area_perimeter(lons, lats)[0])
            area = min(area, 4 * math.pi * 6_371_007.2**2 - area)  # the ring's smaller side (a ring round a pole)
            total += area if index == 0 else -area
    return total / 1e6


@pytest.mark.parametrize("country_id", ["RUS", "FJI", "ATA", "USA", "NZL", "KIR"])
def test_countries_across_the_antimeridian_are_cut_there(layers, country_id):
    """No part spans more than 180° of longitude (no band across the map) unless it closes over a pole; the area is
    the source's, measured on WGS84."""
    geometry = row(layers["countries"], country_id).geometry
    assert geometry.is_valid and geometry.geom_type == "MultiPolygon"
    for part in geometry.geoms:
        west, south, east, north = part.bounds
        assert east - west <= 180 or (south == -90 and part.contains(shapely.Point(0, -89.9))), part.bounds
        assert -180 <= west and east <= 180
    area_km2 = abs(GEOD.geometry_area_perimeter(geometry)[0]) / 1e6
    assert area_km2 == pytest.approx(_topojson_area_km2(country_id), rel=0.002)
    if country_id in ("RUS", "FJI", "ATA"):  # each has land on both sides of ±180°
        assert geometry.bounds[0] == -180 and geometry.bounds[2] == 180


def test_every_country_geometry_is_valid_and_none_is_empty(layers):
    countries = layers["countries"]
    assert countries.geometry.is_valid.all(), list(countries[~countries.geometry.is_valid]["id"])
    assert not countries.geometry.is_empty.any() and countries.geometry.notna().all()
    assert "VAT" not in set(countries["id"]) and len(countries) == 254  # Vatican: quantized to no area


def test_land_borders_follow_both_countries_outlines(layers):
    """Every vertex of a land border is on both its countries' outlines, to the source's quantization (repairs move
    a few spikes by a step or two). The one exception is `ita-vat`: quantization collapsed Vatican's ring (and the
    hole it leaves in Italy) to a line, which stays as the border."""
    countries = layers["countries"].set_index("id").geometry
    land = layers["borders"][layers["borders"]["kind"] == "land_border"]
    assert len(land) == 335 and "ita-vat" in set(land["id"])
    vertices = {cid: set(map(tuple, shapely.get_coordinates(g))) for cid, g in countries.items()}
    for border_id, countries_of, geometry in zip(land["id"], land["countries"], land.geometry):
        points = shapely.get_coordinates(geometry)
        assert np.ptp(points[:, 0]) <= 180, border_id
        for country_id in countries_of if border_id != "ita-vat" else []:
            off = [p for p in map(tuple, points) if p not in vertices[country_id]]
            assert len(off) <= 2, (border_id, country_id, len(off))
            if off:
                far = shapely.distance(shapely.points(off), countries[country_id].boundary).max()
                assert far <= 2 * QUANTUM_DEG, (border_id, country_id, far)


def test_the_geopackage_is_version_1_3(built):
    with closing(sqlite3.connect(built)) as connection:
        assert connection.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # 'GPKG'
        assert connection.execute("PRAGMA user_version").fetchone()[0] == 10300


def test_debian_gdal_36_opens_it_without_a_version_warning(built, capsys):
    """GDAL 3.6 (what QGIS 3.22 uses) warns on a 1.4 file that it "may only be partially supported"."""
    version = subprocess.run(["ogrinfo", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    info = subprocess.run(["ogrinfo", "-ro", "-so", str(built)], capture_output=True, text=True, check=True)
    assert "countries (Multi Polygon)" in info.stdout
    assert "partially supported" not in info.stdout + info.stderr and "Warning" not in info.stderr, info.stderr
    with capsys.disabled():
        print(f"\n{version}: ogrinfo opens the GeoPackage (user_version 10300) with no warning")


# --- validation of corrupted sources --------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "old", "new", "message"),
    [
        ("cns_facilities.csv", "unknown,Unknown,,", "unknown,Unknown,sohae-satellite-launching-station,",
     r"cns_facilities\.csv: the placeholder 'unknown' must be listed and matched to no site"),
    ("cns_missiles.csv", "nodong,Nodong,MRBM,hwasong-7,", "nodong,Nodong,MRBM,hwasong-77,",
     r"cns_missiles\.csv: line \d+: missile_id: unknown missile id 'hwasong-77'"),
    ("sites.csv", "undeclared,hwasong-5; hwasong-6,", "undeclared,hwasong-5; hwasong-99,",
         r"sites\.csv: line \d+: missile_types: unknown missile id 'hwasong-99'"),
        ("sites.csv", "126.107945,38.584698", "126.107945,95", r"sites\.csv: line \d+: lat 95 out of range"),
        ("places.csv", "126.9784,37.566,", "186.9784,37.566,", r"places\.csv: line \d+: lon .* out of range"),
        ("observations.csv", "active,csis-bp-sino-ri-2019,Report", "active,no-such-source,Report",
         r"observations\.csv: line \d+: source_id: unknown source id 'no-such-source'"),
        ("missiles.csv", "SRBM,90,500,", "SRBM,900,500,", r"missiles\.csv: line \d+: range_min_km 900 exceeds"),
        ("missiles.csv", "ICBM,,15000,,estimate,low", "ICBM,,15000,,estimate,very-low",
         r"missiles\.csv: line \d+: confidence: 'very-low' is not one of"),
        ("observations.csv", "2018-03-29,imagery", "2018-02-30,imagery", r"observations\.csv: line \d+: .*not an ISO date"),
        ("reported_distances.csv", "border,chn-prk,25", "border,chn-xyz,25",
         r"reported_distances\.csv: line \d+: target_id: unknown border id 'chn-xyz'"),
        ("sources.csv", "id,title,", "id,titel,", r"sources\.csv: line 1: header is"),
        ("missiles.csv", "IRBM,,3000,at_least,", "IRBM,,,at_least,",
         r"missiles\.csv: line \d+: (range_kind must be given exactly|range_max_qualifier given without)"),
        ("missiles.csv", "IRBM,,3000,at_least,", "IRBM,,3000,at-least,",
         r"missiles\.csv: line \d+: range_max_qualifier: 'at-least' is not one of at_least"),
        ("sites.csv", ",approximate,15000,assessed,\"A CNS launch-location point named", ",unknown,15000,assessed,\"A CNS launch-location point named",
         r"sites\.csv: line \d+: coord_confidence must be 'unknown'"),
        ("sites.csv", ",exact,1600,source_extent,", ",exact,1600,,", r"sites\.csv: line \d+: coord_precision_m, coord_precision_basis "
         "and coord_precision_reason are given together"),
        ("sites.csv", ",exact,1600,source_extent,", ",exact,1600,decimals,", r"sites\.csv: line \d+: coord_precision_basis: 'decimals'"),
    ],
)
def test_corrupted_source_raises_naming_file_line_and_problem(sources_copy, tmp_path, file, old, new, message):
    path = sources_copy / file
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"fixture string {old!r} must occur once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        build(sources_copy, tmp_path / "out" / "catalogue.gpkg")


def test_invalid_sources_leave_the_previous_file_alone(sources_copy, tmp_path):
    out = build(sources_copy, tmp_path / "out" / "catalogue.gpkg")
    before = out.read_bytes()
    sites = sources_copy / "sites.csv"
    sites.write_text(sites.read_text(encoding="utf-8").replace("38.584698", "95"), encoding="utf-8")
    with pytest.raises(ValueError):
        build(sources_copy, out)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["catalogue.gpkg"]


def test_a_write_failing_midway_leaves_no_partial_file(monkeypatch, tmp_path):
    out = tmp_path / "out" / "catalogue.gpkg"
    out.parent.mkdir()
    out.write_bytes(b"previous")
    real_write, calls = pyogrio.write_dataframe, []

    def failing_write(*args, **kwargs):
        calls.append(kwargs["layer"])
        if len(calls) == 3:
            raise OSError("disk full")
        return real_write(*args, **kwargs)

    monkeypatch.setattr("app.build_data.pyogrio.write_dataframe", failing_write)
    with pytest.raises(OSError, match="disk full"):
        build(SOURCES, out)
    assert out.read_bytes() == b"previous"
    assert [p.name for p in out.parent.iterdir()] == ["catalogue.gpkg"]


OPENED_PATHS = """
import json, os, sys
from pathlib import Path
opened = set()
def record(event, args):
    if event in ("open", "os.listdir", "os.scandir", "sqlite3.connect") and args and isinstance(args[0], (str, os.PathLike)):
        opened.add(os.path.abspath(os.fsdecode(args[0])))
sys.addaudithook(record)
from app.build_data import build
build(Path(sys.argv[1]), Path(sys.argv[2]))
print(json.dumps(sorted(opened)))
"""


@pytest.mark.slow
def test_build_reads_its_sources_and_nothing_beside_the_repository(tmp_path):
    """The build opens the sources it is given, never a folder beside the checkout (such as ../shared): every file
    or folder Python opens during a build, recorded by an audit hook, is inside the repository, the output's folder,
    Python's installation or the system, never in the repository's parent elsewhere."""
    sources = Path(shutil.copytree(SOURCES, tmp_path / "sources"))
    out = tmp_path / "out" / "catalogue.gpkg"
    out.parent.mkdir()
    run = subprocess.run([sys.executable, "-c", OPENED_PATHS, str(sources), str(out)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert run.returncode == 0, run.stderr[-2000:]
    opened = [Path(p) for p in json.loads(run.stdout.splitlines()[-1])]
    assert sources / "sites.csv" in opened and sources / "naturalearth-countries-10m.topojson" in opened
    python = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    beside = [p for p in opened if p.is_relative_to(REPO.parent) and not p.is_relative_to(REPO)
              and not p.is_relative_to(tmp_path) and not any(p.resolve().is_relative_to(d) for d in python)]
    assert beside == []
    assert not any(p.is_relative_to(SOURCES) for p in opened)  # the copy it was given, not the checkout's own


def test_layer_coordinates_are_finite_lon_lat(layers):
    for name in ("sites", "places"):
        for geometry in layers[name].geometry.dropna():
            assert -180 <= geometry.x <= 180 and -90 <= geometry.y <= 90 and math.isfinite(geometry.x)


# --- schema 2: JSON lists, catalogue_meta, unique ids ------------------------------------------------


@pytest.mark.parametrize(("layer", "columns"), [
    ("sites", ["aliases", "missile_types", "missile_classes_reported", "source_ids", "missile_classes"]),
    ("missiles", ["aliases", "source_ids"]),
    ("places", ["aliases"]),
    ("borders", ["countries"]),
])
def test_list_columns_are_json_arrays_gdal_reads_as_json(built, layers, layer, columns):
    info = pyogrio.read_info(built, layer=layer)
    subtypes = dict(zip(info["fields"], info["ogr_subtypes"]))
    assert {c: subtypes[c] for c in columns} == {c: "OFSTJSON" for c in columns}
    assert [f for f, s in subtypes.items() if s == "OFSTJSON"] == columns
    with closing(sqlite3.connect(f"file:{built}?mode=ro", uri=True)) as connection:
        for column in columns:
            cells = [cell for (cell,) in connection.execute(f'SELECT "{column}" FROM "{layer}" WHERE "{column}" NOTNULL')]
            items = [json.loads(cell) for cell in cells]
            assert all(isinstance(i, list) and i and all(isinstance(x, str) and x for x in i) for i in items)
            assert cells == [json.dumps(i, ensure_ascii=False, separators=(",", ":")) for i in items]  # compact
            assert list(layers[layer][column].dropna()) == items  # GDAL (pyogrio) reads them as lists


def test_catalogue_meta_holds_the_schema_version_and_the_hash_of_the_inputs(built, sources_copy, tmp_path):
    from app import migrations
    from app.build_data import inputs_sha256

    with closing(sqlite3.connect(f"file:{built}?mode=ro", uri=True)) as connection:
        meta = dict(connection.execute("SELECT key, value FROM catalogue_meta"))
        kind = connection.execute("SELECT data_type FROM gpkg_contents WHERE table_name = 'catalogue_meta'").fetchone()
        assert migrations.build_id(connection) == meta["build_id"]
    assert meta == {"schema_version": "4", "build_id": inputs_sha256(SOURCES)} and kind == ("attributes",)
    assert len(meta["build_id"]) == 64 and meta["build_id"] != inputs_sha256(SOURCES) + "x"
    notes = sources_copy / "sources.csv"
    notes.write_bytes(notes.read_bytes().replace(b"Report", b"Rapport", 1))
    assert inputs_sha256(sources_copy) != meta["build_id"]


def test_the_build_attaches_the_mdl_and_dmz_edges_to_the_two_koreas_only(built):
    with closing(sqlite3.connect(f"file:{built}?mode=ro", uri=True)) as connection:
        pairs = connection.execute("SELECT border_id, country FROM attached_borders ORDER BY fid").fetchall()
        kind = connection.execute("SELECT data_type FROM gpkg_contents WHERE table_name = 'attached_borders'").fetchone()
    assert pairs == [(b, c) for b in ("dmz-north", "dmz-south", "mdl") for c in ("KOR", "PRK")]
    assert kind == ("attributes",)


@pytest.mark.parametrize("table", ["sites", "observations", "sources", "missiles", "places", "borders", "countries"])
def test_ids_are_unique_by_the_database(built, tmp_path, table):
    copy = Path(shutil.copy(built, tmp_path / "copy.gpkg"))
    with closing(sqlite3.connect(copy)) as connection:
        store.register_gpkg_functions(connection)  # the R-tree triggers of the point layers call ST_IsEmpty
        first = connection.execute(f'SELECT id FROM "{table}" ORDER BY fid LIMIT 1').fetchone()[0]
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
            connection.execute(f'INSERT INTO "{table}" (id) VALUES (?)', (first,))
        plan = " ".join(r[-1] for r in connection.execute(f'EXPLAIN QUERY PLAN SELECT 1 FROM "{table}" WHERE id = ?', ("x",)))
    assert f"{table}_id_unique" in plan


def test_every_located_site_has_a_precision_with_its_basis_and_reason_and_none_counts_decimals(layers):
    sites = layers["sites"]
    located = sites[sites.geometry.notna()]
    assert located["coord_precision_m"].notna().all() and located["coord_precision_basis"].notna().all()
    assert all(len(reason) > 40 for reason in located["coord_precision_reason"])
    assert located["coord_precision_m"].min() >= 100  # no resolution of printed decimals (0.11 m, 1.1 m, 11 m, 31 m)
    unlocated = sites[sites.geometry.isna()]
    assert unlocated[["coord_precision_m", "coord_precision_basis", "coord_precision_reason"]].isna().all().all()
