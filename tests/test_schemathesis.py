"""Schemathesis against the service's own OpenAPI, in-process, with a fixed seed: every operation, the writes
included (with an editor's token), answers no 500, only documented statuses and content types, and bodies that
match their documented schemas.

The run is derandomized (the same cases on every run and every machine) and bounded per operation, so it costs
about a minute; it prints how many operations and cases it ran. Generated ids name nothing, so about half
the cases are grounded first: their path ids and their bodies' references (source ids, missile ids, country,
date) are swapped, by a hash of the case, for real ones, so the writes also succeed and their 201/200 answers are
checked against their schemas.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter

import pytest
import schemathesis
from schemathesis.checks import load_all_checks, not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance, response_schema_conformance, status_code_conformance,
)

from app.auth import hash_token, new_token
from app.main import create_app
from app.settings import GEODATA_DIR, Settings
from app.store import connect_readonly, ensure_live, read_layer

pytestmark = pytest.mark.slow  # a real browser, client or fuzzer

SEED = 20261124
MAX_EXAMPLES = 12
"""Cases per operation and phase; the coverage phase adds its own bounded set of boundary cases."""
EDITOR_TOKEN = new_token()
EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}"}
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)

_run = {"operations": set(), "cases": 0, "statuses": Counter(), "started": None, "expected": None, "ids": {}}


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    """The OpenAPI of an app on a throw-away live copy of the bundled GeoPackage, with one editor's token."""
    load_all_checks()
    folder = tmp_path_factory.mktemp("schemathesis")
    live = ensure_live(folder / "live.gpkg", GEODATA_DIR / "catalogue.gpkg")
    settings = Settings(
        gpkg=live, seed_gpkg=GEODATA_DIR / "catalogue.gpkg", _env_file=None,
        tokens=[{"name": "fuzzer", "role": "editor", "sha256": hash_token(EDITOR_TOKEN)}],
        write_rate_per_minute=1e9, write_burst=1_000_000,
    )
    connection = connect_readonly(live)
    try:
        _run["ids"] = {table: sorted(read_layer(connection, table)["id"]) for table in ("sites", "sources", "missiles")}
    finally:
        connection.close()
    app = create_app(settings)
    config = schemathesis.Config()
    config.update(seed=SEED, max_failures=None)
    config.projects.default.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=config)
    _run["expected"] = {f"{method.upper()} {path}" for path, item in schema.raw_schema["paths"].items()
                        for method in item if method in ("get", "post", "put", "patch", "delete")}
    _run["started"] = time.monotonic()
    yield schema
    shutdown_lifespans()  # the app's lifespan: closes its SQLite connections


schema = schemathesis.pytest.from_fixture("api_schema")


def _pick(choices: list[str], key: int) -> str:
    """One of the choices, by a key."""
    return choices[key % len(choices)]


def _ground(case) -> None:
    """For about half the cases (by a hash of the case), real ids in the path and real references in the body."""
    key = zlib.crc32(json.dumps([case.path_parameters, case.query, case.body], sort_keys=True, default=repr).encode())
    if key % 2:
        return
    ids = _run["ids"]
    parameters = case.path_parameters or {}
    if "site_id" in parameters:
        # DELETE retires: only the last few sites, so most stay readable for the other operations.
        sites = ids["sites"][-4:] if case.method.upper() == "DELETE" else ids["sites"]
        parameters["site_id"] = _pick(sites, key >> 1)
    if "source_id" in parameters:
        parameters["source_id"] = _pick(ids["sources"], key >> 1)
    if "featureId" in parameters and case.path.startswith("/collections/sites/"):
        parameters["featureId"] = _pick(ids["sites"], key >> 1)
    body = case.body
    if not isinstance(body, dict):
        return
    source = _pick(ids["sources"], key >> 3)
    if isinstance(body.get("source_ids"), list):
        body["source_ids"] = [source]
    if isinstance(body.get("coord_source_id"), str):
        body["coord_source_id"] = source
    if isinstance(body.get("source_id"), str):
        body["source_id"] = source
    if isinstance(body.get("missile_types"), list):
        body["missile_types"] = [_pick(ids["missiles"], key >> 5)][: len(body["missile_types"])]
    if isinstance(body.get("country"), str):
        body["country"] = _pick(["PRK", "KOR", "CHN", "IRN"], key >> 7)
    if isinstance(body.get("observed_on"), str):
        body["observed_on"] = _pick(["2019", "2020-06", "2021-03-04"], key >> 7)
    if isinstance(body.get("published_on"), str):
        body["published_on"] = _pick(["2019", "2020-06", "2021-03-04"], key >> 7)


@schema.parametrize()
def test_openapi_conformance(case):
    """No 500; only documented statuses and content types; every body matches its schema."""
    _ground(case)
    response = case.call(headers=EDITOR)
    _run["operations"].add(case.operation.label)
    _run["cases"] += 1
    _run["statuses"][response.status_code] += 1
    case.validate_response(response, checks=CHECKS)


def test_every_operation_was_run(capsys):
    """The run above covered every operation of the OpenAPI (prints the operations, cases and statuses)."""
    assert _run["expected"], "the schemathesis test did not run"
    statuses = ", ".join(f"{status}: {count}" for status, count in sorted(_run["statuses"].items()))
    with capsys.disabled():
        print(f"\nschemathesis {schemathesis.__version__}, seed {SEED}: {len(_run['operations'])} operations, "
              f"{_run['cases']} cases in {time.monotonic() - _run['started']:.0f} s (statuses {statuses})")
    assert _run["operations"] == _run["expected"]
