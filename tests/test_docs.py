"""Docs kept honest: README names every setting, CLI command and endpoint, and CI runs its test command."""

import re

from typer.main import get_command

from app.cli import cli
from app.main import create_app
from app.settings import REPO_ROOT, Settings

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented():
    for name in Settings.model_fields:
        assert f"MISSILE_SITES_{name.upper()}" in README, name


def test_every_cli_command_is_documented():
    for name in get_command(cli).commands:
        assert f"missile-sites {name}" in README, name


def test_every_endpoint_is_documented():
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    public = [(m.upper(), re.sub(r"^/collections/[a-z]+", "/collections/{collectionId}", p))  # one row per template
              for p, ops in paths.items() for m in ops if not p.startswith(("/docs", "/openapi", "/redoc"))]
    assert ("GET", "/sites") in public and ("POST", "/sites") in public
    for method, path in public:
        assert f"`{method} {path}" in README, (method, path)


def test_ci_runs_the_readme_test_command():
    commands = re.findall(r"^python -m pip install .*$", README, flags=re.MULTILINE)
    test_command = next(c for c in commands if "pytest" in c)
    assert test_command in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_dockerfile_installs_as_the_readme_does():
    serve_command = next(c for c in re.findall(r"^python -m pip install .*$", README, flags=re.MULTILINE)
                         if c.endswith("missile-sites serve"))
    install = serve_command.removesuffix(" && missile-sites serve")
    assert install in (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
