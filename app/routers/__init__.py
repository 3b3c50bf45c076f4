"""Thin HTTP layers, one module per resource."""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from app.catalogue import Catalogue
from app.formats import GEOJSON_MEDIA_TYPE


async def get_catalogue(request: Request) -> Catalogue:
    """The newest catalogue snapshot (re-read when any process has committed a change)."""
    return request.app.state.live.current()


CatalogueDep = Annotated[Catalogue, Depends(get_catalogue)]


class GeoJSONResponse(JSONResponse):
    """A JSON response served as application/geo+json."""

    media_type = GEOJSON_MEDIA_TYPE
