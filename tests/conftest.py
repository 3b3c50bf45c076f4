"""Shared fixtures: the bundled GeoPackage, a catalogue on it, and an in-process API client."""

import itertools
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


ENGINES = ("gpkg", "postgis")
_DATABASES = itertools.count(1)


@pytest.fixture(scope="session")
def pg_template(pg_cluster) -> str:
    """A database made by `db init` from the bundled GeoPackage, copied for each test that needs a fresh one."""
    import psycopg

    from app.store_pg import init_database
    with psycopg.connect(pg_cluster.url(), autocommit=True) as connection:
        connection.execute("CREATE DATABASE catalogue_template")
    init_database(pg_cluster.url("catalogue_template"), BUNDLED_GPKG)
    return "catalogue_template"


def fresh_database(cluster, template: str) -> str:
    """The URL of a new database copied from the template."""
    import psycopg
    name = f"catalogue_{next(_DATABASES)}"
    with psycopg.connect(cluster.url(), autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    return cluster.url(name)


@pytest.fixture(params=ENGINES)
def engine_live(request, tmp_path):
    """A fresh catalogue on each engine in turn: a live GeoPackage's path, or a PostGIS database's URL."""
    if request.param == "gpkg":
        from app import store
        return store.ensure_live(tmp_path / "live.gpkg", BUNDLED_GPKG)
    return fresh_database(request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template"))


def engine_settings(live, **settings) -> Settings:
    """Settings serving the catalogue `live` names (a GeoPackage path or a postgresql:// URL)."""
    where = {"database_url": live} if isinstance(live, str) else {"gpkg": live}
    return Settings(**where, **settings, _env_file=None)


def engine_rows(live, sql: str, values=()) -> list[tuple]:
    """Rows of a query (SQLite dialect, `?` parameters) on either engine, through a separate connection."""
    from contextlib import closing

    from app import store
    if isinstance(live, str):
        import psycopg

        from app.store_pg import PgConnection, configure
        with psycopg.connect(live, autocommit=True) as connection:
            configure(connection)
            return [tuple(row) for row in PgConnection(connection).execute(sql, values).fetchall()]
    with closing(store.connect_readonly(live)) as connection:
        return connection.execute(sql, values).fetchall()
