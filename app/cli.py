"""The command line: the same catalogue functions and parameter bounds as the API."""

from __future__ import annotations

import json
import shlex
import socket
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import pydantic
import typer
from rich.console import Console
from rich.table import Table

from app.build_data import build
from app.catalogue import Catalogue
from app.errors import CatalogueError
from app.formats import sites_csv, sites_geojson
from app.live import live_path
from app.schemas import BorderParams, CentreParams, FilterParams, MapPageParams, PageParams, RadiusParams, run_site_query
from app.settings import GEODATA_DIR, Settings
from app.store import LiveFileProblem, check_live

cli = typer.Typer(help="A sourced catalogue of missile sites with geodesic proximity queries.", no_args_is_help=True)
console = Console()
errors = Console(stderr=True)
GpkgOption = Annotated[Optional[Path], typer.Option(help="GeoPackage to read (default: the settings').")]


class OutputFormat(str, Enum):
    """How `sites` prints its answer."""

    table = "table"
    geojson = "geojson"
    csv = "csv"


def _fail(message: str, code: int = 2) -> None:
    """Print an error naming the problem and exit."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _params(kind, **values):
    """A parameter group validated with the same bounds as the API's."""
    try:
        return pydantic.TypeAdapter(kind).validate_python({k: v for k, v in values.items() if v is not None})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"--{'-'.join(str(p) for p in first['loc']).replace('_', '-')}: {first['msg']}")


def _live(settings: Settings) -> Path:
    """The settings' live GeoPackage (seeded if it never existed), or a one-line error naming the problem."""
    try:
        return live_path(settings)
    except LiveFileProblem as exc:
        _fail(str(exc))


def _open(gpkg: Path | None) -> Catalogue:
    """The catalogue at the given path or the settings' one."""
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
    _live(settings)  # a missing, corrupt or unreadable live file stops here with one line
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
    output: Annotated[OutputFormat, typer.Option("--format", "-f", help="table, geojson or csv.")] = OutputFormat.table,
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
    if output is OutputFormat.geojson:
        sys.stdout.write(json.dumps(collection, ensure_ascii=False, indent=1) + "\n")
    elif output is OutputFormat.csv:
        sys.stdout.write(sites_csv(collection["features"]))
    else:
        console.print(_sites_table(collection))


def _sites_table(collection: dict) -> Table:
    """Site features as a rich table, with distances when the query had a centre."""
    features = collection["features"]
    border_ids = list(dict.fromkeys(b for f in features for b in f["properties"]["border_distances_km"]))
    table = Table(title=f"{collection['numberReturned']} of {collection['numberMatched']} sites")
    columns = ["id", "name", "status", "declared", "missiles"]
    has_distance = any("distance_km" in f["properties"] for f in features)
    for column in columns + (["km"] if has_distance else []) + [f"{b} km" for b in border_ids]:
        table.add_column(column, justify="right" if column.endswith("km") else "left")
    for item in features:
        p = item["properties"]
        cells = [p["id"], p["name"], p["current_status"], p["declared_status"], ", ".join(p["missile_types"])]
        cells += [_km(p.get("distance_km"))] if has_distance else []
        cells += [_km(p["border_distances_km"].get(b)) for b in border_ids]
        table.add_row(*cells)
    return table


def _km(value) -> str:
    """A distance for a table cell: one decimal, or `unknown`."""
    return "unknown" if value is None else f"{value:,.1f}"


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
    console.print(f"wrote {path}")


@cli.command()
def validate(
    gpkg: GpkgOption = None,
    tolerance_km: Annotated[float, typer.Option(min=0, help="Agreement asked of reported distances.")] = 5.0,
) -> None:
    """Check the GeoPackage with GDAL's validate_gpkg and compare computed with reported distances."""
    from osgeo_utils.samples import validate_gpkg

    path = gpkg or _live(Settings())
    problems = validate_gpkg.check(str(path), abort_at_first_error=False, extra_checks=True,
                                   warning_as_error=True, myprint=lambda msg: None)
    for problem in problems:
        errors.print(f"validate_gpkg: {problem}", highlight=False)
    console.print(f"validate_gpkg: {'ok' if not problems else f'{len(problems)} problem(s)'}")
    report = _open(path).check_reported(tolerance_km)
    console.print(_reported_table(report, tolerance_km))
    unchecked = int(report["unchecked"].notna().sum())
    if unchecked:
        console.print(f"{unchecked} reported distance(s) not checked: their site is retired or has no coordinate")
    if problems or not report.loc[report["unchecked"].isna(), "ok"].all():
        raise typer.Exit(1)


def _reported_table(report, tolerance_km: float) -> Table:
    """Reported against computed distances as a rich table."""
    table = Table(title=f"Reported vs computed distances (WGS84 geodesic; tolerance {tolerance_km:g} km)")
    for column in ("site", "to", "reported km", "computed km", "diff km", "ok", "explanation"):
        table.add_column(column, justify="right" if "km" in column else "left")
    for row in report.itertuples():
        checked = not isinstance(row.unchecked, str)
        table.add_row(row.site_id, row.target_id, f"{row.reported_km:g}",
                      f"{row.computed_km:.1f}" if checked else "unknown",
                      f"{row.difference_km:+.1f}" if checked else "",
                      ("yes" if row.ok else "NO") if checked else f"not checked: {row.unchecked}",
                      row.explanation if isinstance(row.explanation, str) else "")
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
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="HTML file to write.")] = None,
    png: Annotated[Optional[Path], typer.Option(help="Also (or only) write a PNG, through headless Chromium.")] = None,
    gpkg: GpkgOption = None,
) -> None:
    """Draw the `sites` query as one self-contained HTML map (and/or a PNG), as GET /map does."""
    import time

    from app.maps import catalogue_map, render_html

    started = time.perf_counter()
    query = _command_line("map", lat=lat, lon=lon, near=near, within_km=within_km, status=status, declared=declared,
                          missile_class=missile_class, missile_type=missile_type, facility_type=facility_type,
                          country=country, border=border, border_min_km=border_min_km, border_max_km=border_max_km,
                          sort=sort, limit=limit if limit != 100 else None, offset=offset or None, rings=rings)
    centre_params = _params(CentreParams, lat=lat, lon=lon, near=near)
    radius = _params(RadiusParams, within_km=within_km)
    filters = _params(FilterParams, status=status, declared=declared, missile_class=missile_class,
                      missile_type=missile_type, facility_type=facility_type, country=country)
    band = _params(BorderParams, border=border, border_min_km=border_min_km, border_max_km=border_max_km)
    page = _params(MapPageParams, sort=sort, limit=limit, offset=offset)
    catalogue = _open(gpkg)
    try:
        result = run_site_query(catalogue, centre_params, radius, filters, band, page)
    except CatalogueError as exc:
        _fail(f"--{(exc.parameter or 'input').replace('_', '-')}: {exc.message}")
    html = render_html(catalogue_map(catalogue, result, rings=rings, radius_km=radius.within_km, query=query))
    if output is None and png is None:
        output = Path("map.html")
    if output is not None:
        output.write_text(html, encoding="utf-8")
        console.print(f"wrote {output} ({len(html.encode()) / 1e6:.2f} MB, {len(result.sites)} sites, "
                      f"{time.perf_counter() - started:.2f} s)", highlight=False)
    if png is not None:
        _write_png(html, png)


def _write_png(html: str, path: Path) -> None:
    """A PNG of the map through offline headless Chromium, or a clear error."""
    from app.snapshot import BrowserProblem, map_png

    try:
        path.write_bytes(map_png(html))
    except BrowserProblem as exc:
        _fail(f"--png: {exc}")
    console.print(f"wrote {path}", highlight=False)


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
    file: Annotated[Path, typer.Argument(help="A .csv, .geojson/.json or .kml file of new sites.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check every row against the catalogue, then write "
                                          "nothing; print what would be written.")] = False,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="Write the good rows even if some are bad "
                                           "(the bad ones are reported).")] = False,
    actor: Annotated[Optional[str], typer.Option(help="Who the change log names (default: cli:<os user>).")] = None,
    gpkg: Annotated[Optional[Path], typer.Option(help="GeoPackage to write (default: the live one).")] = None,
) -> None:
    """Add the file's sites in one transaction, each checked as POST /sites checks a body.

    Exit 0: written (or, with --dry-run, would be); 1: bad rows, nothing written (with --skip-bad: only when no row
    is good); 2: the file or the GeoPackage cannot be used, nothing written.
    """
    import sqlite3

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from app.importer import MalformedFile, import_file
    from app.migrations import MigrationError

    who = (actor if actor is not None else _default_actor()).strip()
    if not who:
        _fail("--actor: give a name")
    try:
        target = gpkg or _live(Settings())
    except FileNotFoundError as exc:
        _fail(str(exc))
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=errors, transient=errors.is_terminal, disable=not errors.is_terminal)

    def on_rows(count: int):
        task = progress.add_task(f"{'checking' if dry_run else 'importing'} {file.name}", total=count)
        return lambda: progress.advance(task)

    try:
        with progress:
            result = import_file(file, target, actor=who, skip_bad=skip_bad, dry_run=dry_run, on_rows=on_rows)
    except MalformedFile as exc:
        _fail(str(exc))
    except FileNotFoundError as exc:
        _fail(str(exc))
    except (sqlite3.Error, MigrationError) as exc:
        _fail(f"{target}: {exc}")
    except CatalogueError as exc:  # a cited source or missile changed between the check and the write
        _fail(f"{target}: {exc.message}; nothing written")
    _print_bad_rows(result)
    if result.good:
        console.print(_imported_table(result), highlight=False)
    bad = f"{len(result.bad)} bad {result.unit}(s)"
    timing = f"checked in {result.check_seconds:.2f} s" + (f", written in {result.write_seconds:.2f} s"
                                                            if result.written else "")
    if dry_run:
        summary = (f"dry run: would add {len(result.good)} site(s) from {file} to {target} as {who}; {bad};"
                   f" nothing written ({timing})")
    elif result.written:
        summary = f"added {len(result.good)} site(s) from {file} to {target} as {who}; {bad} ({timing})"
    else:
        summary = (f"nothing written to {target}: {bad} in {file}"
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
    table = Table(title=f"{title} ({len(good)} sites{f'; the first {len(shown)}' if more else ''})",
                  caption=f"... and {more} more" + (f", the last {good[-1].site_id}" if good[-1].site_id else "")
                  if more else None)
    for column in (result.unit, "id", "name", "lon", "lat"):
        table.add_column(column, justify="right" if column in (result.unit, "lon", "lat") else "left")
    for outcome in shown:
        table.add_row(str(outcome.number), outcome.site_id or "", outcome.name or "",
                      "" if outcome.lon is None else f"{outcome.lon:.6f}",
                      "" if outcome.lat is None else f"{outcome.lat:.6f}")
    return table


@cli.command("backup")
def backup_command(
    path: Annotated[Path, typer.Argument(help="The copy to write, e.g. backups/catalogue-2026-01-31.gpkg.")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file at PATH.")] = False,
    gpkg: Annotated[Optional[Path], typer.Option(help="GeoPackage to copy (default: the live one).")] = None,
) -> None:
    """A consistent copy of the GeoPackage (SQLite's backup API, written beside PATH then moved in), checked.

    Exit 0: written and `PRAGMA integrity_check` ok; 1: written but the check failed; 2: nothing written.
    """
    import sqlite3

    from app.importer import backup

    try:
        source = gpkg or _live(Settings())
        result = backup(source, path, force=force)
    except (FileNotFoundError, FileExistsError) as exc:
        _fail(str(exc))
    except (sqlite3.Error, OSError) as exc:
        _fail(f"backup to {path}: {exc}")
    retired = f" ({result.retired} retired)" if result.retired else ""
    console.print(f"wrote {result.path} from {source}: {result.size / 1e6:.2f} MB ({result.size} bytes), "
                  f"{result.sites} sites{retired}, integrity_check: {'; '.join(result.integrity[:5])}",
                  highlight=False)
    if not result.ok:
        raise typer.Exit(1)


token_cli = typer.Typer(help="Issue bearer tokens for MISSILE_SITES_TOKENS.", no_args_is_help=True)
cli.add_typer(token_cli, name="token")


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
    """Console-script entry point."""
    cli()


if __name__ == "__main__":  # python -m app.cli
    main()
