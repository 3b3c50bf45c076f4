"""The shared vocabulary rules: the site's current status from its observations."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app import history, vocab


@pytest.mark.parametrize("observations, expected", [
    ([], {}),
    ([("a", "2020", "a-1", "unknown")], {}),
    ([("a", "2020", "a-1", "active"), ("a", "2021", "a-2", "unknown")], {"a": ("active", "2020")}),
    ([("a", "2020", "a-2", "inactive"), ("a", "2020", "a-1", "active")], {"a": ("inactive", "2020")}),
    ([("a", "2020-05", "a-1", "active"), ("a", "2020", "a-9", "inactive")], {"a": ("active", "2020-05")}),
    ([("a", "2019", "a-1", "active"), ("b", "2019", "b-1", "under_construction")],
     {"a": ("active", "2019"), "b": ("under_construction", "2019")}),
])
def test_latest_status(observations, expected):
    assert vocab.latest_status(observations) == expected
    assert vocab.latest_status(reversed(observations)) == expected


def test_the_built_statuses_are_the_read_sides(catalogue):
    derived = history.latest_status(catalogue.observations)
    stored = {site_id: (status, on if isinstance(on, str) else None) for site_id, status, on
              in zip(catalogue.all_sites.index, catalogue.all_sites["current_status"],
                     catalogue.all_sites["status_observed_on"])}
    assert stored == {site_id: derived.get(site_id, vocab.NO_STATUS) for site_id in stored}
    assert {status for status, _ in derived.values()} >= {"active", "under_construction"}


@pytest.mark.parametrize("text, items, exact", [
    ("", [], True),
    ("KOR; PRK", ["KOR", "PRK"], True),
    ("KOR;PRK", ["KOR", "PRK"], False),
    ("KOR; ; PRK", ["KOR", "PRK"], False),
    ("KOR;  PRK", ["KOR", "PRK"], False),
])
def test_text_lists(text, items, exact):
    assert vocab.split_text_list(text) == items and vocab.is_text_list(text) is exact
    assert vocab.split_text_list(vocab.join_text_list(items)) == items


@pytest.mark.parametrize("items", [[], ["a"], ["Foo; Bar", "Ünsan", "[x]", '"q"']])
def test_stored_list_cells_round_trip(items):
    assert vocab.decode_list(vocab.encode_list(items)) == items


def test_the_service_never_imports_the_offline_build():
    """The cell rules the API's models check with live here, so serving never loads the build (nor pycountry)."""
    code = "import app.main, sys; print(sorted(m for m in ('app.build_data', 'pycountry') if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stderr[-2000:]


@pytest.mark.parametrize("rule, value, ok", [
    (vocab.date, "2020-02", True), (vocab.date, "2020-02-30", False), (vocab.url, "https://x.org/a", True),
    (vocab.url, "javascript:alert(1)", False), (vocab.alpha3(blank_ok=False), "PRK", True),
    (vocab.alpha3(blank_ok=False), "XXX", False), (vocab.alpha3(blank_ok=True), "", True),
])
def test_cell_rules(rule, value, ok):
    assert (rule(value, {}) is None) is ok
