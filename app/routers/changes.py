"""/changes: the change log, oldest first, paged by the id of the last change seen."""

import datetime
import re
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from app.errors import InvalidParameter
from app.history import read_changes
from app.models import Change
from app.routers import CatalogueDep
from app.schemas import MAX_LIMIT

router = APIRouter(tags=["edits"])
AFTER_EVERY_CHANGE = "~"
"""A `since` bound no stored instant reaches (`~` sorts after every digit): answered with no change, never asked of a
store (PostGIS keeps the times as timestamptz, which `~` is not)."""


SINCE_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                 r"([Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})?)?$")
"""A day, YYYY-MM-DD, or an RFC 3339 date-time (its offset may be left out, meaning UTC)."""


def since_instant(text: str | None) -> str | None:
    """`since` (YYYY-MM-DD, or an RFC 3339 date-time; no offset means UTC) in the stored time format."""
    if text is None:
        return None
    try:
        if not re.fullmatch(SINCE_PATTERN, text):
            raise ValueError(text)
        if len(text) == 10:
            return f"{datetime.date.fromisoformat(text):%Y-%m-%d}T00:00:00.000Z"
        moment = datetime.datetime.fromisoformat(text.upper())
    except ValueError:
        raise InvalidParameter(f"since must be YYYY-MM-DD or an RFC 3339 date-time, got {text!r}",
                               parameter="since") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    try:
        moment = moment.astimezone(datetime.timezone.utc)
    except OverflowError:  # year 1 or 9999 pushed past the calendar by its offset: before or after every change
        return None if moment.year == 1 else AFTER_EVERY_CHANGE
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@router.get("/changes", summary="The change log")
def list_changes(
    request: Request,
    catalogue: CatalogueDep,
    since: Annotated[str | None, Query(
        max_length=40, pattern=SINCE_PATTERN,
        description="Changes at or after this UTC day (YYYY-MM-DD) or RFC 3339 date-time (no offset: UTC).",
    )] = None,
    after: Annotated[int, Query(ge=0, le=2**62, description="Changes after this change id (the `next` link).")] = 0,
    entity: Annotated[Literal["site", "observation", "source", "missile", "place", "attached_border"] | None,
                      Query(description="Only this kind.")] = None,
    site_id: Annotated[str | None, Query(min_length=1, max_length=200, description="Only changes of this site.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = 100,
) -> dict:
    """Every recorded change, oldest first: who, when, what, and each field's value before and after."""
    since_at = since_instant(since)
    changes = [] if since_at == AFTER_EVERY_CHANGE else read_changes(
        catalogue.store, up_to_id=catalogue.last_change, since=since_at, after_id=after, entity=entity,
        site_id=site_id, limit=limit)
    items = [Change(**{k: c[k] for k in Change.model_fields}).model_dump() for c in changes]
    next_link = None
    if len(items) == limit:
        next_link = str(request.url.include_query_params(after=items[-1]["id"]))
    return {"changes": items, "numberReturned": len(items), "next": next_link}
