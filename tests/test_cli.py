"""The command line: the same answers and the same errors as the API."""

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from app.cli import cli

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
    assert table.exit_code == 0 and "Sakkanmol" in table.stdout


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
