"""The command line: the same catalogue functions and parameter bounds as the API."""

from __future__ import annotations

import json
import shlex
import socket
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import pandas as pd
import pydantic
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.build_data import build
from app.catalogue import Catalogue
from app.errors import CatalogueError, InvalidParameter, NotFound
from app.formats import TEXT_FORMATS, sites_geojson
from app.live import live_path
from app.schemas import (
    MAX_RADIUS_KM, AsOfParams, BorderParams, CentreParams, FilterParams, MapPageParams, PageParams, RadiusParams, run_site_query,
)
from app.settings import GEODATA_DIR, Settings
from app.store import LiveFileProblem, check_live

cli = typer.Typer(help="A sourced catalogue of missile sites with geodesic proximity queries.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)


@cli.callback()
def _fresh_consoles() -> None:
    """Size each run's output by its own terminal or COLUMNS (one process may run many commands)."""
    global console, errors
    console, errors = Console(), Console(stderr=True)

GpkgOption = Annotated[Optional[Path], typer.Option(help="GeoPackage to read (default: the settings').")]


class ImportKind(str, Enum):
    """What `import` adds."""

    sites = "sites"
    missiles = "missiles"
    places = "places"


SitesFormat = Enum("SitesFormat", {name: name for name in ("table", "geojson", *TEXT_FORMATS)}, type=str)
"""How `sites` prints its answer: a table, or a format of the registry the API's `f=` reads (formats.FORMATS)."""


class ReachFormat(str, Enum):
    """How `reach` prints its answer."""

    table = "table"
    geojson = "geojson"


def _fail(message: str, code: int = 2) -> None:
    """Print an error naming the problem and exit."""
    _error_line(message)
    raise typer.Exit(code)


def _error_line(message: str) -> None:
    """One line on stderr: `error:` and the problem (the message is printed as text, never as markup)."""
    errors.print("[bold red]error:[/]", Text(message), highlight=False, soft_wrap=True)


def _params(kind, **values):
    """A parameter group validated with the same bounds as the API's."""
    try:
        return pydantic.TypeAdapter(kind).validate_python({k: v for k, v in values.items() if v is not None})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        name = next(str(part) for part in first["loc"] if isinstance(part, str))  # ("status", 0): --status
        given = f" {first['input']!r}" if len(first["loc"]) > 1 else ""
        _fail(f"--{name.replace('_', '-')}{given}: {first['msg']}")


def _writable(path: Path, option: str) -> Path:
    """A file path whose folder exists (nothing makes folders), or a one-line error naming the option."""
    if path.is_dir():
        _fail(f"{option}: {path} is a directory; give a file name")
    if not path.parent.is_dir():
        _fail(f"{option}: no such directory: {path.parent}")
    return path


def _existing(path: Path, option: str) -> Path:
    """A file that exists, or a one-line error naming the option."""
    if not path.is_file():
        _fail(f"{option}: no such file: {path}")
    return path


def _os_error(exc: OSError) -> str:
    """An OSError as one line: the file and what went wrong with it."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def _print_table(table: Table, wide: bool = False) -> None:
    """A table on stdout: fitted to the terminal (80 columns when not one; a cell too long for its column folds onto
    the next line rather than being cut), or as wide as it needs with --wide."""
    if not wide:
        for column in table.columns:
            column.overflow = "fold"
    (Console(width=100_000) if wide else console).print(table)


def _live(settings: Settings) -> Path:
    """The settings' live GeoPackage (seeded if it never existed), or a one-line error naming the problem."""
    try:
        return live_path(settings)
    except LiveFileProblem as exc:
        _fail(str(exc))


def _database():
    """The PostGIS store MISSILE_SITES_DATABASE_URL names (closed at exit), or None: the GeoPackage engine."""
    import atexit

    from app.storage import is_postgres, store_errors

    settings = Settings()
    if not is_postgres(settings.database_url):
        return None
    from app.store_pg import DatabaseProblem, PostGISStore

    try:
        database = PostGISStore(settings.database_url, poll_s=60, write_wait_s=settings.write_wait_s)
    except (DatabaseProblem, *store_errors()) as exc:
        _fail(" ".join(str(exc).split()))
    atexit.register(database.close)
    return database


def _open(gpkg: Path | None) -> Catalogue:
    """The catalogue at the given path, else the database's snapshot or the settings' live GeoPackage."""
    database = None if gpkg else _database()
    if database is not None:
        return database.load_snapshot()
    path = gpkg or _live(Settings())
    try:
        check_live(path)
        return Catalogue(path)
    except LiveFileProblem as exc:
        _fail(str(exc))


@cli.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="Address to bind (default: settings).")] = None,
    port: Annotated[Optional[int], typer.Option(min=1, max=65535, help="Port (default: settings).")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes sharing the live file.")] = 1,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    import uvicorn

    settings = Settings()
    database = _database()  # a database that does not answer, or has no schema, stops here with one line
    if database is None:
        _live(settings)  # a missing, corrupt or unreadable live file stops here with one line
    else:
        database.close()  # the workers open their own
    try:
        listener = listening_socket(host or settings.host, port or settings.port)
    except OSError as exc:
        _fail(f"cannot listen on {host or settings.host}:{port or settings.port}: {exc.strerror or exc}")
    uvicorn.run("app.main:app", fd=listener.fileno(), workers=workers)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, inheritable listening socket with TCP_NODELAY, which every accepted connection inherits: uvicorn's
    own pre-bound socket for several workers lacks it, and Nagle's algorithm then holds each small answer ~40 ms."""
    family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(address)
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener


@cli.command()
def sites(
    lat: Annotated[Optional[float], typer.Option(help="Centre latitude, degrees.")] = None,
    lon: Annotated[Optional[float], typer.Option(help="Centre longitude, degrees.")] = None,
    near: Annotated[Optional[str], typer.Option(help="Centre at a reference place, e.g. Seoul.")] = None,
    within_km: Annotated[Optional[float], typer.Option(help="Geodesic radius around the centre, km.")] = None,
    status: Annotated[Optional[list[str]], typer.Option(help="Current status (repeatable).")] = None,
    declared: Annotated[Optional[list[str]], typer.Option(help="Declared status (repeatable).")] = None,
    missile_class: Annotated[Optional[list[str]], typer.Option(help="Missile class, e.g. SRBM.")] = None,
    missile_type: Annotated[Optional[list[str]], typer.Option(help="Missile id, e.g. hwasong-5.")] = None,
    facility_type: Annotated[Optional[list[str]], typer.Option(help="Facility type.")] = None,
    country: Annotated[Optional[list[str]], typer.Option(help="ISO alpha-3 country code.")] = None,
    border: Annotated[Optional[str], typer.Option(help="Border id for a distance band, e.g. mdl.")] = None,
    border_min_km: Annotated[Optional[float], typer.Option(help="Minimum distance to --border, km.")] = None,
    border_max_km: Annotated[Optional[float], typer.Option(help="Maximum distance to --border, km.")] = None,
    sort: Annotated[Optional[str], typer.Option(help="distance or name.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 100,
    offset: Annotated[int, typer.Option(help="Rows to skip.")] = 0,
    output: Annotated[SitesFormat, typer.Option("--format", "-f", help="table, or as /sites answers f=: " + ", ".join(
                                                    n for n in SitesFormat.__members__ if n != "table") + ".")] = SitesFormat.table,
    wide: Annotated[bool, typer.Option("--wide", help="Every column of the table (the name, the declared status, "
                                       "the missiles and each border), however wide.")] = False,
    gpkg: GpkgOption = None,
) -> None:
    """Find sites, with the same filters as GET /sites."""
    centre_params = _params(CentreParams, lat=lat, lon=lon, near=near)
    radius = _params(RadiusParams, within_km=within_km)
    filters = _params(FilterParams, status=status, declared=declared, missile_class=missile_class,
                      missile_type=missile_type, facility_type=facility_type, country=country)
    band = _params(BorderParams, border=border, border_min_km=border_min_km, border_max_km=border_max_km)
    page = _params(PageParams, sort=sort, limit=limit, offset=offset)
    catalogue = _open(gpkg)
    try:
        result = run_site_query(catalogue, centre_params, radius, filters, band, page)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    collection = sites_geojson(catalogue, result, limit=page.limit, offset=page.offset)
    if output.value == "geojson":
        sys.stdout.write(json.dumps(collection, ensure_ascii=False, indent=1) + "\n")
    elif output.value in TEXT_FORMATS:
        sys.stdout.write(TEXT_FORMATS[output.value].encode(catalogue, collection["features"], "sites"))
    else:
        _print_table(_sites_table(collection, wide=wide, border=band.border), wide)


def _sites_table(collection: dict, *, wide: bool = False, border: str | None = None) -> Table:
    """Site features as a rich table, with distances when the query had a centre.

    Narrow (it fits 80 columns): id, status, missile classes, the distance to the centre, and the distance to
    `border` (else the nearest border, named). Wide: the name, the declared status, the missiles and every border."""
    features = collection["features"]
    has_distance = any("distance_km" in f["properties"] for f in features)
    table = Table(title=f"{collection['numberReturned']} of {collection['numberMatched']} sites")
    if wide:
        border_ids = list(dict.fromkeys(b for f in features for b in f["properties"]["border_distances_km"]))
        columns = ["id", "name", "status", "declared", "missiles"] + (["km"] if has_distance else [])
        columns += [f"{b} km" for b in border_ids]
    else:
        columns = ["id", "status", "classes"] + (["km"] if has_distance else [])
        columns += [f"{border} km" if border else "nearest border"]
    for column in columns:
        table.add_column(column, justify="right" if column.endswith(("km", "border")) else "left", overflow="fold")
    for item in features:
        p = item["properties"]
        distances = p["border_distances_km"]  # only the lines measured for the site (its country's, attached)
        if wide:
            cells = [p["id"], p["name"], p["current_status"], p["declared_status"], ", ".join(p["missile_types"])]
            cells += [_km(p.get("distance_km"))] if has_distance else []
            cells += [_km(distances[b]) if b in distances else "" for b in border_ids]
        else:
            cells = [p["id"], p["current_status"], ", ".join(p["missile_classes"])]
            cells += [_km(p.get("distance_km"))] if has_distance else []
            cells += [(_km(distances[border]) if border in distances else "") if border else _nearest(distances)]
        table.add_row(*cells)
    return table


def _nearest(distances: dict) -> str:
    """The nearest border and its distance, e.g. `kor-prk 54.2`, or `unknown`."""
    if not distances:
        return "unknown"
    border_id = min(distances, key=distances.get)
    return f"{border_id} {_km(distances[border_id])}"


def _km(value) -> str:
    """A distance for a table cell: one decimal, or `unknown`."""
    return "unknown" if value is None else f"{value:,.1f}"


@cli.command()
def reach(
    lat: Annotated[Optional[float], typer.Option(help="Target latitude, degrees.")] = None,
    lon: Annotated[Optional[float], typer.Option(help="Target longitude, degrees.")] = None,
    near: Annotated[Optional[str], typer.Option(help="Target a reference place by id, name or alias, e.g. Tokyo.")] = None,
    short_km: Annotated[Optional[float], typer.Option(help="Also list missiles falling short by at most this, km.")] = None,
    status: Annotated[Optional[list[str]], typer.Option(help="Current status (repeatable).")] = None,
    declared: Annotated[Optional[list[str]], typer.Option(help="Declared status (repeatable).")] = None,
    missile_class: Annotated[Optional[list[str]], typer.Option(help="Missile class, e.g. MRBM.")] = None,
    missile_type: Annotated[Optional[list[str]], typer.Option(help="Missile id, e.g. hwasong-7.")] = None,
    facility_type: Annotated[Optional[list[str]], typer.Option(help="Facility type.")] = None,
    country: Annotated[Optional[list[str]], typer.Option(help="ISO alpha-3 country code.")] = None,
    output: Annotated[ReachFormat, typer.Option("--format", "-f", help="table or geojson.")] = ReachFormat.table,
    wide: Annotated[bool, typer.Option("--wide", help="The margin's interval and the precision in columns of their "
                                       "own, however wide.")] = False,
    gpkg: GpkgOption = None,
) -> None:
    """Which sites' missiles reach a target, as GET /reach: each margin as an interval (± the site's coordinate
    precision), grouped by verdict."""
    from app.queries import REACH_VERDICTS
    from app.formats import reach_pairs

    target = _params(CentreParams, lat=lat, lon=lon, near=near)
    filters = _params(FilterParams, status=status, declared=declared, missile_class=missile_class,
                      missile_type=missile_type, facility_type=facility_type, country=country)
    if short_km is not None and not 0 <= short_km <= MAX_RADIUS_KM:
        _fail(f"--short-km: must be between 0 and {MAX_RADIUS_KM:g}")
    catalogue = _open(gpkg)
    try:
        centre = target.resolve(catalogue, required=True)
        where = filters.to_filter()
        pairs = catalogue.reach(centre, where=where, short_km=short_km)
        unassessed = catalogue.unassessable_site_ids(where)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    if output is ReachFormat.geojson:
        answer = {"target": {"lon": centre.lon, "lat": centre.lat, "place_id": centre.place_id}, "short_km": short_km,
                  "verdicts": {v: reach_pairs(pairs[pairs["verdict"] == v]) for v in REACH_VERDICTS},
                  "not_assessed": unassessed, "data_version": catalogue.version}
        sys.stdout.write(json.dumps(answer, ensure_ascii=False, indent=1) + "\n")
        return
    name = catalogue.places.loc[centre.place_id, "name"] if centre.place_id else f"{centre.lat:.4f}, {centre.lon:.4f}"
    console.print(f"Reach of {name} ({centre.lon:.5f}, {centre.lat:.5f}): geodesic on WGS84; margin = max range less "
                  "distance, its interval ± the site's coordinate precision", highlight=False)
    for verdict, meaning in REACH_VERDICTS.items():
        group = pairs[pairs["verdict"] == verdict]
        if len(group):
            title = (f"{verdict}: {meaning.replace('short_km', f'{short_km:g} km')}" if short_km is not None
                     else f"{verdict}: {meaning}")
            _print_table(_reach_table(catalogue, group, title, wide=wide), wide)
    if not len(pairs):
        console.print("no site's missiles reach it" + ("" if short_km is not None else
                                                       " (--short-km lists those falling short)"), highlight=False)
    if unassessed:
        console.print(f"not assessed (no coordinate or no published range): {', '.join(unassessed)}", highlight=False)


def _reach_table(catalogue, pairs, title: str, *, wide: bool = False) -> Table:
    """One verdict's (site, missile) pairs with the distance, range and margin: narrow (80 columns), the margin as
    `m ± p` km; wide, its interval and the precision in columns of their own."""
    table = Table(title=title, title_justify="left")
    columns = ("site", "missile", "distance km", "range km", "margin km")
    for column in columns + (("margin interval km", "precision m") if wide else ()):
        table.add_column(column, justify="right" if "km" in column or column.endswith(" m") else "left")
    for row in pairs.itertuples():
        low = "" if pd.isna(row.range_min_km) else f"{row.range_min_km:,.0f}–"
        known = not pd.isna(row.precision_km)
        cells = [catalogue.sites.loc[row.site_id, "name"], catalogue.missiles.loc[row.missile_id, "name"],
                 f"{row.distance_km:,.1f}", f"{low}{row.range_max_km:,.0f}", f"{row.margin_km:+,.1f}"]
        if wide:
            cells += [f"{row.margin_low_km:+,.1f} … {row.margin_high_km:+,.1f}" if known else "unknown",
                      f"{row.precision_km * 1000:,.4g}" if known else "unknown"]
        else:
            cells[-1] += f" ± {row.precision_km:,.1f}" if known else " ± ?"
        table.add_row(*cells)
    return table


@cli.command("build-data")
def build_data(
    sources: Annotated[Path, typer.Option(help="Folder of text sources.")] = GEODATA_DIR / "sources",
    out: Annotated[Path, typer.Option("--out", "-o", help="GeoPackage to write.")] = GEODATA_DIR / "catalogue.gpkg",
) -> None:
    """Build the GeoPackage from geodata/sources, deterministically."""
    try:
        path = build(sources, out)
    except ValueError as exc:
        _fail(str(exc))
    console.print(f"wrote {path}", soft_wrap=True)


@cli.command()
def validate(
    gpkg: GpkgOption = None,
    tolerance_km: Annotated[float, typer.Option(min=0, help="Agreement asked of reported distances.")] = 5.0,
    wide: Annotated[bool, typer.Option("--wide", help="Show each row's explanation, however wide.")] = False,
) -> None:
    """Check the GeoPackage with GDAL's validate_gpkg and compare computed with reported distances.

    A reported distance within --tolerance-km is `yes`; beyond it, `explained` when the sources explain the gap
    (it does not fail), else `NO`. Exit 0: all good; 1: a validate_gpkg problem or a reported distance that disagrees.
    """
    import tempfile

    from osgeo_utils.samples import validate_gpkg

    database = None if gpkg else _database()
    if database is not None:  # the database's snapshot, exported as the GeoPackage validate_gpkg reads
        folder = tempfile.TemporaryDirectory(prefix="missile-sites-validate-")
        path = database.export_gpkg(Path(folder.name) / "snapshot.gpkg")
        console.print(f"validating {database.label} (one snapshot, exported as a GeoPackage)", highlight=False)
    else:
        path = _existing(gpkg, "--gpkg") if gpkg else _live(Settings())
    try:
        problems = validate_gpkg.check(str(path), abort_at_first_error=False, extra_checks=True,
                                       warning_as_error=True, myprint=lambda msg: None)
    except Exception as exc:  # validate_gpkg raises on a file it cannot read as SQLite at all
        _fail(f"{path}: not a GeoPackage validate_gpkg can read: {' '.join(str(exc).split())}")
    for problem in problems:
        errors.print(f"validate_gpkg: {problem}", highlight=False)
    console.print(f"validate_gpkg: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    report = _open(path).check_reported(tolerance_km)
    verdicts = [_verdict(row, tolerance_km) for row in report.itertuples()]
    _print_table(_reported_table(report, verdicts, tolerance_km, wide), wide)
    counts = {name: verdicts.count(name) for name in ("yes", "explained", "NO", "not checked")}
    disagree = counts["NO"]
    console.print(
        f"validate: {'ok' if not problems and not disagree else 'FAILED'} (validate_gpkg "
        f"{'ok' if not problems else f'{len(problems)} problem(s)'}; {len(report)} reported distances: "
        f"{counts['yes']} within {tolerance_km:g} km, {counts['explained']} explained, {disagree} disagree, "
        f"{counts['not checked']} not checked)", highlight=False, soft_wrap=True)
    if problems or disagree:
        raise typer.Exit(1)


def _verdict(row, tolerance_km: float) -> str:
    """A reported distance's verdict: yes (within the tolerance), explained, NO, or not checked."""
    if isinstance(row.unchecked, str):
        return "not checked"
    if abs(row.difference_km) <= tolerance_km:
        return "yes"
    return "explained" if isinstance(row.explanation, str) and row.explanation else "NO"


def _reported_table(report, verdicts: list[str], tolerance_km: float, wide: bool) -> Table:
    """Reported against computed distances as a rich table (with --wide, each row's explanation)."""
    table = Table(title=f"Reported vs computed distances (WGS84 geodesic; tolerance {tolerance_km:g} km)")
    for column in ("site", "to", "reported km", "computed km", "diff km", "ok") + (("explanation",) if wide else ()):
        table.add_column(column, justify="right" if "km" in column else "left", overflow="fold")
    for row, verdict in zip(report.itertuples(), verdicts):
        checked = verdict != "not checked"
        cells = [row.site_id, row.target_id, f"{row.reported_km:g}", f"{row.computed_km:.1f}" if checked else "unknown",
                 f"{row.difference_km:+.1f}" if checked else "", verdict if checked else f"{verdict}: {row.unchecked}"]
        if wide:
            cells.append(row.explanation if isinstance(row.explanation, str) else "")
        table.add_row(*cells)
    return table


@cli.command("map")
def map_command(
    lat: Annotated[Optional[float], typer.Option(help="Centre latitude, degrees.")] = None,
    lon: Annotated[Optional[float], typer.Option(help="Centre longitude, degrees.")] = None,
    near: Annotated[Optional[str], typer.Option(help="Centre at a reference place, e.g. Seoul.")] = None,
    within_km: Annotated[Optional[float], typer.Option(help="Geodesic radius around the centre, km.")] = None,
    status: Annotated[Optional[list[str]], typer.Option(help="Current status (repeatable).")] = None,
    declared: Annotated[Optional[list[str]], typer.Option(help="Declared status (repeatable).")] = None,
    missile_class: Annotated[Optional[list[str]], typer.Option(help="Missile class, e.g. SRBM.")] = None,
    missile_type: Annotated[Optional[list[str]], typer.Option(help="Missile id, e.g. hwasong-5.")] = None,
    facility_type: Annotated[Optional[list[str]], typer.Option(help="Facility type.")] = None,
    country: Annotated[Optional[list[str]], typer.Option(help="ISO alpha-3 country code.")] = None,
    border: Annotated[Optional[str], typer.Option(help="Border id for a distance band, e.g. mdl.")] = None,
    border_min_km: Annotated[Optional[float], typer.Option(help="Minimum distance to --border, km.")] = None,
    border_max_km: Annotated[Optional[float], typer.Option(help="Maximum distance to --border, km.")] = None,
    sort: Annotated[Optional[str], typer.Option(help="distance or name.")] = None,
    limit: Annotated[int, typer.Option(help="Sites to draw.")] = 100,
    offset: Annotated[int, typer.Option(help="Sites to skip.")] = 0,
    rings: Annotated[bool, typer.Option("--rings", help="Draw each site's geodesic missile range rings.")] = False,
    cities: Annotated[bool, typer.Option("--cities", help="Draw the cities within range of the sites' missiles, sized "
                                                         "by population.")] = False,
    launches: Annotated[bool, typer.Option("--launches", help="Draw the launches (CNS) at the sites' facilities, with a "
                                                             "year slider.")] = False,
    as_of: Annotated[Optional[str], typer.Option(help="The catalogue as it stood at the end of this day (YYYY-MM-DD).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="HTML file to write.")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Also (or only) write a PNG, through headless Chromium.")] = None,
    gpkg: GpkgOption = None,
) -> None:
    """Draw the `sites` query as one self-contained HTML map (and/or a PNG), as GET /map does."""
    import time

    from app.maps import query_map, render_html

    started = time.perf_counter()
    for path, option in ((output, "--output"), (png, "--png")):
        if path is not None:
            _writable(path, option)
    query = _command_line("map", lat=lat, lon=lon, near=near, within_km=within_km, status=status, declared=declared,
                          missile_class=missile_class, missile_type=missile_type, facility_type=facility_type,
                          country=country, border=border, border_min_km=border_min_km, border_max_km=border_max_km,
                          sort=sort, limit=limit if limit != 100 else None, offset=offset or None, rings=rings,
                          cities=cities, launches=launches, as_of=as_of)
    centre_params = _params(CentreParams, lat=lat, lon=lon, near=near)
    radius = _params(RadiusParams, within_km=within_km)
    filters = _params(FilterParams, status=status, declared=declared, missile_class=missile_class,
                      missile_type=missile_type, facility_type=facility_type, country=country)
    band = _params(BorderParams, border=border, border_min_km=border_min_km, border_max_km=border_max_km)
    page = _params(MapPageParams, sort=sort, limit=limit, offset=offset)
    day = _params(AsOfParams, as_of=as_of)
    catalogue = _open(gpkg)
    try:
        result, m = query_map(catalogue, day, centre_params, radius, filters, band, page, rings=rings, query=query,
                              cities=cities, launches=launches)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    html = render_html(m)
    if output is None and png is None:
        output = _writable(Path("map.html"), "--output")
    if output is not None:
        try:
            output.write_text(html, encoding="utf-8")
        except OSError as exc:
            _fail(f"--output: cannot write {_os_error(exc)}")
        console.print(f"wrote {output} ({len(html.encode()) / 1e6:.2f} MB, {len(result.sites)} sites, "
                      f"{time.perf_counter() - started:.2f} s)", highlight=False, soft_wrap=True)
    if png is not None:
        _write_png(html, png)


def _write_png(html: str, path: Path) -> None:
    """A PNG of the map through offline headless Chromium, or a clear error."""
    from app.snapshot import BrowserProblem, map_png

    try:
        path.write_bytes(map_png(html))
    except BrowserProblem as exc:
        _fail(f"--png: {exc}")
    except OSError as exc:
        _fail(f"--png: cannot write {_os_error(exc)}")
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)


def _command_line(command: str, **options) -> str:
    """The options given, written back as the command line that asked for them (for a map's footer)."""
    words = [f"missile-sites {command}"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                words.append(flag)
            elif item not in (None, False):
                words.append(f"{flag} {shlex.quote(f'{item:g}' if isinstance(item, float) else str(item))}")
    return " ".join(words)


def _default_actor() -> str:
    """`cli:` and the operating-system user, who the change log names for a command-line import."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        import os

        return f"cli:uid-{os.getuid()}"


@cli.command("import")
def import_command(
    file: Annotated[Path, typer.Argument(help="A .csv, .geojson/.json or .kml file of new sites (or missiles, places).")],
    kind: Annotated[ImportKind, typer.Option("--kind", help="What the file adds: sites, missiles or places.")] =
    ImportKind.sites,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every row against the catalogue, then write "
                                          "nothing; print what would be written.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Write the good rows even if some are bad "
                                           "(the bad ones are reported).")] = False,
    actor: Annotated[Optional[str], typer.Option(help="Who the change log names (default: cli:<os user>).")] = None,
    gpkg: Annotated[Optional[Path], typer.Option(help="GeoPackage to write (default: the live one).")] = None,
) -> None:
    """Add the file's sites (or missile systems, places) in one transaction, each checked as POST /sites (/missiles,
    /places) checks a body.

    Exit 0: written (or, with --dry-run, would be); 1: bad rows, nothing written (with --skip-bad: only when no row
    is good); 2: the file or the GeoPackage cannot be used, nothing written.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from app.importer import RECORD_KINDS, MalformedFile, import_file
    from app.migrations import MigrationError
    from app.storage import store_errors

    who = (actor if actor is not None else _default_actor()).strip()
    if not who:
        _fail("--actor: give a name")
    try:
        target = gpkg or _database() or _live(Settings())
    except FileNotFoundError as exc:
        _fail(str(exc))
    where = getattr(target, "label", target)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=errors, transient=errors.is_terminal, disable=not errors.is_terminal)

    def on_rows(count: int):
        task = progress.add_task(f"{'checking' if dry_run else 'importing'} {file.name}", total=count)
        return lambda: progress.advance(task)

    try:
        with progress:
            result = import_file(file, target, actor=who, skip_bad=skip_bad, dry_run=dry_run, on_rows=on_rows,
                                 kind=RECORD_KINDS[kind.value])
    except MalformedFile as exc:
        _fail(str(exc))
    except FileNotFoundError as exc:
        _fail(str(exc))
    except (*store_errors(), MigrationError) as exc:
        _fail(f"{where}: {' '.join(str(exc).split())}")
    except CatalogueError as exc:  # a cited source or missile changed between the check and the write
        _fail(f"{where}: {exc.message}; nothing written")
    _print_bad_rows(result)
    if result.good:
        _print_table(_imported_table(result))
    bad = f"{len(result.bad)} bad {result.unit}(s)"
    timing = f"checked in {result.check_seconds:.2f} s" + (f", written in {result.write_seconds:.2f} s"
                                                            if result.written else "")
    added = f"{len(result.good)} {kind.value[:-1]}(s) from {file} to {where} as {who}"
    if dry_run:
        summary = f"dry run: would add {added}; {bad}; nothing written ({timing})"
    elif result.written:
        summary = f"added {added}; {bad} ({timing})"
    else:
        summary = (f"nothing written to {where}: {bad} in {file}"
                   + ("" if skip_bad else "; --skip-bad writes the good rows"))
    console.print(summary, highlight=False)
    if result.bad and not (skip_bad and result.good):
        raise typer.Exit(1)


IMPORT_TABLE_ROWS = 20  # good rows listed in full up to this many; beyond it, the first ones and a count
BAD_TABLE_ROWS = 50  # bad rows as a table up to this many; beyond it, one plain line each (all of them)


def _print_bad_rows(result) -> None:
    """Every bad row with its line or feature number and the reason naming the field, on stderr."""
    if len(result.bad) <= BAD_TABLE_ROWS:
        if result.bad:
            errors.print(_bad_rows_table(result), highlight=False)
        return
    errors.print(f"{len(result.bad)} bad {result.unit}s in {result.path}:", highlight=False)
    sys.stderr.write("".join(f"{result.unit} {o.number}: {o.name or ''}: {o.problem}\n" for o in result.bad))


def _bad_rows_table(result) -> Table:
    """Each bad row with its line or feature number and the reason, naming the field."""
    table = Table(title=f"Bad {result.unit}s in {result.path}")
    table.add_column(result.unit, justify="right")
    table.add_column("name")
    table.add_column("reason", overflow="fold")
    for outcome in result.bad:
        table.add_row(str(outcome.number), outcome.name or "", outcome.problem)
    return table


def _imported_table(result) -> Table:
    """The sites written (or that a dry run would write) with the ids they get: all of a few, the first of many."""
    title = "Would add" if result.dry_run else ("Added" if result.written else "Good rows (not written)")
    good = result.good
    shown = good if len(good) <= IMPORT_TABLE_ROWS else good[:10]
    more = len(good) - len(shown)
    table = Table(title=f"{title} ({len(good)} {result.kind}{f'; the first {len(shown)}' if more else ''})",
                  caption=f"... and {more} more" + (f", the last {good[-1].site_id}" if good[-1].site_id else "")
                  if more else None)
    located = result.kind != "missiles"
    for column in (result.unit, "id", "name", *(("lon", "lat") if located else ())):
        table.add_column(column, justify="right" if column in (result.unit, "lon", "lat") else "left")
    for outcome in shown:
        table.add_row(str(outcome.number), outcome.site_id or "", outcome.name or "",
                      *(("" if outcome.lon is None else f"{outcome.lon:.6f}",
                         "" if outcome.lat is None else f"{outcome.lat:.6f}") if located else ()))
    return table


@cli.command("attach-border")
def attach_border(
    border: Annotated[str, typer.Argument(help="A named line of /borders, e.g. mdl.")],
    countries: Annotated[list[str], typer.Argument(help="ISO alpha-3 codes of the countries whose sites it matters to.")],
    detach: Annotated[bool, typer.Option("--detach", help="Detach the line from the countries instead.")] = False,
    actor: Annotated[Optional[str], typer.Option(help="Who the change log names (default: cli:<os user>).")] = None,
    gpkg: Annotated[Optional[Path], typer.Option(help="GeoPackage to write (default: the live one).")] = None,
) -> None:
    """Attach a named line to countries: their sites are measured against it (as the MDL and the DMZ edges are for
    KOR and PRK), in /sites/{id}, exports and maps. Recorded in the change log; a running service follows."""
    from contextlib import closing

    from app import edits, store
    from app.storage import store_errors

    database = None if gpkg else _database()
    target = gpkg or (database.label if database is not None else _live(Settings()))
    who = (actor if actor is not None else _default_actor()).strip()
    try:
        if database is not None:
            changes = database.write(lambda connection: edits.attach_borders(connection, border, countries, who,
                                                                             detach=detach))
        else:
            with closing(store.connect(target)) as connection:
                store.ensure_edit_schema(connection)
                with store.transaction(connection):
                    changes = edits.attach_borders(connection, border, countries, who, detach=detach)
    except CatalogueError as exc:
        _fail(f"{exc.parameter or 'input'}: {exc.message}")
    except store_errors() as exc:
        _fail(f"{target}: {exc}")
    verb = "detached" if detach else "attached"
    done = [c["entity_id"].split(":")[1] for c in changes]
    console.print(f"{border} {verb} {'to' if not detach else 'from'} {', '.join(done) if done else 'no country'}"
                  + ("" if len(done) == len(set(countries)) else " (the others already were)"), highlight=False)


@cli.command("backup")
def backup_command(
    path: Annotated[Path, typer.Argument(help="The copy to write, e.g. backups/catalogue-2026-01-31.gpkg.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file at PATH.")] = False,
    gpkg: Annotated[Optional[Path], typer.Option(help="GeoPackage to copy (default: the live one).")] = None,
) -> None:
    """A consistent copy of the GeoPackage (SQLite's backup API, written beside PATH then moved in), checked; with
    MISSILE_SITES_DATABASE_URL, a GeoPackage export of one snapshot of the database.

    Exit 0: written and `PRAGMA integrity_check` ok; 1: written but the check failed; 2: nothing written.
    """
    from app.importer import backup
    from app.storage import store_errors

    try:
        source = gpkg or _database() or _live(Settings())
        result = backup(source, path, force=force)
    except (FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    except (*store_errors(), OSError) as exc:
        _fail(f"backup to {path}: {' '.join(str(exc).split())}")
    retired = f" ({result.retired} retired)" if result.retired else ""
    console.print(f"wrote {result.path} from {getattr(source, 'label', source)}: {result.size / 1e6:.2f} MB ({result.size} bytes), "
                  f"{result.sites} sites{retired}, integrity_check: {'; '.join(result.integrity[:5])}",
                  highlight=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(1)


cities_cli = typer.Typer(help="GeoNames cities of at least 15,000 people: near a point, in range of sites, and which "
                         "sites reach one.", no_args_is_help=True)
cli.add_typer(cities_cli, name="cities")
CITY_SORT_HELP = "population (largest first), distance or name."


def _city_params(**values):
    """The city parameter group, validated with the API's bounds."""
    from app.schemas import CityParams

    return _params(CityParams, **values)


def _cities_table(title: str, rows, *, reached=None, caption: str | None = None) -> Table:
    """Cities as a rich table: id, name, country, people, km, and the site and missiles that reach each when known."""
    table = Table(title=title, caption=caption)
    for column in ["id", "name", "country", "population", "km"] + (["nearest site", "reached by", "margin km"]
                                                                      if reached is not None else []):
        table.add_column(column, justify="right" if column in ("population", "km", "margin km") else "left")
    for city_id, row in rows.iterrows():
        cells = [city_id, row["name"], row["country"], f"{int(row['population']):,}", _km(row.get("distance_km"))]
        if reached is not None:
            pairs = reached.get(city_id, [])
            cells += [row["site_id"], ", ".join(dict.fromkeys(p["missile_id"] for p in pairs)), _km(row["margin_km"])]
        table.add_row(*cells)
    return table


@cities_cli.command("near")
def cities_near(
    lat: Annotated[Optional[float], typer.Option(help="Centre latitude, degrees.")] = None,
    lon: Annotated[Optional[float], typer.Option(help="Centre longitude, degrees.")] = None,
    near: Annotated[Optional[str], typer.Option(help="Centre at a reference place, e.g. Seoul.")] = None,
    within_km: Annotated[Optional[float], typer.Option(help="Geodesic radius around the centre, km.")] = None,
    city_country: Annotated[Optional[list[str]], typer.Option(help="Cities' alpha-3 country (repeatable).")] = None,
    min_population: Annotated[Optional[int], typer.Option(help="At least this many people.")] = None,
    sort: Annotated[Optional[str], typer.Option(help=CITY_SORT_HELP)] = None,
    limit: Annotated[int, typer.Option(help="Rows to print.")] = 100,
    gpkg: GpkgOption = None,
) -> None:
    """Cities within a geodesic radius of a point or place, as GET /cities."""
    centre_params = _params(CentreParams, lat=lat, lon=lon, near=near)
    radius = _params(RadiusParams, within_km=within_km)
    params = _city_params(city_country=city_country, min_population=min_population, sort=sort, limit=limit)
    catalogue = _open(gpkg)
    try:
        where = centre_params.resolve(catalogue)
        rows = catalogue.find_cities(centre=where, within_km=radius.within_km, country=params.countries(catalogue),
                                     min_population=params.min_population, sort=params.sort)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    _print_table(_cities_table(f"{min(len(rows), params.limit)} of {len(rows)} cities "
                                f"({int(rows['population'].sum()):,} people)", rows.iloc[:params.limit]))


@cities_cli.command("in-range")
def cities_in_range_command(
    site: Annotated[Optional[list[str]], typer.Option(help="Site id (repeatable); default: every site.")] = None,
    missile_type: Annotated[Optional[list[str]], typer.Option(help="Only these missiles, e.g. hwasong-5.")] = None,
    missile_class: Annotated[Optional[list[str]], typer.Option(help="Only missiles of these classes, e.g. SRBM.")] = None,
    city_country: Annotated[Optional[list[str]], typer.Option(help="Cities' alpha-3 country (repeatable).")] = None,
    min_population: Annotated[Optional[int], typer.Option(help="At least this many people.")] = None,
    sort: Annotated[Optional[str], typer.Option(help=CITY_SORT_HELP)] = None,
    limit: Annotated[int, typer.Option(help="Cities to print.")] = 100,
    gpkg: GpkgOption = None,
) -> None:
    """Cities within range of sites' missiles, with the people per missile class and per missile, as
    GET /sites/{site_id}/cities and GET /cities/in-range."""
    from app.routers.cities import reach_pairs

    params = _city_params(city_country=city_country, min_population=min_population, sort=sort, limit=limit)
    catalogue = _open(gpkg)
    try:
        for missile_id in missile_type or ():
            if missile_id not in catalogue.missiles.index:
                raise InvalidParameter(f"unknown missile {missile_id!r}", parameter="missile_type")
        site_ids = site or list(catalogue.sites.index)
        result = catalogue.cities_in_range(site_ids, missile_types=tuple(missile_type or ()),
                                           missile_classes=tuple(missile_class or ()))
        rows = catalogue.cities_reached(result, sort=params.sort or "population")
        countries = params.countries(catalogue)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    if countries:
        rows = rows[rows["country"].isin(countries)]
    if params.min_population is not None:
        rows = rows[rows["population"] >= params.min_population]
    shown = rows.iloc[:params.limit]
    people = "; ".join(f"{c['class']}: {c['cities']:,} cities, {c['population']:,} people" for c in result.by_class)
    _print_table(_cities_table(f"Cities within range of {', '.join(result.site_ids) or 'no site'}: {len(shown)} of "
                                f"{len(rows)}", shown, reached=reach_pairs(result, shown.index),
                                caption=f"{people or 'no city in range'}" + (
                                    f"; not assessed: {', '.join(result.not_assessed)}" if result.not_assessed else "")))
    missiles = Table(title="People within range, per missile")
    for column in ("missile", "range km", "cities", "people", "cities certain", "people certain"):
        missiles.add_column(column, justify="left" if column == "missile" else "right")
    for row in result.by_missile:
        missile = catalogue.missiles.loc[row["missile_id"]]
        plus = "+" if missile.get("range_max_qualifier") == "at_least" else ""
        missiles.add_row(row["missile_id"], f"{missile['range_max_km']:,.0f}{plus}", f"{row['cities']:,}",
                         f"{row['population']:,}", f"{row['cities_certain']:,}", f"{row['population_certain']:,}")
    _print_table(missiles)


@cities_cli.command("reach")
def cities_reach(
    city: Annotated[str, typer.Argument(help="A GeoNames id (e.g. 1850147) or a city name (the most populous match).")],
    gpkg: GpkgOption = None,
) -> None:
    """The sites and missiles whose published range covers a city, as GET /cities/{city_id}/reach."""
    from app.queries import Centre

    catalogue = _open(gpkg)
    try:
        row = _city_by_id_or_name(catalogue, city)
        pairs = catalogue.reach(Centre(float(row["lon"]), float(row["lat"])))
    except CatalogueError as exc:
        _fail(f"{exc.parameter or 'city'}: {exc.message}")
    table = Table(title=f"Sites that reach {row['name']} ({row['country']}, {int(row['population']):,} people; "
                        f"GeoNames {row['id']})")
    for column in ("site", "missile", "km", "range km", "margin km"):
        table.add_column(column, justify="right" if "km" in column else "left")
    for item in pairs.itertuples():
        table.add_row(item.site_id, item.missile_id, _km(item.distance_km), f"{item.range_max_km:,.0f}", _km(item.margin_km))
    _print_table(table)


def _city_by_id_or_name(catalogue, text: str):
    """A city by GeoNames id, else by name (case-insensitive; the most populous of the same name)."""
    frame = catalogue.city_table.frame
    if text in frame.index:
        return frame.loc[text]
    named = frame[frame["name"].str.casefold() == text.strip().casefold()]
    if named.empty:
        raise NotFound(f"no city with id or name {text!r}", parameter="city")
    return named.iloc[np.lexsort((named["id"].to_numpy(dtype=str), -named["population"].to_numpy()))[0]]


@cli.command("launches")
def launches_command(
    site_id: Annotated[str, typer.Argument(help="Site id, e.g. kittaeryong-missile-base.")],
    within_km: Annotated[Optional[float], typer.Option(help="Also every located launch within this distance, km.")] = None,
    as_of: Annotated[Optional[str], typer.Option(help="YYYY-MM-DD: only the launches known by the end of that day.")] = None,
    gpkg: GpkgOption = None,
) -> None:
    """Launches (CNS flight tests) at a site, and within --within-km of it, by year and missile, as
    GET /sites/{site_id}/launches."""
    import datetime

    from app.queries import launch_counts
    from app.schemas import MAX_RADIUS_KM, MIN_RADIUS_KM

    if within_km is not None and not MIN_RADIUS_KM <= within_km <= MAX_RADIUS_KM:
        _fail(f"--within-km: must be between {MIN_RADIUS_KM:g} and {MAX_RADIUS_KM:g}")
    try:
        day = None if as_of is None else datetime.date.fromisoformat(as_of)
    except ValueError:
        _fail(f"--as-of: {as_of!r} is not a date (YYYY-MM-DD)")
    if day is not None and day > datetime.datetime.now(datetime.timezone.utc).date():
        _fail(f"--as-of: {as_of} is after today (UTC)")
    catalogue = _open(gpkg)
    try:
        rows = catalogue.site_launches(site_id, within_km=within_km, as_of=day)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    where = f"within {within_km:g} km of {site_id}" if within_km is not None else f"at {site_id}"
    counts = Table(title=f"{len(rows)} launches {where}{f' (known by {as_of})' if as_of else ''}, by year and missile",
                   caption="CNS North Korea Missile Test Database, as redistributed by nagix/nk-missile-tests")
    for column in ("year", "missile", "name", "launches"):
        counts.add_column(column, justify="right" if column == "launches" else "left")
    for item in launch_counts(rows):
        counts.add_row(item["year"], item["missile"], item["missile_name"], str(item["launches"]))
    _print_table(counts)
    table = Table(title="Launches")
    for column in ("id", "date", "missile", "facility", "km", "outcome"):
        table.add_column(column, justify="right" if column == "km" else "left")
    for launch_id, row in rows.iterrows():
        table.add_row(launch_id, row["launched_on"], row["missile_name"], row["facility_name"], _km(_nan_none(row["distance_km"])),
                      row["outcome"])
    _print_table(table)


def _nan_none(value):
    """None for a NaN, else the value."""
    return None if value is None or value != value else value


token_cli = typer.Typer(help="Issue bearer tokens for MISSILE_SITES_TOKENS.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")
from app.cli_db import db_cli  # noqa: E402  (the PostGIS engine's commands)

cli.add_typer(db_cli, name="db")


class Role(str, Enum):
    """What a token may do."""

    reader = "reader"
    editor = "editor"


@token_cli.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who holds the token, e.g. alice (letters, digits, . _ @ -).")],
    role: Annotated[Role, typer.Option(help="reader or editor.")],
) -> None:
    """Print a new token (shown once) and the entry, with its hash, to add to MISSILE_SITES_TOKENS."""
    from app.auth import hash_token, new_token
    from app.settings import TokenEntry

    token = new_token()
    try:
        entry = TokenEntry(name=name, role=role.value, sha256=hash_token(token))
    except pydantic.ValidationError as exc:
        _fail(f"--{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
    errors.print("token (shown once; the service keeps only its hash):", highlight=False)
    sys.stdout.write(token + "\n")
    errors.print("entry to add to the JSON list in MISSILE_SITES_TOKENS:", highlight=False)
    sys.stdout.write(entry.model_dump_json() + "\n")


@token_cli.command("hash")
def token_hash(token: Annotated[str, typer.Argument(help="The token to hash.")]) -> None:
    """Print a token's SHA-256, as MISSILE_SITES_TOKENS stores it."""
    from app.auth import hash_token

    sys.stdout.write(hash_token(token) + "\n")


def main() -> None:
    """Console-script entry point: every error is one line on stderr (exit 2), never a traceback or a panel."""
    try:
        code = cli(prog_name="missile-sites", standalone_mode=False)
    except typer.Abort:
        _error_line("aborted")
        raise SystemExit(1) from None
    except OSError as exc:
        _error_line(_os_error(exc))
        raise SystemExit(2) from None
    except Exception as exc:  # noqa: BLE001 - the last resort: one line naming the problem, not a traceback
        if callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int):
            context = getattr(exc, "ctx", None)  # click's usage errors (an unknown option, a missing argument)
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            _error_line(f"{exc.format_message()}{hint}")
            raise SystemExit(exc.exit_code) from None
        _error_line(f"{type(exc).__name__}: {' '.join(str(exc).split())}")
        raise SystemExit(2) from None
    raise SystemExit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # python -m app.cli
    main()
