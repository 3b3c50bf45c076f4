"""The suite's no-skip rule: a test that skips (a missing client, an import) fails instead."""

import os
import subprocess
import sys

from app.settings import REPO_ROOT

SKIPPING = '''
import pytest

@pytest.mark.skipif(True, reason="ogr2ogr is not installed")
def test_marked():
    pass

def test_called():
    pytest.importorskip("no_such_client_module")

@pytest.mark.xfail(reason="expected")
def test_expected_failure():
    assert False

def test_passes():
    pass
'''


def test_a_skipped_test_fails_naming_its_reason(tmp_path):
    (tmp_path / "test_skipping.py").write_text(SKIPPING, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.no_skips", "-p", "no:cacheprovider", "-q", "-rfE",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout
    # a skip mark fails the setup (an error), pytest.skip in the body fails the test; an xfail stays an xfail
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in result.stdout and "skipped" not in result.stdout.splitlines()[-1]
    assert "ogr2ogr is not installed" in result.stdout and "no_such_client_module" in result.stdout
