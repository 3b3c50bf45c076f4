"""The command line: the same answers and the same errors as the API."""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.catalogue import Catalogue
from app.cli import cli
from app.formats import FORMATS
from app.settings import GEODATA_DIR, REPO_ROOT

runner = CliRunner()


def test_sites_near_seoul_as_geojson():
    result = runner.invoke(cli, ["sites", "--near", "Seoul", "--within-km", "150", "--format", "geojson"])
    assert result.exit_code == 0, result.output
    ids = {f["id"] for f in json.loads(result.stdout)["features"]}
    assert {"sakkanmol", "kal-gol"} <= ids and "sino-ri" not in ids


def test_sites_as_csv_and_table():
    result = runner.invoke(cli, ["sites", "--border", "mdl", "--border-min-km", "50", "--border-max-km", "90",
                                 "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {"sakkanmol", "kal-gol"} <= {r["id"] for r in rows}
    table = runner.invoke(cli, ["sites", "--near", "Seoul", "--within-km", "150"], env={"COLUMNS": "250"})
    assert table.exit_code == 0 and "sakkanmol" in table.stdout
    wide = runner.invoke(cli, ["sites", "--near", "Seoul", "--within-km", "150", "--wide"])
    assert wide.exit_code == 0 and "Sakkanmol" in wide.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--lat", "nan", "--lon", "126"], "--lat"),
        (["--lat", "95", "--lon", "126"], "--lat"),
        (["--near", "Seoul", "--within-km", "0"], "--within-km"),
        (["--near", "Atlantis"], "--near"),
        (["--status", "sleeping"], "--status"),
        (["--limit", "100000"], "--limit"),
    ],
)
def test_sites_bad_input_names_the_option(args, named):
    result = runner.invoke(cli, ["sites", *args])
    assert result.exit_code == 2
    assert named in result.stderr


def test_validate_passes_on_the_bundled_file():
    result = runner.invoke(cli, ["validate"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "validate_gpkg: ok" in result.stdout
    assert "sakkanmol" in result.stdout


def test_build_data_writes_a_gpkg(tmp_path):
    out = tmp_path / "catalogue.gpkg"
    result = runner.invoke(cli, ["build-data", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 0


# --- every error one line, exit 2; tables that fit 80 columns; validate's verdicts and summary ---------------------


def _run(*args, columns: int = 80) -> subprocess.CompletedProcess:
    """`python -m app.cli ARGS` in a subprocess (this checkout's code, the bundled GeoPackage) at a terminal width."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "app.cli", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300, cwd=REPO_ROOT)


def _error_cases(tmp: Path) -> list[tuple[list, str]]:
    """(arguments, what the one error line must say) for errors of every kind."""
    text_file = tmp / "notes.txt"
    text_file.write_text("not a GeoPackage\n", encoding="utf-8")
    missing = tmp / "missing"
    return [
        (["map", "-o", missing / "x.html"], f"--output: no such directory: {missing}"),
        (["map", "--png", missing / "x.png"], f"--png: no such directory: {missing}"),
        (["map", "-o", tmp], f"--output: {tmp} is a directory"),
        (["validate", "--gpkg", tmp / "missing.gpkg"], f"--gpkg: no such file: {tmp / 'missing.gpkg'}"),
        (["validate", "--gpkg", text_file], f"{text_file}: not a GeoPackage"),
        (["backup", missing / "b.gpkg"], f"no such directory: {missing}"),
        (["sites", "--status", "sleeping"], "--status 'sleeping': Input should be"),
        (["sites", "--status", "active", "--status", "asleep"], "--status 'asleep': Input should be"),
        (["sites", "--nope"], "No such option: --nope"),
        (["sites", "--limit", "x"], "'--limit'"),
        (["import"], "Missing argument"),
        (["no-such-command"], "No such command"),
        (["sites", "--gpkg", text_file], f"{text_file}: cannot be read as a GeoPackage"),
    ]


def test_every_error_is_one_line_naming_the_problem_with_exit_code_2(tmp_path):
    for args, expected in _error_cases(tmp_path):
        result = _run(*args)
        assert result.returncode == 2, (args, result.returncode, result.stderr)
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stdout == "", args
    assert not (tmp_path / "missing").exists()  # nothing made a folder


def test_backup_refuses_a_missing_directory_and_writes_into_an_existing_one(tmp_path):
    refused = _run("backup", tmp_path / "no" / "such" / "b.gpkg", "--gpkg", GEODATA_DIR / "catalogue.gpkg")
    assert refused.returncode == 2 and not (tmp_path / "no").exists()
    written = _run("backup", tmp_path / "b.gpkg", "--gpkg", GEODATA_DIR / "catalogue.gpkg")
    assert written.returncode == 0, written.stderr
    assert (tmp_path / "b.gpkg").stat().st_size > 0


@pytest.mark.parametrize("args", [["sites"], ["sites", "--near", "Seoul", "--within-km", "150"],
                                  ["sites", "--border", "mdl", "--border-max-km", "300"], ["validate"]])
def test_tables_fit_80_columns(args):
    result = _run(*args)
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines() if "┃" in line or "│" in line) <= 80


def test_the_narrow_sites_table_and_the_wide_one():
    narrow = _run("sites", "--near", "Seoul", "--within-km", "150").stdout
    assert "nearest border" in narrow and "dmz-north 49.1" in narrow  # Chiha-ri's nearest border
    assert "mdl km" not in narrow and "Chiha-ri" not in narrow  # the name and each border are --wide's
    wide = _run("sites", "--near", "Seoul", "--within-km", "150", "--wide").stdout
    header = next(line for line in wide.splitlines() if "┃ id" in line)
    for column in ("name", "declared", "missiles", "km", "mdl km", "kor-prk km", "dmz-north km", "chn-prk km"):
        assert f" {column} " in header, column
    assert "Chiha-ri" in wide and "hwasong-5, hwasong-6, hwasong-9" in wide and len(header) > 80
    band = _run("sites", "--border", "mdl", "--border-max-km", "90").stdout
    assert "mdl km" in band and "85.2" in band  # Sakkanmol, 85 km from the MDL


def _verdicts(stdout: str) -> dict[tuple[str, str], str]:
    """(site, target) -> the `ok` cell of validate's table."""
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in stdout.splitlines() if line.startswith("│")]
    return {(row[0], row[1]): row[5] for row in rows}


def test_validate_honours_the_tolerance_on_every_row_and_ends_with_a_summary():
    default = _run("validate")
    assert default.returncode == 0, default.stdout + default.stderr
    verdicts = _verdicts(default.stdout)
    report = Catalogue(GEODATA_DIR / "catalogue.gpkg").check_reported()
    within = int((report["difference_km"].abs() <= 5).sum())
    assert len(verdicts) == len(report) > 20 and verdicts[("kumchon-ni", "tokyo")] == "explained"  # 31 km, explained
    assert verdicts[("kal-gol", "mdl")] == "yes" and list(verdicts.values()).count("yes") == within
    assert default.stdout.splitlines()[-1] == (f"validate: ok (validate_gpkg ok; {len(report)} reported distances: "
                                               f"{within} within 5 km, {len(report) - within} explained, 0 disagree,"
                                               " 0 not checked)")
    loose = _run("validate", "--tolerance-km", "40")
    assert set(_verdicts(loose.stdout).values()) == {"yes"} and loose.returncode == 0  # explained rows are within
    tight = _run("validate", "--tolerance-km", "2")
    verdicts = _verdicts(tight.stdout)
    assert tight.returncode == 1 and verdicts[("kal-gol", "mdl")] == "NO"  # 2.4 km off, no explanation
    assert verdicts[("kumchon-ni", "tokyo")] == "explained" and verdicts[("sakkanmol", "mdl")] == "yes"
    disagree = list(verdicts.values()).count("NO")
    assert tight.stdout.splitlines()[-1].startswith(f"validate: FAILED (validate_gpkg ok; {len(report)} reported")
    assert f" {disagree} disagree" in tight.stdout.splitlines()[-1] and disagree > 0
    wide = _run("validate", "--wide")
    assert "CSIS gives a round figure" in wide.stdout  # the explanations, with --wide


@pytest.mark.parametrize("fmt", ["csv", "kml"])
def test_sites_writes_the_bytes_the_api_answers_in_each_text_format(client, fmt):
    """The CLI's --format and the API's f= read one registry: the same query, the same bytes."""
    result = runner.invoke(cli, ["sites", "--near", "Seoul", "--within-km", "150", "--format", fmt])
    assert result.exit_code == 0, result.output
    answer = client.get(f"/sites?near=Seoul&within_km=150&f={fmt}")
    assert answer.status_code == 200 and result.stdout == answer.text and "sakkanmol" in answer.text
    assert answer.headers["content-type"].startswith(FORMATS[fmt].media_type)


def test_reach_refuses_a_format_it_cannot_write():
    result = runner.invoke(cli, ["reach", "--near", "Tokyo", "--format", "csv"])
    assert result.exit_code == 2 and "csv" in result.output
