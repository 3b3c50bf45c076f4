"""missile-sites import and backup: every row checked as POST /sites, all or nothing, bad rows by number and reason."""

import getpass
import json
import re
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pyogrio
import pytest
from typer.testing import CliRunner

from app import store
from app.cli import cli
from app.importer import read_rows
from app.settings import GEODATA_DIR, REPO_ROOT

runner = CliRunner()
DATA = Path(__file__).parent / "data" / "import"
WIDE = {"COLUMNS": "250"}
SOURCE = "38-north-iha-ri"


@pytest.fixture()
def live(tmp_path) -> Path:
    """A live GeoPackage of this test's own, seeded from the bundled one."""
    return store.ensure_live(tmp_path / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")


def run(*args, env=None):
    """The command line, wide enough that rich tables keep each row on one line."""
    return runner.invoke(cli, [str(a) for a in args], env={**WIDE, **(env or {})})


def sites(path: Path):
    """The sites layer, read with this process's SQLite (never GDAL on a file sqlite3 holds open)."""
    with closing(store.connect_readonly(path)) as connection:
        return store.read_layer(connection, "sites").set_index("id")


def changes(path: Path) -> list[dict]:
    """The change log."""
    with closing(store.connect_readonly(path)) as connection:
        cursor = connection.execute("SELECT * FROM changes ORDER BY id")
        return [dict(zip([d[0] for d in cursor.description], row)) for row in cursor]


def counts(path: Path) -> tuple[int, int]:
    """Site rows and change rows."""
    with closing(store.connect_readonly(path)) as connection:
        return (connection.execute("SELECT count(*) FROM sites").fetchone()[0],
                connection.execute("SELECT count(*) FROM changes").fetchone()[0])


def bad_row(stderr: str, number: int, reason: str) -> bool:
    """Whether the bad-row table has a row with this number whose reason starts with `reason`."""
    pattern = rf"│\s*{number}\s*│[^│\n]*│\s*{re.escape(reason)}"
    return re.search(pattern, stderr) is not None


# --- happy paths ----------------------------------------------------------------------------------

HAPPY = {
    "sites.csv": {"import-test-base": (125.75, 38.5), "unlocated-import-site": None},
    "sites.geojson": {"geojson-test-base": (127.25, 39.75), "geojson-unlocated": None},
    "sites.kml": {"kml-test-base": (126.125, 40.375), "kml-unlocated": None},
}


@pytest.mark.parametrize("name", sorted(HAPPY))
def test_import_adds_every_site_with_its_coordinate_and_a_change(live, name):
    before_sites, before_changes = counts(live)
    result = run("import", DATA / name, "--gpkg", live, "--actor", "analyst-7")
    assert result.exit_code == 0, result.output
    expected = HAPPY[name]
    table = sites(live)
    assert len(table) == before_sites + len(expected)
    for site_id, coordinate in expected.items():
        geometry = table.loc[site_id, "geometry"]
        if coordinate is None:
            assert geometry is None or geometry.is_empty
            assert table.loc[site_id, "coord_confidence"] == "unknown"
        else:
            assert (geometry.x, geometry.y) == pytest.approx(coordinate, abs=1e-9)
        assert table.loc[site_id, "created_by"] == "analyst-7"
        assert table.loc[site_id, "country"] == "PRK"
    log = changes(live)
    assert len(log) == before_changes + len(expected)
    new = log[before_changes:]
    assert {c["entity_id"] for c in new} == set(expected)
    assert {(c["actor"], c["action"], c["entity"]) for c in new} == {("analyst-7", "create", "site")}
    assert "added 2 site(s)" in result.stdout


def test_csv_lists_and_multiline_cells(live):
    result = run("import", DATA / "sites.csv", "--gpkg", live)
    assert result.exit_code == 0, result.output
    site = sites(live).loc["import-test-base"]
    assert json.loads(site["aliases"]) == ["Test-ri", "Test Base"]
    assert json.loads(site["source_ids"]) == [SOURCE, "aljazeera-2022-02-08"]
    assert json.loads(site["missile_types"]) == ["hwasong-10", "hwasong-11a"]
    assert json.loads(site["missile_classes"]) == ["IRBM", "SRBM"]
    assert site["notes"] == "A note, with a comma\nand a second line"
    assert site["coord_precision_m"] == 500


def test_default_actor_is_the_os_user(live):
    result = run("import", DATA / "sites.geojson", "--gpkg", live)
    assert result.exit_code == 0, result.output
    assert {c["actor"] for c in changes(live) if c["entity_id"].startswith("geojson-")} == {f"cli:{getpass.getuser()}"}


def test_default_target_is_the_live_geopackage(tmp_path):
    target = tmp_path / "var" / "catalogue.gpkg"
    result = run("import", DATA / "sites.kml", env={"MISSILE_SITES_GPKG": str(target)})
    assert result.exit_code == 0, result.output
    assert {"kml-test-base", "kml-unlocated"} <= set(sites(target).index)


def test_same_names_get_distinct_ids(live):
    assert run("import", DATA / "sites.csv", "--gpkg", live).exit_code == 0
    result = run("import", DATA / "sites.csv", "--gpkg", live)
    assert result.exit_code == 0, result.output
    assert {"import-test-base", "import-test-base-2"} <= set(sites(live).index)


# --- bad rows: all or nothing ---------------------------------------------------------------------


def test_one_bad_row_writes_nothing_and_names_line_and_reason(live):
    before = counts(live)
    result = run("import", DATA / "bad_row.csv", "--gpkg", live)
    assert result.exit_code == 1, result.output
    assert counts(live) == before
    assert "good-one" not in sites(live).index
    assert bad_row(result.stderr, 3, "lat: Input should be less than or equal to 90")
    assert bad_row(result.stderr, 4, "source_ids: unknown source id 'no-such-source'")
    assert not bad_row(result.stderr, 2, "")
    assert "nothing written" in result.stdout


def test_unknown_column_is_a_bad_row_not_ignored(live):
    before = counts(live)
    result = run("import", DATA / "unknown_column.csv", "--gpkg", live)
    assert result.exit_code == 1
    assert bad_row(result.stderr, 2, "colour: Extra inputs are not permitted")
    assert counts(live) == before


def test_server_owned_fields_are_refused(live, tmp_path):
    path = tmp_path / "owned.csv"
    path.write_text(f"id,name,country,facility_type,source_ids\nmy-id,Owned,PRK,launch_area,{SOURCE}\n")
    result = run("import", path, "--gpkg", live)
    assert result.exit_code == 1
    assert bad_row(result.stderr, 2, "id: Extra inputs are not permitted")


def test_geojson_bad_features_by_number(live):
    before = counts(live)
    result = run("import", DATA / "bad_feature.geojson", "--gpkg", live)
    assert result.exit_code == 1
    assert bad_row(result.stderr, 2, "geometry: LineString is not a Point")
    assert bad_row(result.stderr, 3, "country: Value error, 'XXX' is not an ISO 3166-1 alpha-3 code")
    assert counts(live) == before


def test_geojson_nan_and_coordinate_checks(live, tmp_path):
    features = [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [float("nan"), 39.0]},
         "properties": {"name": "NaN", "country": "PRK", "facility_type": "missile_base", "source_ids": [SOURCE],
                        "coord_confidence": "approximate", "coord_source_id": SOURCE}},
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [126.0, 39.0]},
         "properties": {"name": "No coord source", "country": "PRK", "facility_type": "missile_base",
                        "source_ids": [SOURCE], "coord_confidence": "approximate"}},
        {"type": "Feature", "geometry": None,
         "properties": {"name": "Unknown missile", "country": "PRK", "facility_type": "missile_base",
                        "source_ids": [SOURCE], "missile_types": ["hwasong-99"]}},
    ]
    path = tmp_path / "checks.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    result = run("import", path, "--gpkg", live)
    assert result.exit_code == 1
    assert bad_row(result.stderr, 1, "lon: Input should be a finite number")
    assert bad_row(result.stderr, 2, "coord_source_id must be given exactly when lon/lat are given")
    assert bad_row(result.stderr, 3, "missile_types: unknown missile id 'hwasong-99'")


def test_geojson_nulls_and_string_lists_as_gis_tools_write_them(tmp_path):
    path = tmp_path / "qgis.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": None,
        "properties": {"name": "From QGIS", "country": "PRK", "facility_type": "launch_area", "province": None,
                       "declared_status": None, "notes": "", "source_ids": f"{SOURCE}; aljazeera-2022-02-08",
                       "colour": None}}]}))
    unit, rows = read_rows(path)
    assert rows[0].fields == {"name": "From QGIS", "country": "PRK", "facility_type": "launch_area",
                              "source_ids": [SOURCE, "aljazeera-2022-02-08"], "colour": None}


def test_kml_bad_placemarks_by_number(live, tmp_path):
    path = tmp_path / "bad.kml"
    path.write_text(textwrap.dedent(f"""\
        <?xml version="1.0" encoding="UTF-8"?>
        <kml xmlns="http://www.opengis.net/kml/2.2"><Document>
          <Placemark><name>Fine</name><ExtendedData>
            <Data name="country"><value>PRK</value></Data><Data name="facility_type"><value>launch_area</value></Data>
            <Data name="source_ids"><value>{SOURCE}</value></Data></ExtendedData></Placemark>
          <Placemark><name>Garbled</name><Point><coordinates>abc,def</coordinates></Point></Placemark>
          <Placemark><name>Line</name><LineString><coordinates>1,2 3,4</coordinates></LineString></Placemark>
          <Placemark><name>Odd</name><ExtendedData>
            <Data name="country"><value>PRK</value></Data><Data name="facility_type"><value>launch_area</value></Data>
            <Data name="source_ids"><value>{SOURCE}</value></Data><Data name="colour"><value/></Data>
          </ExtendedData></Placemark>
        </Document></kml>
        """))
    before = counts(live)
    result = run("import", path, "--gpkg", live)
    assert result.exit_code == 1, result.output
    assert bad_row(result.stderr, 2, "Placemark: Invalid coordinates")
    assert bad_row(result.stderr, 3, "geometry: LineString is not a Point")
    assert bad_row(result.stderr, 4, "colour: Extra inputs are not permitted")
    assert not bad_row(result.stderr, 1, "")
    assert counts(live) == before


def test_kml_coordinates_are_lon_lat(tmp_path):
    path = tmp_path / "order.kml"
    path.write_text('<kml xmlns="http://www.opengis.net/kml/2.2"><Placemark><name>P</name>'
                    "<Point><coordinates> 127.5,37.25,10 </coordinates></Point></Placemark></kml>")
    unit, rows = read_rows(path)
    assert unit == "feature" and rows[0].fields == {"name": "P", "lon": 127.5, "lat": 37.25}


def test_csv_line_numbers_count_file_lines(tmp_path):
    path = tmp_path / "lines.csv"
    path.write_text('name,country,notes\n"A",PRK,"two\nlines"\n\nB,PRK,\nC,PRK,x,extra\n')
    unit, rows = read_rows(path)
    assert unit == "line"
    assert [(r.number, r.problem) for r in rows] == [
        (2, None), (5, None), (6, "4 cells but the header has 3 columns")]
    assert rows[0].fields == {"name": "A", "country": "PRK", "notes": "two\nlines"}


def test_skip_bad_writes_the_good_rows(live):
    before_sites, before_changes = counts(live)
    result = run("import", DATA / "bad_row.csv", "--gpkg", live, "--skip-bad")
    assert result.exit_code == 0, result.output
    table = sites(live)
    assert "good-one" in table.index and "bad-latitude" not in table.index and "unknown-source" not in table.index
    assert counts(live) == (before_sites + 1, before_changes + 1)
    assert bad_row(result.stderr, 3, "lat:")
    assert bad_row(result.stderr, 4, "source_ids:")


def test_skip_bad_with_no_good_row_fails(live):
    before = counts(live)
    result = run("import", DATA / "unknown_column.csv", "--gpkg", live, "--skip-bad")
    assert result.exit_code == 1
    assert counts(live) == before


def test_dry_run_writes_nothing(live):
    before = counts(live)
    data_before = live.read_bytes()
    result = run("import", DATA / "sites.csv", "--gpkg", live, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would add 2 site(s)" in result.stdout and "import-test-base" in result.stdout
    assert counts(live) == before
    assert "import-test-base" not in sites(live).index
    assert len(live.read_bytes()) == len(data_before)
    bad = run("import", DATA / "bad_row.csv", "--gpkg", live, "--dry-run")
    assert bad.exit_code == 1 and bad_row(bad.stderr, 3, "lat:")
    assert counts(live) == before


# --- malformed files ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "content", "problem"), [
    ("latin1.csv", None, "not UTF-8"),
    ("truncated.geojson", None, "not JSON"),
    ("not_kml.kml", None, "not KML"),
    ("empty.csv", "", "no header"),
    ("headerless.csv", f"Somewhere,PRK,launch_area,{SOURCE}\n", "not a header"),
    ("array.json", "[1, 2]", "not a GeoJSON FeatureCollection"),
    ("broken.kml", "<kml xmlns='http://www.opengis.net/kml/2.2'><Placemark>", "XML error"),
    ("sites.txt", "name\n", "unknown file type"),
    ("missing.csv", None, "cannot read"),
])
def test_malformed_file_exits_2_and_writes_nothing(live, tmp_path, name, content, problem):
    path = DATA / name if content is None else tmp_path / name
    if content is not None:
        path.write_text(content)
    if name == "missing.csv":
        path = tmp_path / name
    before = counts(live)
    result = run("import", path, "--gpkg", live)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert problem in message and path.name in message
    assert counts(live) == before


def test_missing_geopackage_is_not_created(tmp_path):
    target = tmp_path / "nope.gpkg"
    result = run("import", DATA / "sites.csv", "--gpkg", target)
    assert result.exit_code == 2 and "not found" in result.stderr
    assert not target.exists()


# --- backup ---------------------------------------------------------------------------------------


def test_backup_is_a_consistent_geopackage_gdal_reads(live, tmp_path):
    assert run("import", DATA / "sites.geojson", "--gpkg", live).exit_code == 0
    expected = len(sites(live))
    copy = tmp_path / "backups" / "catalogue.gpkg"
    copy.parent.mkdir()  # backup makes no folder (tests/test_cli.py: a missing one is refused)
    result = run("backup", copy, "--gpkg", live)
    assert result.exit_code == 0, result.output
    assert f"{expected} sites" in result.stdout and "integrity_check: ok" in result.stdout
    assert f"{copy.stat().st_size} bytes" in result.stdout
    with closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert not list(copy.parent.glob(".*.tmp"))
    frame = pyogrio.read_dataframe(copy, layer="sites")  # no sqlite3 connection to the copy is open
    assert len(frame) == expected
    assert "geojson-test-base" in set(frame["id"])


def test_backup_refuses_to_overwrite_without_force(live, tmp_path):
    copy = tmp_path / "copy.gpkg"
    copy.write_bytes(b"precious")
    result = run("backup", copy, "--gpkg", live)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert copy.read_bytes() == b"precious"
    forced = run("backup", copy, "--gpkg", live, "--force")
    assert forced.exit_code == 0, forced.output
    assert copy.read_bytes()[:16] == b"SQLite format 3\x00"


def test_backup_refuses_the_source_itself_and_a_stale_wal(live, tmp_path):
    result = run("backup", live, "--gpkg", live, "--force")
    assert result.exit_code == 2 and "being backed up" in result.stderr
    stale = tmp_path / "other.gpkg-wal"
    stale.write_bytes(b"old log")
    refused = run("backup", tmp_path / "other.gpkg", "--gpkg", live)
    assert refused.exit_code == 2 and "other.gpkg-wal" in " ".join(refused.stderr.split())
    assert not (tmp_path / "other.gpkg").exists()
    missing = run("backup", tmp_path / "x.gpkg", "--gpkg", tmp_path / "none.gpkg")
    assert missing.exit_code == 2 and "not found" in missing.stderr


WRITER = """
import sys
from contextlib import closing
from pathlib import Path
from app import edits, store
from app.models import SiteCreate
with closing(store.connect(Path(sys.argv[1]))) as connection:
    for number in range(int(sys.argv[2])):
        with store.transaction(connection):
            edits.create_site(connection, SiteCreate(name=f"Busy {number}", country="PRK", facility_type="launch_area",
                                                     source_ids=["38-north-iha-ri"]), "writer")
        print(number, flush=True)
"""


def test_backup_while_another_process_writes_is_consistent(live, tmp_path):
    base_sites, base_changes = counts(live)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(live), "150"], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "0"  # the writer is under way
        copies = []
        for number in range(4):
            copy = tmp_path / f"during-{number}.gpkg"
            result = run("backup", copy, "--gpkg", live)
            assert result.exit_code == 0, result.output
            copies.append(copy)
    finally:
        writer.communicate(timeout=120)
    assert writer.returncode == 0
    seen = []
    for copy in copies:
        with closing(sqlite3.connect(f"file:{copy}?mode=ro", uri=True)) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            site_rows = connection.execute("SELECT count(*) FROM sites").fetchone()[0]
            change_rows = connection.execute("SELECT count(*) FROM changes").fetchone()[0]
        assert site_rows - base_sites == change_rows - base_changes  # each site with its change, or neither
        seen.append(site_rows - base_sites)
    assert seen == sorted(seen) and 1 <= seen[0] and seen[-1] <= 150
    assert counts(live) == (base_sites + 150, base_changes + 150)


# --- checked first, written in bulk ---------------------------------------------------------------


def many_rows(path: Path, count: int, bad_lines: tuple[int, ...] = ()) -> Path:
    """A CSV of `count` located sites; the rows on `bad_lines` (file line numbers) cite an unknown source."""
    lines = ["name,aliases,country,lon,lat,coord_confidence,coord_source_id,facility_type,missile_types,source_ids"]
    for number in range(count):
        source = "no-such-source" if number + 2 in bad_lines else SOURCE
        lines.append(f"Bulk {number % 7},A {number}; B,PRK,{125 + number % 50 / 10},{38 + number % 40 / 10},"
                     f"approximate,{SOURCE},missile_base,hwasong-10,{source}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_a_bad_row_is_found_without_taking_the_write_lock_and_nothing_is_written(live, tmp_path):
    path = many_rows(tmp_path / "late_bad.csv", 300, bad_lines=(301,))
    before = counts(live)
    with closing(store.connect(live)) as holder:
        holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for the whole check
        started = time.perf_counter()
        result = run("import", path, "--gpkg", live)
        elapsed = time.perf_counter() - started
        holder.execute("ROLLBACK")
    assert result.exit_code == 1, result.output
    assert elapsed < store.BUSY_TIMEOUT_MS / 1000 / 2, "the check must not wait for the write lock"
    assert bad_row(result.stderr, 301, "source_ids: unknown source id 'no-such-source'")
    assert counts(live) == before and "nothing written" in result.stdout


def test_every_bad_row_is_reported_even_when_there_are_many(live, tmp_path):
    bad = tuple(range(2, 302, 3))  # 100 bad rows
    result = run("import", many_rows(tmp_path / "many_bad.csv", 300, bad_lines=bad), "--gpkg", live)
    assert result.exit_code == 1
    reported = re.findall(r"^line (\d+): Bulk \d: source_ids: unknown source id 'no-such-source'$", result.stderr, re.M)
    assert [int(n) for n in reported] == list(bad)


def test_a_large_import_prints_a_summary_not_every_row(live, tmp_path):
    result = run("import", many_rows(tmp_path / "many.csv", 500), "--gpkg", live, "--actor", "bulk")
    assert result.exit_code == 0, result.output
    assert "Added (500 sites; the first 10)" in result.stdout and "and 490 more" in result.stdout
    assert "added 500 site(s)" in result.stdout and "written in" in result.stdout
    assert result.stdout.count("Bulk ") == 10
    table = sites(live)
    ids = [i for i in table.index if i.startswith("bulk-")]
    assert len(ids) == 500 and len(set(ids)) == 500
    assert sorted(i for i in ids if i.startswith("bulk-0"))[:3] == ["bulk-0", "bulk-0-10", "bulk-0-11"]
    assert json.loads(table.loc["bulk-3", "aliases"]) == ["A 3", "B"]
    log = [c for c in changes(live) if c["actor"] == "bulk"]
    assert len(log) == 500 and {c["entity_id"] for c in log} == set(ids)
    assert json.loads(log[0]["after"])["id"] == log[0]["entity_id"] and log[0]["before"] is None


def test_a_bulk_import_indexes_points_as_the_per_row_triggers_do(live, tmp_path):
    """The bulk insert fills the R-tree and the feature count itself; the result equals create_site's, row by row."""
    from app import edits
    from app.importer import read_rows as read
    from app.models import SiteCreate

    path = many_rows(tmp_path / "rtree.csv", 200)
    assert run("import", path, "--gpkg", live).exit_code == 0
    other = store.ensure_live(tmp_path / "one-by-one.gpkg", GEODATA_DIR / "catalogue.gpkg")
    with closing(store.connect(other)) as connection, store.transaction(connection):
        for row in read(path)[1]:
            edits.create_site(connection, SiteCreate.model_validate(row.fields), "cli")
    query = ("SELECT s.id, r.minx, r.maxx, r.miny, r.maxy FROM sites s JOIN rtree_sites_geom r ON r.id = s.fid"
             " ORDER BY s.id")
    triggers = "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'sites' ORDER BY name"
    count = "SELECT feature_count, (SELECT count(*) FROM sites) FROM gpkg_ogr_contents WHERE table_name = 'sites'"
    with closing(store.connect_readonly(live)) as bulk, closing(store.connect_readonly(other)) as single:
        for sql in (query, triggers, count):
            assert bulk.execute(sql).fetchall() == single.execute(sql).fetchall()
        assert bulk.execute(count).fetchone()[0] == bulk.execute(count).fetchone()[1]
        assert bulk.execute("SELECT count(*) FROM rtree_sites_geom").fetchone()[0] == \
            bulk.execute("SELECT count(*) FROM sites WHERE geom NOTNULL").fetchone()[0]


def test_csv_list_cells_may_be_json_arrays(live, tmp_path):
    path = tmp_path / "json_lists.csv"
    path.write_text('name,aliases,country,facility_type,source_ids\n'
                    f'"Listed","[""Foo; Bar"",""Baz""]",PRK,launch_area,"[""{SOURCE}""]"\n', encoding="utf-8")
    result = run("import", path, "--gpkg", live)
    assert result.exit_code == 0, result.output
    site = sites(live).loc["listed"]
    assert json.loads(site["aliases"]) == ["Foo; Bar", "Baz"] and json.loads(site["source_ids"]) == [SOURCE]


def _create(path: Path, name: str) -> str:
    """Create a site through another connection, as another writer would; its id."""
    from app import edits
    from app.models import SiteCreate

    with closing(store.connect(path)) as connection, store.transaction(connection):
        body = {"name": name, "country": "PRK", "facility_type": "launch_area", "source_ids": [SOURCE]}
        return edits.create_site(connection, SiteCreate(**body), "other")["entity_id"]


def test_an_id_taken_between_the_check_and_the_write_is_made_free_again(live, tmp_path, monkeypatch):
    from app import importer

    prepare = importer._prepare

    def prepare_then_another_writer(connection, sites, actor):
        batch = prepare(connection, sites, actor)
        assert batch.ids[:2] == ["bulk-0", "bulk-1"]
        assert _create(live, "Bulk 0") == "bulk-0"  # commits after the ids were chosen, before the write lock
        return batch

    monkeypatch.setattr(importer, "_prepare", prepare_then_another_writer)
    path = many_rows(tmp_path / "race.csv", 20)
    result = importer.import_file(path, live, actor="bulk")
    assert result.written and len(result.good) == 20
    ids = [o.site_id for o in result.good]
    assert ids[0] == "bulk-0-2" and len(set(ids)) == 20
    log = {c["entity_id"]: json.loads(c["after"]) for c in changes(live) if c["actor"] == "bulk"}
    assert set(log) == set(ids) and all(record["id"] == site_id for site_id, record in log.items())
    stored = sites(live)
    assert stored.loc["bulk-0", "created_by"] == "other" and stored.loc["bulk-0-2", "created_by"] == "bulk"


def test_a_missile_changed_during_the_check_stops_the_write(live, tmp_path):
    from app import importer
    from app.errors import CatalogueError

    path = many_rows(tmp_path / "changed.csv", 5)
    before = counts(live)
    unit, rows = importer.read_rows(path)
    checked = []

    def advance():
        checked.append(1)
        if len(checked) == len(rows):  # the whole file is checked; another process now changes a missile
            with closing(store.connect(live)) as other, store.transaction(other):
                other.execute("UPDATE missiles SET class = 'SRBM' WHERE id = 'hwasong-10'")

    with closing(store.connect(live)) as connection, pytest.raises(CatalogueError, match="hwasong-10"):
        importer.import_rows(connection, rows, actor="bulk", unit=unit, path=path, advance=advance)
    assert counts(live) == before
