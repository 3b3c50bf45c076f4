"""/map: a site query drawn as one self-contained HTML map."""

from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from app.maps import catalogue_map, render_html
from app.routers import CatalogueDep
from app.schemas import AsOfParams, BorderParams, CentreParams, FilterParams, PageParams, RadiusParams, run_site_query

router = APIRouter(tags=["maps"])


@router.get("/map", response_class=HTMLResponse, summary="Sites as a self-contained HTML map")
def get_map(
    request: Request,
    catalogue: CatalogueDep,
    centre: Annotated[CentreParams, Depends()],
    radius: Annotated[RadiusParams, Depends()],
    filters: Annotated[FilterParams, Depends()],
    border: Annotated[BorderParams, Depends()],
    page: Annotated[PageParams, Depends()],
    as_of: Annotated[AsOfParams, Depends()],
    rings: Annotated[bool, Query(description="Draw each site's geodesic missile range rings.")] = False,
):
    """The `/sites` query as one HTML file that works offline: sites, borders, rings, query radius, sources."""
    catalogue = as_of.apply(catalogue)
    result = run_site_query(catalogue, centre, radius, filters, border, page)
    query = "GET /map" + (f"?{unquote_plus(request.url.query)}" if request.url.query else "")
    m = catalogue_map(catalogue, result, rings=rings, radius_km=radius.within_km, query=query)
    return HTMLResponse(render_html(m))
