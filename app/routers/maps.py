"""/map: a site query drawn as one self-contained HTML map."""

import ctypes
import gzip
from functools import lru_cache, partial
from typing import Annotated
from urllib.parse import unquote_plus

import anyio
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse

from app.catalogue import Catalogue
from app.routers import CatalogueDep
from app.schemas import AsOfParams, BorderParams, CentreParams, FilterParams, MapPageParams, RadiusParams

router = APIRouter(tags=["maps"])
MAP_RENDERS = 2  # maps drawn at once per process: CPU-bound work, and each holds its page's data until sent


@router.get("/map", response_class=HTMLResponse, summary="Sites as a self-contained HTML map")
async def get_map(
    request: Request,
    catalogue: CatalogueDep,
    centre: Annotated[CentreParams, Depends()],
    radius: Annotated[RadiusParams, Depends()],
    filters: Annotated[FilterParams, Depends()],
    border: Annotated[BorderParams, Depends()],
    page: Annotated[MapPageParams, Depends()],
    as_of: Annotated[AsOfParams, Depends()],
    rings: Annotated[bool, Query(description="Draw each site's geodesic missile range rings.")] = False,
    cities: Annotated[bool, Query(description="Draw the cities within range of the sites' missiles (as "
                                              "/cities/in-range answers the same query), sized by population.")] = False,
    launches: Annotated[bool, Query(description="Draw the launches (CNS) at the sites' own facilities, known by "
                                                "as_of, with a slider that keeps those up to a year.")] = False,
):
    """The `/sites` query as one HTML file that works offline: sites, borders, rings, query radius, sources; the cities
    in range and the launches when asked."""
    query = "GET /map" + (f"?{unquote_plus(request.url.query)}" if request.url.query else "")
    zipped = accepts_gzip(request.headers.get("accept-encoding", ""))
    draw = partial(_draw, catalogue, centre, radius, filters, border, page, as_of, rings=rings, query=query,
                   zipped=zipped, cities=cities, launches=launches)
    body = await anyio.to_thread.run_sync(draw, limiter=_render_slots(request.app))
    headers = {"Vary": "Accept-Encoding"} | ({"Content-Encoding": "gzip"} if zipped else {})
    return HTMLResponse(body, headers=headers)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header takes gzip (named with no q=0)."""
    for item in accept_encoding.lower().split(","):
        name, _, params = item.strip().partition(";")
        if name.strip() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _draw(catalogue: Catalogue, centre, radius, filters, border, page, as_of, *, rings: bool, query: str,
          zipped: bool = False, cities: bool = False, launches: bool = False) -> str | bytes:
    """Run the query and render its map (gzipped at level 1 when asked: a fast level, the page is mostly
    text); then free what the render built and hand the memory back to the system."""
    from app.maps import discard, query_map, render_html  # folium on first use: start-up never pays for it

    try:
        _, m = query_map(catalogue, as_of, centre, radius, filters, border, page, rings=rings, query=query,
                         cities=cities, launches=launches)
        try:
            html = render_html(m)
        finally:
            discard(m)
        return gzip.compress(html.encode(), compresslevel=1, mtime=0) if zipped else html
    finally:
        release_memory()


def _render_slots(app: FastAPI) -> anyio.CapacityLimiter:
    """The app's limit on maps drawn at once (requests beyond it wait without holding a thread)."""
    if getattr(app.state, "map_renders", None) is None:
        app.state.map_renders = anyio.CapacityLimiter(MAP_RENDERS)
    return app.state.map_renders


def release_memory() -> None:
    """Give the C heap's free pages back to the system (glibc keeps them per thread arena otherwise); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@lru_cache(maxsize=1)
def _malloc_trim():
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
