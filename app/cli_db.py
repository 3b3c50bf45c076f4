"""`missile-sites db`: make the PostGIS engine's database from a GeoPackage, and export it as one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from app.settings import Settings
from app.storage import is_postgres, store_errors

db_cli = typer.Typer(help="The PostGIS engine: create its database from a GeoPackage, migrate it, export it as one.",
                     no_args_is_help=True)
console = Console(highlight=False, soft_wrap=True)


def _url(database_url: str | None) -> str:
    """The postgresql:// URL given, else MISSILE_SITES_DATABASE_URL; a one-line error when neither names PostgreSQL."""
    url = database_url or Settings().database_url
    if not is_postgres(url):
        console.print("missile-sites: error: give --database-url or set MISSILE_SITES_DATABASE_URL to a"
                      " postgresql:// URL", style="red")
        raise typer.Exit(2)
    return url


def _problem(exc: Exception) -> None:
    """Print a database problem on one line and exit 1."""
    console.print(f"missile-sites: error: {' '.join(str(exc).split())}", style="red")
    raise typer.Exit(1)


DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="postgresql:// URL (default: "
                                                 "MISSILE_SITES_DATABASE_URL).")]


@db_cli.command("init")
def init(
    gpkg: Annotated[Path | None, typer.Option("--gpkg", help="The GeoPackage to load (default: the bundled one).")]
    = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create the schema in an empty database and load a GeoPackage into it, in one transaction."""
    from app.store_pg import DatabaseProblem, init_database, redacted
    url, source = _url(database_url), gpkg or Settings().seed_gpkg
    if not Path(source).is_file():
        _problem(FileNotFoundError(f"{source}: no such GeoPackage"))
    try:
        counts = init_database(url, Path(source))
    except (DatabaseProblem, *store_errors()) as exc:
        _problem(exc)
    rows = ", ".join(f"{n} {table}" for table, n in counts.items())
    console.print(f"initialised {redacted(url)} from {source}: {rows}")


@db_cli.command("migrate")
def migrate(database_url: DatabaseUrl = None) -> None:
    """Bring a database made by an earlier version up to this version's schema, in one transaction."""
    from app.store_pg import DatabaseProblem, latest_version, redacted, upgrade_database
    url = _url(database_url)
    try:
        applied = upgrade_database(url)
    except (DatabaseProblem, *store_errors()) as exc:
        _problem(exc)
    done = f"applied migration(s) {', '.join(map(str, applied))}" if applied else "nothing to apply"
    console.print(f"{redacted(url)}: {done}; the schema is at migration {latest_version()}")


@db_cli.command("export")
def export(
    destination: Annotated[Path, typer.Argument(help="The GeoPackage to write (replaced if it exists).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write the database's catalogue, as one snapshot, to a GeoPackage that passes validate_gpkg."""
    from app.store_pg import DatabaseProblem, PostGISStore
    try:
        pg = PostGISStore(_url(database_url), poll_s=60)
        try:
            path = pg.export_gpkg(destination)
        finally:
            pg.close()
    except (DatabaseProblem, *store_errors()) as exc:
        _problem(exc)
    console.print(f"wrote {path} from {pg.label}: {path.stat().st_size} bytes")
