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


def pytest_generate_tests(metafunc):
    """A contract test (marked `contract`) runs once per engine: its `engine` (and so its `client`) is a parameter."""
    if "engine" in metafunc.fixturenames and metafunc.definition.get_closest_marker("contract"):
        metafunc.parametrize("engine", ENGINES, indirect=True, scope="session")


@pytest.fixture(scope="session")
def engine(request) -> str:
    """The engine a contract test runs on (`gpkg` or `postgis`); the GeoPackage for any other test."""
    return getattr(request, "param", "gpkg")


@pytest.fixture(scope="session")
def engine_clients(request, tmp_path_factory):
    """One read-only catalogue and in-process client per engine, made on first use and closed after the session."""
    made: dict[str, tuple] = {}

    def get(engine: str) -> tuple:
        """(catalogue location, client) on the engine."""
        if engine not in made:
            live = new_live(request, engine, tmp_path_factory.mktemp(f"live-{engine}"))
            test_client = TestClient(create_app(engine_settings(live, seed_gpkg=BUNDLED_GPKG)),
                                     raise_server_exceptions=False)
            made[engine] = (live, test_client.__enter__())
        return made[engine]

    yield get
    for _, test_client in made.values():
        test_client.__exit__(None, None, None)


@pytest.fixture(scope="session")
def client(engine, engine_clients):
    """An in-process client of an app on a fresh copy of the bundled catalogue on the engine, ignoring any local
    .env. Shared by every test of the session on that engine: tests that write make their own app."""
    return engine_clients(engine)[1]


@pytest.fixture(scope="session")
def client_live(engine, engine_clients):
    """Where `client`'s catalogue is: a live GeoPackage's path or a PostGIS database's URL (for `engine_rows`)."""
    return engine_clients(engine)[0]


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


def new_live(request, engine: str, folder: Path):
    """A fresh catalogue on an engine: a live copy of the bundled GeoPackage in `folder`, or a PostGIS database's
    URL (a copy of `pg_template`)."""
    if engine == "gpkg":
        from app import store
        return store.ensure_live(folder / "live.gpkg", BUNDLED_GPKG)
    return fresh_database(request.getfixturevalue("pg_cluster"), request.getfixturevalue("pg_template"))


@pytest.fixture(params=ENGINES)
def engine_live(request, tmp_path):
    """A fresh catalogue on each engine in turn: a live GeoPackage's path, or a PostGIS database's URL."""
    return new_live(request, request.param, tmp_path)


def engine_settings(live, **settings) -> Settings:
    """Settings serving the catalogue `live` names (a GeoPackage path or a postgresql:// URL)."""
    where = {"database_url": live} if isinstance(live, str) else {"gpkg": live}
    return Settings(**where, **settings, _env_file=None)


def engine_env(live) -> dict[str, str]:
    """Environment variables naming the catalogue `live` names, for a command or server run in a subprocess."""
    if isinstance(live, str):
        return {"MISSILE_SITES_DATABASE_URL": live}
    return {"MISSILE_SITES_GPKG": str(live)}


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
