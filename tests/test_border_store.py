"""Border distances kept with the sites (the GeoPackage's schema 4, PostGIS's migration 4): written with the sites,
read at start-up instead of measured again, on each engine."""

import numpy as np
import pytest

from app import border_distances, edits
from app.catalogue import Catalogue
from app.migrations import BORDER_DISTANCES_TABLE
from app.models import SiteCreate, SiteUpdate
from app.storage import open_store
from tests.conftest import engine_rows, engine_settings

SOURCE = "38-north-iha-ri"
NEW_SITE = {
    "name": "Test Base", "country": "PRK", "facility_type": "missile_base", "lon": 126.5, "lat": 39.0,
    "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE], "missile_types": ["hwasong-10"],
}


@pytest.fixture
def live(engine_live):
    """A fresh catalogue on each engine: a live GeoPackage, then a PostGIS database."""
    return engine_live


@pytest.fixture
def opened(live):
    """The store of that catalogue, closed after the test."""
    made = open_store(engine_settings(live))
    yield made
    made.close()


def measured_afresh(catalogue: Catalogue) -> border_distances.BorderMatrix:
    """The catalogue's sites measured now, against the same lines with the same mask."""
    matrix = catalogue.border_matrix
    lines = {b: catalogue.line_row(b).geometry for b in matrix.line_ids}
    return border_distances.BorderMatrix.measure(matrix.ids, matrix.lons, matrix.lats, lines, matrix.measured)


def assert_same(a: border_distances.BorderMatrix, b: border_distances.BorderMatrix) -> None:
    assert list(a.ids) == list(b.ids) and a.line_ids == b.line_ids
    for name in ("distance_m", "nearest_lon", "nearest_lat"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def stored_ids(live) -> list[str]:
    return [r[0] for r in engine_rows(live, f'SELECT site_id FROM "{BORDER_DISTANCES_TABLE}" ORDER BY site_id')]


def test_the_build_stores_every_located_site_and_start_up_measures_nothing(live, opened, monkeypatch):
    def refuse(*_):
        raise AssertionError("a line was measured at start-up")

    catalogue = Catalogue(opened)
    assert sorted(stored_ids(live)) == sorted(catalogue.border_matrix.ids)
    monkeypatch.setattr(border_distances.LineIndex, "__init__", refuse)
    assert_same(Catalogue(opened).border_matrix, catalogue.border_matrix)
    monkeypatch.undo()
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_imported_sites_are_stored_as_measured(live, opened, tmp_path):
    from app.importer import import_file

    source = tmp_path / "sites.csv"
    source.write_text("name,country,facility_type,lon,lat,coord_confidence,coord_source_id,source_ids\n"
                      f"Import Base,PRK,missile_base,126.5,39.0,approximate,{SOURCE},{SOURCE}\n", encoding="utf-8")
    assert import_file(source, opened, actor="alice").written
    assert "import-base" in stored_ids(live)
    catalogue = Catalogue(opened)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_a_site_write_drops_the_old_row_and_readers_measure_the_site(live, opened):
    def write(connection):
        created = edits.create_site(connection, SiteCreate(**NEW_SITE), "alice")
        edits.update_site(connection, "sakkanmol", SiteUpdate(lon=126.0, lat=39.5), "alice")
        return created

    created = opened.write(write)
    ids = stored_ids(live)
    assert created["entity_id"] not in ids and "sakkanmol" not in ids and "sino-ri" in ids
    catalogue = Catalogue(opened)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_a_stale_row_is_never_believed(opened):
    opened.write(lambda connection: connection.execute(
        f'UPDATE "{BORDER_DISTANCES_TABLE}" SET lon = lon + 1 WHERE site_id = ?', ("sakkanmol",)))
    catalogue = Catalogue(opened)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_detaching_a_line_stores_its_countrys_sites_without_it(opened):
    def write(connection):
        before = dict(connection.execute(f'SELECT site_id, border_ids FROM "{BORDER_DISTANCES_TABLE}"').fetchall())
        edits.attach_borders(connection, "dmz-north", ["PRK"], "alice", detach=True)
        korea = [r[0] for r in connection.execute("SELECT id FROM sites WHERE country = 'PRK' AND geom IS NOT NULL")]
        after = dict(connection.execute(f'SELECT site_id, border_ids FROM "{BORDER_DISTANCES_TABLE}"').fetchall())
        return before, korea, after

    before, korea, after = opened.write(write)
    assert korea and all('"dmz-north"' in before[s] and '"dmz-north"' not in after[s] for s in korea)
    catalogue = Catalogue(opened)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))
