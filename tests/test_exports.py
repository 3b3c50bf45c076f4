"""Downloads (CSV, KML, GeoPackage) by `f=` and by Accept, read back by GDAL with identical features."""

import html
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pyogrio
import pytest
from lxml import etree

from app.queries import has_point
from app.exports import features_csv, features_kml, gpkg_snapshot
from app.settings import REPO_ROOT
from app.vocab import LIST_COLUMN_NAMES, decode_list
from tests.clients.npm import npm_packages
from tests.conftest import engine_env

SITES_URL = "/sites?limit=1000"
pytestmark = pytest.mark.contract


@pytest.fixture(scope="module")
def site_features(client):
    return client.get(SITES_URL).json()["features"]


def _text(value) -> str:
    """A property as the CSV cell text it should read back as."""
    if value is None:
        return ""
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def _assert_geometry(row_geometry, geometry, site_id):
    if geometry is None:
        assert row_geometry is None or not hasattr(row_geometry, "x") or row_geometry.is_empty, site_id
        return
    assert row_geometry.x == pytest.approx(geometry["coordinates"][0], abs=1e-9), site_id
    assert row_geometry.y == pytest.approx(geometry["coordinates"][1], abs=1e-9), site_id


@pytest.mark.parametrize("url, accept, media_type", [
    ("/sites?f=csv", None, "text/csv"),
    ("/sites", "text/csv", "text/csv"),
    ("/sites?f=kml", None, "application/vnd.google-earth.kml+xml"),
    ("/sites", "application/vnd.google-earth.kml+xml", "application/vnd.google-earth.kml+xml"),
    ("/sites?f=gpkg", None, "application/geopackage+sqlite3"),
    ("/sites", "application/geopackage+sqlite3", "application/geopackage+sqlite3"),
    ("/sites?f=geojson", None, "application/geo+json"),
    ("/collections/sites/items?f=csv", None, "text/csv"),
    ("/collections/sites/items", "text/csv", "text/csv"),
    ("/collections/sites/items?f=kml", None, "application/vnd.google-earth.kml+xml"),
    ("/collections/sites/items?f=gpkg", None, "application/geopackage+sqlite3"),
])
def test_format_by_f_and_by_accept(client, url, accept, media_type):
    response = client.get(url, headers={"Accept": accept} if accept else {})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media_type


@pytest.mark.parametrize("url", ["/sites?f=shp", "/collections/sites/items?f=shp", "/sites?f="])
def test_unknown_format_is_400(client, url):
    response = client.get(url)
    assert response.status_code == 400
    assert response.json()["error"]["parameter"] == "f"


def test_csv_reads_back_in_gdal(client, site_features, tmp_path):
    """Every property in its column: a list as a JSON array (GDAL's CSV convention), each border distance in its own
    column `border_km_<border id>`."""
    path = tmp_path / "sites.csv"
    path.write_bytes(client.get(SITES_URL + "&f=csv").content)
    frame = pyogrio.read_dataframe(path, open_options=["GEOM_POSSIBLE_NAMES=wkt", "KEEP_GEOM_COLUMNS=NO"])
    assert list(frame["id"]) == [f["id"] for f in site_features]
    borders = list(dict.fromkeys(b for item in site_features for b in item["properties"]["border_distances_km"]))
    assert {"mdl", "kor-prk", "chn-prk"} <= set(borders)
    assert [c for c in frame.columns if c.startswith("border_km_")] == [f"border_km_{b}" for b in borders]
    assert "border_distances_km" not in frame.columns
    for (_, row), item in zip(frame.iterrows(), site_features):
        _assert_geometry(row.geometry, item["geometry"], item["id"])
        if item["geometry"] is not None:
            assert float(row["lon"]) == item["geometry"]["coordinates"][0]
        for name, value in item["properties"].items():
            if isinstance(value, dict):
                cells = {border_id: row[f"border_km_{border_id}"] or None for border_id in borders}
                assert {b: float(km) for b, km in cells.items() if km} == value, (item["id"], name)
            elif isinstance(value, list):
                assert (json.loads(row[name]) if row[name] else []) == value, (item["id"], name)
            else:
                expected = _text(value)
                if expected.startswith(("=", "+", "-", "@")):
                    expected = "'" + expected
                assert (row[name] or "") == expected, (item["id"], name)


def test_csv_cli_and_api_are_one_encoder(client, client_live):
    """`missile-sites sites --format csv` writes the bytes `/sites?f=csv` answers for the same query."""
    query = {"near": "Seoul", "within_km": 150, "limit": 1000}
    api = client.get("/sites", params={**query, "f": "csv"}).text
    env = {**os.environ, **engine_env(client_live), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-m", "app.cli", "sites", "--near", "Seoul", "--within-km", "150",
                             "--limit", "1000", "--format", "csv"], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == api and api.startswith("lon,lat,wkt,id,name,aliases,")
    assert "border_km_mdl" in api.splitlines()[0] and api.count("\n") == 4  # Chiha-ri, Kal-gol, Sakkanmol


def test_csv_neutralises_formulas():
    features = [{"type": "Feature", "id": "x", "geometry": {"type": "Point", "coordinates": [-1.5, 2.0]},
                 "properties": {"name": "=HYPERLINK(\"http://evil\")", "notes": "@SUM(A1)", "aliases": ["+1", "ok"]}}]
    text = features_csv(features)
    assert "'=HYPERLINK" in text and "'@SUM(A1)" in text and '"[""+1"", ""ok""]"' in text
    assert "\n-1.5,2.0,POINT (-1.5 2)," in text


def test_kml_reads_back_in_gdal(client, site_features, tmp_path, capsys):
    path = tmp_path / "sites.kml"
    path.write_bytes(client.get(SITES_URL + "&f=kml").content)
    frame = pyogrio.read_dataframe(path)
    assert len(frame) == len(site_features)
    by_name = {row["Name"]: row for _, row in frame.iterrows()}
    for item in site_features:
        row = by_name[item["properties"]["name"]]
        assert row["id"] == item["id"]
        assert row["current_status"] == item["properties"]["current_status"]
        _assert_geometry(row.geometry, item["geometry"], item["id"])
    with capsys.disabled():
        driver = pyogrio.read_info(path)["driver"]
        print(f"\nGDAL {pyogrio.__gdal_version_string__} (pyogrio {pyogrio.__version__}, {driver}):"
              f" {len(frame)} placemarks of {len(site_features)} sites, {frame.geometry.notna().sum()} with a point")


TOGEOJSON = ("@tmcw/togeojson@7.1.3", "@xmldom/xmldom@0.9.8")
TOGEOJSON_READER = Path(__file__).parent / "clients" / "togeojson.js"
KML_START = '<?xml version="1.0" encoding="UTF-8"?>\n<kml xmlns="http://www.opengis.net/kml/2.2">'


def test_kml_is_in_the_default_namespace(client):
    text = client.get(SITES_URL + "&f=kml").text
    assert text.startswith(KML_START) and "<kml:" not in text and "xmlns:kml" not in text
    assert text.count("<Placemark ") == 23


def test_kml_is_in_the_default_namespace_without_lxml():
    """fastkml writes `kml:` on every element when lxml is missing (an install without the dev extras)."""
    code = ("import sys; sys.modules['lxml'] = None\n"
            "import warnings; warnings.simplefilter('ignore')\n"
            "from app.catalogue import Catalogue; from app.exports import features_kml\n"
            "from app.settings import GEODATA_DIR\n"
            "feature = {'type': 'Feature', 'id': 'a', 'geometry': {'type': 'Point', 'coordinates': [127.0, 38.0]},"
            " 'properties': {'name': 'A', 'missile_classes': ['SRBM'], 'source_ids': []}}\n"
            "print(features_kml(Catalogue(GEODATA_DIR / 'catalogue.gpkg'), [feature], 't'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(KML_START) and "kml:" not in result.stdout
    assert '<Placemark id="a">' in result.stdout


def test_togeojson_reads_every_placemark(client, site_features, tmp_path, capsys):
    """@tmcw/togeojson under Node (from npm, installed into build/npm when missing) finds every site."""
    modules = npm_packages(*TOGEOJSON)
    path = tmp_path / "sites.kml"
    path.write_bytes(client.get(SITES_URL + "&f=kml").content)
    result = subprocess.run(["node", str(TOGEOJSON_READER), str(path)], env={**os.environ, "NODE_PATH": modules},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    read = {item["id"]: item for item in json.loads(result.stdout)["features"]}
    assert list(read) == [item["id"] for item in site_features] and len(read) == 23
    for item in site_features:
        got = read[item["id"]]
        assert got["properties"]["name"] == item["properties"]["name"]
        assert got["properties"]["current_status"] == item["properties"]["current_status"]
        assert got["properties"].get("missile_classes", "") == _text(item["properties"]["missile_classes"])
        if item["geometry"] is None:
            assert got["geometry"] is None, item["id"]
        else:
            assert got["geometry"]["coordinates"][:2] == pytest.approx(item["geometry"]["coordinates"], abs=1e-9)
    located = sum(item["geometry"] is not None for item in read.values())
    sakkanmol = read["sakkanmol"]
    with capsys.disabled():
        node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
        print(f"\n{TOGEOJSON[0]} (Node {node}):"
              f" {len(read)} placemarks of {len(site_features)} sites, {located} with a point; sakkanmol "
              f"{sakkanmol['properties']['missile_classes']!r} at {sakkanmol['geometry']['coordinates']}")


def test_kml_one_style_per_class_and_escaped_descriptions(catalogue):
    features = [
        {"type": "Feature", "id": "a", "geometry": {"type": "Point", "coordinates": [127.0, 38.0]},
         "properties": {"name": "<script>alert(1)</script>", "missile_classes": ["SRBM", "ICBM"],
                        "source_ids": list(catalogue.sources.index[:2])}},
        {"type": "Feature", "id": "b", "geometry": None,
         "properties": {"name": "b & c", "missile_classes": ["MRBM"], "source_ids": []}},
    ]
    document = etree.fromstring(features_kml(catalogue, features, "test").encode())
    ns = {"k": "http://www.opengis.net/kml/2.2"}
    assert sorted(s.get("id") for s in document.iterfind(".//k:Style", ns)) == ["class-ICBM", "class-MRBM"]
    description = document.find(".//k:Placemark/k:description", ns).text
    assert "<script>" not in description and "&lt;script&gt;" in description
    assert html.escape(str(catalogue.sources.iloc[0]["title"])) in description
    assert document.find(".//k:Placemark/k:styleUrl", ns).text == "#class-ICBM"


def test_gpkg_snapshot_is_valid_and_identical(client, catalogue, tmp_path):
    from osgeo_utils.samples import validate_gpkg

    path = tmp_path / "snapshot.gpkg"
    path.write_bytes(client.get("/sites?f=gpkg").content)
    validate_gpkg.check(str(path), extra_checks=True, warning_as_error=True)
    frame = pyogrio.read_dataframe(path, layer="sites")
    assert set(frame.columns) <= set(catalogue.sites.columns)
    expected = catalogue.sites.reset_index(drop=True)[list(frame.columns)]
    for (_, got), (_, want) in zip(frame.iterrows(), expected.iterrows()):
        for name in expected.columns:
            if name == "geometry":
                if not has_point(want.geometry):
                    assert not has_point(got.geometry)
                else:
                    assert got.geometry.equals(want.geometry)
            else:
                a, b = got[name], want[name]
                if name in LIST_COLUMN_NAMES:  # GDAL reads the JSON-array columns as lists
                    a, b = decode_list(a), decode_list(b)
                assert (a == b) or (a != a and b != b) or (a is None and b != b) or (b is None and a != a), name


def test_gpkg_snapshot_uses_the_backup_api(gpkg_path, tmp_path):
    path = gpkg_snapshot(gpkg_path)
    try:
        with sqlite3.connect(path) as copy, sqlite3.connect(f"file:{gpkg_path}?mode=ro", uri=True) as source:
            query = "SELECT count(*) FROM sites"
            assert copy.execute(query).fetchone() == source.execute(query).fetchone()
            assert copy.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    finally:
        os.unlink(path)
