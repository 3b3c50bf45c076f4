"""The ASGI app: `create_app(settings)` builds it; `app` is the default one for uvicorn."""

import sys
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.auth import READ_ACCESS, install_access
from app.errors import READ_ERRORS, WRITE_ERRORS, install_error_handlers
from app.http_methods import install_http_methods
from app.live import LiveCatalogue
from app.openapi import QUERY_PARAMETERS
from app.routers import changes, cities, docs, edits, launches, maps, ogc, reach, reference, sites
from app.settings import Settings
from app.storage import open_store
from app.store import LiveFileProblem


def open_live(settings: Settings) -> LiveCatalogue:
    """The live catalogue the settings name (a GeoPackage, or PostGIS for a postgresql:// database URL); a missing,
    corrupt or unreadable file stops the service with one line naming the file and what to do."""
    try:
        return LiveCatalogue(open_store(settings), write_wait_s=settings.write_wait_s)
    except LiveFileProblem as exc:
        print(f"missile-sites: {exc}", file=sys.stderr, flush=True)
        raise


def create_app(settings: Settings | None = None) -> FastAPI:
    """A service over the GeoPackage the settings name, loaded once at start-up."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.live = open_live(settings)
        yield
        app.state.live.close()

    app = FastAPI(
        title="missile-sites",
        summary="A sourced catalogue of missile sites with geodesic (WGS84) proximity queries.",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url=None, docs_url=None, redoc_url=None,  # served by routers.docs, closed as every read is
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_access(app, settings)
    install_http_methods(app)
    app.include_router(edits.router, dependencies=[QUERY_PARAMETERS], responses=WRITE_ERRORS)
    for router in (sites.router, reach.router, reference.router, maps.router, ogc.router, changes.router,
                   cities.router, launches.router, docs.router):
        app.include_router(router, dependencies=[READ_ACCESS, QUERY_PARAMETERS], responses=READ_ERRORS)
    return app


app = create_app()
