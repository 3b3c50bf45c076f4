"""Headless Chromium with the network cut off: a map's PNG for reports, and the same browser for the tests.

Uses Debian's `chromium` (`apt-get install -y chromium`) through the `playwright` package; it never
downloads a browser of its own. Only `file:` and `data:` requests are let through; any other request,
any console error and any uncaught page error is recorded, and `map_png` refuses to return a picture
of a page that had one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
)
ALLOWED_SCHEMES = ("file:", "data:", "about:")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
MAP_READY_JS = "() => !!document.querySelector('.leaflet-container .leaflet-map-pane')"


class BrowserProblem(RuntimeError):
    """The page logged a console error, threw, asked for the network, or no browser was found."""


def chromium_path() -> str:
    """The Chromium executable: $MISSILE_SITES_CHROMIUM, else `chromium` on the PATH."""
    path = os.environ.get("MISSILE_SITES_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise BrowserProblem("chromium not found: install it with `apt-get install -y chromium`")
    return path


@dataclass
class PageLog:
    """What a page did that an offline, self-contained map must not do."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Every recorded problem, labelled."""
        return ([f"console error: {m}" for m in self.console_errors] + [f"page error: {m}" for m in self.page_errors]
                + [f"blocked request: {u}" for u in self.blocked_requests]
                + [f"failed request: {u}" for u in self.failed_requests] + [f"dialog: {m}" for m in self.dialogs])


@contextmanager
def offline_page(*, width: int = 1400, height: int = 900, local_origin: str | None = None):
    """A Chromium page with no network (only file:/data: requests pass) and a log of what went wrong.

    `local_origin` (a service on this machine, `http://127.0.0.1:PORT`) is let through too, and nothing else."""
    from playwright.sync_api import sync_playwright

    allowed = ALLOWED_SCHEMES
    if local_origin is not None:
        if urlsplit(local_origin).hostname not in LOOPBACK_HOSTS:
            raise ValueError(f"not a loopback origin: {local_origin}")
        allowed += (local_origin.rstrip("/") + "/",)
    log = PageLog()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=list(CHROMIUM_ARGS))
        try:
            context = browser.new_context(offline=local_origin is None, viewport={"width": width, "height": height})
            context.route("**/*", lambda route: _only_local(route, log, allowed))
            page = context.new_page()
            page.on("console", lambda message: log.console_errors.append(message.text)
                    if message.type == "error" else None)
            page.on("pageerror", lambda error: log.page_errors.append(str(error)))
            page.on("requestfailed", lambda request: log.failed_requests.append(request.url[:200])
                    if not request.url.startswith("data:") else None)
            page.on("dialog", lambda dialog: (log.dialogs.append(dialog.message), dialog.dismiss()))
            yield page, log
        finally:
            browser.close()


def _only_local(route, log: PageLog, allowed: tuple[str, ...] = ALLOWED_SCHEMES) -> None:
    """Let file: and data: requests (and a local origin's) through; abort and record any other."""
    url = route.request.url
    if url.startswith(allowed):
        route.continue_()
    else:
        log.blocked_requests.append(url[:200])
        route.abort("internetdisconnected")


def open_map(page, path: Path, *, settle_ms: int = 400) -> None:
    """Load a map file and wait until Leaflet has drawn it."""
    page.goto(Path(path).resolve().as_uri())
    page.wait_for_function(MAP_READY_JS, timeout=15_000)
    page.wait_for_timeout(settle_ms)


def map_png(html: str, *, width: int = 1400, height: int = 900) -> bytes:
    """A PNG of a rendered map, taken offline; BrowserProblem if the page misbehaved."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "map.html"
        path.write_text(html, encoding="utf-8")
        with offline_page(width=width, height=height) as (page, log):
            open_map(page, path)
            png = page.screenshot(full_page=False)
    if log.problems:
        raise BrowserProblem("; ".join(log.problems[:5]))
    return png
