"""Analysts' writes: sites, their observations, sources, missile systems and places. Every route needs an editor's
token."""

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from app import edits
from app.auth import Principal, require_editor
from app.errors import InvalidParameter
from app.live import LiveCatalogue
from app.models import (
    MissileCreate, MissileUpdate, MissileWritten, ObservationCreate, ObservationWritten, PlaceCreate, PlaceUpdate,
    PlaceWritten, SiteCreate, SiteUpdate, SiteWritten, SourceCreate, SourceUpdate, SourceWritten,
)


Editor = Annotated[Principal, Depends(require_editor)]


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """A JSON object's members, refusing a repeated name (which json.loads would settle silently, last one wins)."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise InvalidParameter(f"{key}: given more than once in the JSON object", parameter=key)
        seen.add(key)
    return dict(pairs)


async def unique_member_names(request: Request, _: Editor) -> None:
    """A write's JSON body may not repeat a member name (422 naming it); checked after the token, like the body."""
    body = await request.body()  # already read and cached by the route
    if body:
        try:
            json.loads(body, object_pairs_hook=_unique_keys)
        except (ValueError, RecursionError):
            pass  # not JSON at all: the route's own parsing answers that


router = APIRouter(tags=["edits"], dependencies=[Depends(unique_member_names)])
SiteId = Annotated[str, Path(min_length=1, max_length=200, description="Site id, e.g. sakkanmol.")]
SourceId = Annotated[str, Path(min_length=1, max_length=200, description="Source id.")]
MissileId = Annotated[str, Path(min_length=1, max_length=200, description="Missile id, e.g. hwasong-12.")]
PlaceId = Annotated[str, Path(min_length=1, max_length=200, description="Place id, e.g. hagatna.")]


def get_live(request: Request) -> LiveCatalogue:
    """The app's live catalogue, which owns the writer connection."""
    return request.app.state.live


Live = Annotated[LiveCatalogue, Depends(get_live)]


def _written(live: LiveCatalogue, change_of, record_of, *args) -> dict:
    """Run one write on the writer thread: `change_of(connection, *args)` then the stored record `record_of` names;
    answered once this worker's snapshot includes the change."""
    def work(connection):
        change = change_of(connection, *args)
        record_id = change["entity_id"] if change else args[0]
        return {"record": record_of(connection, record_id), "change": change}

    return live.write(work, change_id=lambda answer: answer["change"] and answer["change"]["id"])


@router.post("/sites", status_code=201, response_model=SiteWritten, summary="Add a site")
def create_site(body: SiteCreate, live: Live, editor: Editor, response: Response):
    """Add a site (its id is made from its name); every fact needs a source id from /sources."""
    answer = _written(live, edits.create_site, edits.site_record, body, editor.name)
    response.headers["Location"] = f"/sites/{answer['change']['entity_id']}"
    return answer


@router.patch("/sites/{site_id}", response_model=SiteWritten, summary="Change a site")
def update_site(site_id: SiteId, body: SiteUpdate, live: Live, editor: Editor):
    """Change the given fields (null clears one); a new lon/lat moves the site and re-measures its border distances."""
    return _written(live, edits.update_site, edits.site_record, site_id, body, editor.name)


@router.delete("/sites/{site_id}", response_model=SiteWritten, summary="Retire a site")
def retire_site(site_id: SiteId, live: Live, editor: Editor):
    """Retire a site: it leaves current answers (410 afterwards) and stays in the history and in `as_of` answers."""
    return _written(live, edits.retire_site, edits.site_record, site_id, editor.name)


@router.post("/sites/{site_id}/observations", status_code=201, response_model=ObservationWritten,
             summary="Add an observation")
def add_observation(site_id: SiteId, body: ObservationCreate, live: Live, editor: Editor):
    """Add a dated observation; the site's current status follows its latest observation."""
    return _written(live, edits.add_observation, edits.observation_record, site_id, body, editor.name)


@router.post("/sources", status_code=201, response_model=SourceWritten, summary="Add a source")
def create_source(body: SourceCreate, live: Live, editor: Editor, response: Response):
    """Add a source (its id is made from its publisher and title)."""
    answer = _written(live, edits.create_source, edits.source_record, body, editor.name)
    response.headers["Location"] = f"/sources/{answer['change']['entity_id']}"
    return answer


@router.patch("/sources/{source_id}", response_model=SourceWritten, summary="Change a source")
def update_source(source_id: SourceId, body: SourceUpdate, live: Live, editor: Editor):
    """Change the given fields of a source (null clears an optional one)."""
    return _written(live, edits.update_source, edits.source_record, source_id, body, editor.name)


@router.post("/missiles", status_code=201, response_model=MissileWritten, summary="Add a missile system")
def create_missile(body: MissileCreate, live: Live, editor: Editor, response: Response):
    """Add a missile system (its id is made from its name) with its class, its sources and, where one is published,
    its range (`range_max_km` with `range_kind` and `confidence`; `range_min_km` for a minimum)."""
    answer = _written(live, edits.create_missile, edits.missile_record, body, editor.name)
    response.headers["Location"] = f"/missiles/{answer['change']['entity_id']}"
    return answer


@router.patch("/missiles/{missile_id}", response_model=MissileWritten, summary="Change a missile system")
def update_missile(missile_id: MissileId, body: MissileUpdate, live: Live, editor: Editor):
    """Change the given fields (null clears an optional one); a new class re-derives its sites' missile classes."""
    return _written(live, edits.update_missile, edits.missile_record, missile_id, body, editor.name)


@router.post("/places", status_code=201, response_model=PlaceWritten, summary="Add a reference place")
def create_place(body: PlaceCreate, live: Live, editor: Editor, response: Response):
    """Add a place `near=` answers to by its id, name or any of its aliases (its id is made from its name)."""
    answer = _written(live, edits.create_place, edits.place_record, body, editor.name)
    response.headers["Location"] = f"/places/{answer['change']['entity_id']}"
    return answer


@router.patch("/places/{place_id}", response_model=PlaceWritten, summary="Change a reference place")
def update_place(place_id: PlaceId, body: PlaceUpdate, live: Live, editor: Editor):
    """Change the given fields of a place (null clears an optional one; a new lon/lat moves it)."""
    return _written(live, edits.update_place, edits.place_record, place_id, body, editor.name)
