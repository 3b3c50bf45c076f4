"""/changes: the change log, oldest first, paged by the id of the last change seen."""

import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.errors import InvalidParameter
from app.history import read_changes
from app.models import Change
from app.routers import CatalogueDep
from app.schemas import MAX_LIMIT

router = APIRouter(tags=["edits"])


def since_instant(text: str | None) -> str | None:
    """`since` (YYYY-MM-DD, or an ISO 8601 date-time; no offset means UTC) in the stored time format."""
    if text is None:
        return None
    try:
        if len(text) == 10:
            return f"{datetime.date.fromisoformat(text):%Y-%m-%d}T00:00:00.000Z"
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidParameter(f"since must be YYYY-MM-DD or an ISO 8601 date-time, got {text!r}",
                               parameter="since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    moment = moment.astimezone(datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("/changes", summary="The change log")
def list_changes(
    request: Request,
    catalogue: CatalogueDep,
    since: Annotated[str | None, Query(max_length=40, description="Changes at or after this UTC day or instant.")] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Changes after this change id (the `next` link).")] = 0,
    entity: Annotated[Literal["site", "observation", "source", "missile", "place", "attached_border"] | None,
                      Query(description="Only this kind.")] = None,
    site_id: Annotated[str | None, Query(min_length=1, max_length=200, description="Only changes of this site.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 100,
) -> dict:
    """Every recorded change, oldest first: who, when, what, and each field's value before and after."""
    changes = read_changes(catalogue.path, up_to_id=catalogue.last_change, since=since_instant(since),
                           after_id=after, entity=entity, site_id=site_id, limit=limit)
    items = [Change(**{k: c[k] for k in Change.model_fields}).model_dump() for c in changes]
    next_link = None
    if len(items) == limit:
        next_link = str(request.url.include_query_params(after=items[-1]["id"]))
    return {"changes": items, "numberReturned": len(items), "next": next_link}
