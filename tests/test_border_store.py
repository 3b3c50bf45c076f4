"""Border distances kept in the live file: written with the sites, read at start-up instead of measured again."""

from contextlib import closing

import numpy as np
import pytest

from app import border_distances, border_store, edits, store
from app.catalogue import Catalogue
from app.migrations import BORDER_DISTANCES_TABLE
from app.models import SiteCreate, SiteUpdate

SOURCE = "38-north-iha-ri"
NEW_SITE = {
    "name": "Test Base", "country": "PRK", "facility_type": "missile_base", "lon": 126.5, "lat": 39.0,
    "coord_confidence": "approximate", "coord_source_id": SOURCE, "source_ids": [SOURCE], "missile_types": ["hwasong-10"],
}


@pytest.fixture
def live(gpkg_path, tmp_path):
    return store.ensure_live(tmp_path / "live.gpkg", gpkg_path)


def measured_afresh(catalogue: Catalogue) -> border_distances.BorderMatrix:
    """The catalogue's sites measured now, against the same lines with the same mask."""
    matrix = catalogue.border_matrix
    lines = {b: catalogue.line_row(b).geometry for b in matrix.line_ids}
    return border_distances.BorderMatrix.measure(matrix.ids, matrix.lons, matrix.lats, lines, matrix.measured)


def assert_same(a: border_distances.BorderMatrix, b: border_distances.BorderMatrix) -> None:
    assert list(a.ids) == list(b.ids) and a.line_ids == b.line_ids
    for name in ("distance_m", "nearest_lon", "nearest_lat"):
        assert np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True), name


def stored_ids(path) -> list[str]:
    with closing(store.connect_readonly(path)) as connection:
        return [r[0] for r in connection.execute(f'SELECT site_id FROM "{BORDER_DISTANCES_TABLE}" ORDER BY site_id')]


def test_the_build_stores_every_located_site_and_start_up_measures_nothing(live, monkeypatch):
    def refuse(*_):
        raise AssertionError("a line was measured at start-up")

    catalogue = Catalogue(live)
    assert sorted(stored_ids(live)) == sorted(catalogue.border_matrix.ids)
    monkeypatch.setattr(border_distances.LineIndex, "__init__", refuse)
    assert_same(Catalogue(live).border_matrix, catalogue.border_matrix)
    monkeypatch.undo()
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_imported_sites_are_stored_as_measured(live, tmp_path):
    from app.importer import import_file

    source = tmp_path / "sites.csv"
    source.write_text("name,country,facility_type,lon,lat,coord_confidence,coord_source_id,source_ids\n"
                      f"Import Base,PRK,missile_base,126.5,39.0,approximate,{SOURCE},{SOURCE}\n", encoding="utf-8")
    assert import_file(source, live, actor="alice").written
    assert "import-base" in stored_ids(live)
    catalogue = Catalogue(live)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_a_site_write_drops_the_old_row_and_readers_measure_the_site(live):
    with closing(store.connect(live)) as connection, store.transaction(connection):
        created = edits.create_site(connection, SiteCreate(**NEW_SITE), "alice")
        edits.update_site(connection, "sakkanmol", SiteUpdate(lon=126.0, lat=39.5), "alice")
    ids = stored_ids(live)
    assert created["entity_id"] not in ids and "sakkanmol" not in ids and "sino-ri" in ids
    catalogue = Catalogue(live)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_a_stale_row_is_never_believed(live):
    with closing(store.connect(live)) as connection, store.transaction(connection):
        connection.execute(f'UPDATE "{BORDER_DISTANCES_TABLE}" SET lon = lon + 1 WHERE site_id = ?', ("sakkanmol",))
    catalogue = Catalogue(live)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))


def test_detaching_a_line_stores_its_countrys_sites_without_it(live):
    with closing(store.connect(live)) as connection, store.transaction(connection):
        before = dict(connection.execute(f'SELECT site_id, border_ids FROM "{BORDER_DISTANCES_TABLE}"').fetchall())
        edits.attach_borders(connection, "dmz-north", ["PRK"], "alice", detach=True)
        korea = [r[0] for r in connection.execute("SELECT id FROM sites WHERE country = 'PRK' AND geom NOTNULL")]
        after = dict(connection.execute(f'SELECT site_id, border_ids FROM "{BORDER_DISTANCES_TABLE}"').fetchall())
    assert korea and all('"dmz-north"' in before[s] and '"dmz-north"' not in after[s] for s in korea)
    catalogue = Catalogue(live)
    assert_same(catalogue.border_matrix, measured_afresh(catalogue))
