"""QGIS headless (Debian's python3-qgis, QGIS 3.22): its own OAPIF provider reads every site as /sites gives it."""

import json
import math
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.service import Service

pytestmark = pytest.mark.slow  # a real browser, client or fuzzer

QGIS_PYTHON = "/usr/bin/python3"  # Debian's Python, where python3-qgis installs `qgis`
READER = Path(__file__).parent / "clients" / "qgis_oapif.py"
LIST_FIELDS = ("aliases", "missile_types", "missile_classes", "source_ids")


@pytest.fixture(scope="module")
def qgis_read(tmp_path_factory):
    """What QGIS read from the `sites` collection of a real service, and what /sites answered there."""
    home = tmp_path_factory.mktemp("qgis-home")
    runtime = home / "runtime"
    runtime.mkdir(mode=0o700)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "QT_", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", HOME=str(home), XDG_RUNTIME_DIR=str(runtime))
    with Service(tmp_path_factory.mktemp("qgis-live") / "catalogue.gpkg") as service:
        result = subprocess.run([QGIS_PYTHON, str(READER), service.base, "sites"], env=env, capture_output=True,
                                text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        sites = httpx.get(f"{service.base}/sites", params={"limit": 1000}, timeout=30).json()["features"]
    return json.loads(result.stdout), sites


def _same(expected, got) -> bool:
    """A /sites property equals what QGIS read (an empty list or map is NULL there; numbers as numbers)."""
    if got is None:
        return expected in (None, [], {})
    if isinstance(expected, float):
        return math.isclose(got, expected, rel_tol=0, abs_tol=1e-9)
    return got == expected


def test_qgis_reads_list_fields_as_string_lists(qgis_read):
    read, _ = qgis_read
    assert read["provider"] == "OAPIF" and read["qgis"].startswith("3.")
    assert {name: read["fields"][name] for name in LIST_FIELDS} == dict.fromkeys(LIST_FIELDS, "StringList")


def test_qgis_reads_every_site_and_attribute_as_sites_gives_it(qgis_read, capsys):
    read, sites = qgis_read
    assert len(sites) == 23 and set(read["features"]) == {site["id"] for site in sites}
    filled = dict.fromkeys(LIST_FIELDS, 0)
    for site in sites:
        got = read["features"][site["id"]]
        assert got["point"] == (site["geometry"]["coordinates"] if site["geometry"] else None), site["id"]
        for name, expected in site["properties"].items():
            assert name in got["attributes"], name
            assert _same(expected, got["attributes"][name]), (site["id"], name, expected, got["attributes"][name])
        for name in LIST_FIELDS:
            value = got["attributes"][name]
            assert value is None or (isinstance(value, list) and all(isinstance(item, str) for item in value))
            filled[name] += bool(value)
    assert filled == {name: sum(bool(site["properties"][name]) for site in sites) for name in LIST_FIELDS}
    kal_gol = read["features"]["kal-gol"]["attributes"]
    with capsys.disabled():
        print(f"\nQGIS {read['qgis']} ({read['provider']} provider): {len(read['features'])} sites; list fields "
              + ", ".join(f"{name} {read['fields'][name]} ({filled[name]} filled)" for name in LIST_FIELDS)
              + f"; kal-gol missile_types {kal_gol['missile_types']}, missile_classes {kal_gol['missile_classes']}"
              + f"; border_distances_km {read['fields']['border_distances_km']}")
