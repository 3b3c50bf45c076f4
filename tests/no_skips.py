"""A pytest plugin: a skipped test fails, so a missing client (GDAL, QGIS, Chromium, Node) cannot pass silently."""

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Report a skip (skip marks, pytest.skip, importorskip) as a failure naming its reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, and this suite runs every test (install what it needs): {reason}"
