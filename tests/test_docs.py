"""Docs kept honest: the docs pages name every setting, CLI command and endpoint; every link resolves; every example
in the README runs and gives the answers the README states; CI runs the README's test command."""

import os
import re
import shlex
import subprocess
import sys

import pytest
from typer.main import get_command

from app.cli import cli
from app.main import create_app
from app.settings import REPO_ROOT, Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
DOCS = REPO_ROOT / "docs"


def page(name: str) -> str:
    """A docs page's text."""
    return (DOCS / name).read_text(encoding="utf-8")


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"`MISSILE_SITES_{name.upper()}`" in page("operations.md"), name


def test_every_cli_command_is_documented():
    commands = get_command(cli).commands
    assert {"sites", "map", "validate", "backup", "import", "reach"} <= set(commands)
    for name in commands:
        assert f"`missile-sites {name}" in page("cli.md"), name


def test_every_endpoint_is_documented():
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    public = [(m.upper(), re.sub(r"^/collections/[a-z]+", "/collections/{collectionId}", p))  # one row per template
              for p, ops in paths.items() for m in ops if not p.startswith(("/docs", "/openapi", "/redoc"))]
    assert ("GET", "/sites") in public and ("POST", "/sites") in public
    for method, path in public:
        assert f"`{method} {path}" in page("api.md"), (method, path)


def _anchor(title: str) -> str:
    """A Markdown heading's anchor as GitHub makes it."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("path", [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))], ids=lambda p: p.name)
def test_every_relative_link_resolves(path):
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        target, _, anchor = link.partition("#")
        file = (path.parent / target).resolve() if target else path
        assert file.exists(), (path.name, link)
        if anchor:
            headings = re.findall(r"^#+ (.+)$", file.read_text(encoding="utf-8"), flags=re.MULTILINE)
            assert anchor in {_anchor(h) for h in headings}, (path.name, link)


def test_the_readme_leads_with_the_newcomers_path():
    headings = re.findall(r"^## (.+)$", README, flags=re.MULTILINE)
    assert headings[:5] == ["Two commands", "Three questions", "The map", "QGIS in four steps", "Going further"]
    assert len(README.split()) < 1200 and "| `GET /sites`" not in README  # reference tables live in docs/
    steps = re.findall(r"^\d\. ", README[README.index("## QGIS in four steps"):], flags=re.MULTILINE)
    assert len(steps) == 4


# --- every example in the README, run ---------------------------------------------------------------------------

TEAM_SERVER = "### A team's server"


def team_server_block() -> list[str]:
    """The command lines of the README's team-server block (tests/test_team_server.py runs them on a cluster)."""
    section = README[README.index(TEAM_SERVER):]
    block = re.search(r"^```\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL).group(1)
    return [line.strip() for line in block.splitlines() if line.strip()]


def _examples() -> list[str]:
    """Every command line in the README's code blocks but the install-and-run ones of "Two commands" and the
    team-server block (its own test runs it against a throwaway PostgreSQL cluster)."""
    blocks = re.findall(r"^```\n(.*?)^```", README, flags=re.MULTILINE | re.DOTALL)
    team = team_server_block()
    lines = [line.strip() for block in blocks for line in block.splitlines() if line.strip()]
    lines = [line for line in lines if line not in team]
    return [line for line in lines if not line.startswith("python -m pip install")]


def test_the_readme_has_examples_to_run():
    team = team_server_block()
    assert team[0].startswith("apt-get install") and team[-1].endswith("missile-sites serve --workers 4")
    assert "def test_the_team_server_block_runs_as_written" in (REPO_ROOT / "tests" / "test_team_server.py").read_text()
    examples = _examples()
    assert sum(e.startswith("curl ") for e in examples) == 3
    assert sum(e.startswith("missile-sites ") for e in examples) == 4
    assert all(e.startswith(("curl ", "missile-sites ")) for e in examples), examples


@pytest.mark.parametrize("example", [e for e in _examples() if e.startswith("curl ")])
def test_each_curl_example_answers(client, example):
    url = shlex.split(example)[1]
    assert url.startswith("http://127.0.0.1:8000/")
    response = client.get(url.removeprefix("http://127.0.0.1:8000"))
    assert response.status_code == 200, response.text[:300]
    assert response.json()["features"]


@pytest.mark.parametrize("example", [e for e in _examples() if e.startswith("missile-sites ")])
def test_each_command_example_runs(example, tmp_path):
    args = shlex.split(example)[1:]
    result = subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()
    for flag, written in zip(args, args[1:]):
        if flag in ("-o", "--png"):
            assert (tmp_path / written).stat().st_size > 10_000, written


# --- the answers the README states are the catalogue's ------------------------------------------------------------

def _km(value: float) -> str:
    return f"{value:,.0f} km"


def test_the_seoul_answer(client):
    features = client.get("/sites?near=Seoul&within_km=150").json()["features"]
    names = [f"{f['properties']['name']} ({_km(f['properties']['distance_km'])})" for f in features]
    assert names == ["Chiha-ri (120 km)", "Kal-gol (126 km)", "Sakkanmol (136 km)"]  # nearest first, Chiha-ri too
    assert f"Three, nearest first: {names[0]}, {names[1]} and {names[2]}" in README
    sino_ri = client.get("/sites?near=Seoul&within_km=400").json()["features"]
    distance = next(f["properties"]["distance_km"] for f in sino_ri if f["id"] == "sino-ri")
    assert f"is\n{_km(distance)} away" in README or f"is {_km(distance)} away" in README


def test_the_first_belt_answer(client):
    features = client.get("/sites?border=mdl&border_min_km=50&border_max_km=90&sort=border").json()["features"]
    shown = [(f["properties"]["name"], _km(f["properties"]["border_distances_km"]["mdl"])) for f in features]
    assert [name for name, _ in shown] == ["Chiha-ri", "Kal-gol", "Kumchon-ni", "Kittaeryong Missile Base", "Sakkanmol"]
    text = " ".join(README.split())
    assert "Five, nearest the line first: " + ", ".join(f"{n} ({k})" for n, k in shown[:3]) in text
    assert f"{shown[3][0]} ({shown[3][1]}) and {shown[4][0]} ({shown[4][1]}: the \"just over 50 miles\"" in text


def test_the_tokyo_answer(client):
    body = client.get("/reach?near=Tokyo&short_km=50").json()
    reaches = body["verdicts"]["reaches"]
    first, last = max(reaches, key=lambda p: p["margin_km"]), min(reaches, key=lambda p: p["margin_km"])
    sites = {p["site_id"] for p in reaches}
    assert all(not pairs for verdict, pairs in body["verdicts"].items() if verdict not in ("reaches", "falls_short"))
    short = body["verdicts"]["falls_short"]
    assert [(p["site_id"], p["missile_id"]) for p in short] == [("sino-ri", "hwasong-7")]
    text = " ".join(README.split())
    assert f"Nine sites, with {len(reaches)} (site, missile) pairs" in text and len(sites) == 9
    assert (first["site_id"], first["missile_id"]) == ("pyongyang-sunan-international-airport", "hwasong-17")
    assert f"Hwasong-17 ({_km(first['margin_km'])} to spare)" in text
    assert (last["site_id"], last["missile_id"]) == ("hwangju-launch-area", "hwasong-7")
    assert f"Hwasong-7 ({_km(last['margin_km'])} to spare, ± {last['coord_precision_m'] / 1000:g} km)" in text
    assert f"Sino-ri's Hwasong-7 falls {_km(-short[0]['margin_km'])} short" in text
    assert f"and {len(body['not_assessed'])} sites cannot be judged" in text


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^python -m pip install .*$", README, flags=re.MULTILINE)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_dockerfile_installs_as_the_readme_does():
    serve_command = next(c for c in re.findall(r"^python -m pip install .*$", README, flags=re.MULTILINE)
                         if c.endswith("missile-sites serve"))
    install = serve_command.removesuffix(" && missile-sites serve")
    assert install in (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
