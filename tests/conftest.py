"""Shared fixtures: the bundled GeoPackage, a catalogue on it, and an in-process API client."""

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.catalogue import Catalogue
from app.main import create_app
from app.settings import GEODATA_DIR, Settings
from tests.pg import make_cluster

BUNDLED_GPKG = GEODATA_DIR / "catalogue.gpkg"

pytest_plugins = ["tests.no_skips"]


def pytest_configure(config):
    """Commands run in tests read the bundled GeoPackage, never a developer's live var/catalogue.gpkg."""
    os.environ["MISSILE_SITES_GPKG"] = str(BUNDLED_GPKG)


@pytest.fixture(scope="session")
def gpkg_path() -> Path:
    """The committed GeoPackage."""
    return BUNDLED_GPKG


@pytest.fixture(scope="session")
def catalogue(gpkg_path) -> Catalogue:
    """The catalogue loaded once for the session."""
    return Catalogue(gpkg_path)


@pytest.fixture(scope="session")
def client(gpkg_path, tmp_path_factory):
    """An in-process client of an app on a live copy of the bundled GeoPackage, ignoring any local .env."""
    live = tmp_path_factory.mktemp("live") / "catalogue.gpkg"
    app = create_app(Settings(gpkg=live, seed_gpkg=gpkg_path, _env_file=None))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL 15 + PostGIS cluster on a Unix socket in a temp dir, stopped after the session."""
    cluster = make_cluster()
    yield cluster
    cluster.stop()
