"""The change log, and the catalogue as it was known at the end of a past day (`as_of`)."""

from __future__ import annotations

import calendar
import datetime
import json

import geopandas as gpd
import pandas as pd
import shapely

from app.storage import as_store
from app.store import has_table
from app import vocab
from app.vocab import SITE_LIST_COLUMNS, decode_list, encode_list

CHANGE_COLUMNS = ("id", "at", "actor", "action", "entity", "entity_id", "site_id", "diff")


def period_start(partial: str) -> datetime.date:
    """The first day of a partial ISO date (YYYY, YYYY-MM or YYYY-MM-DD)."""
    return datetime.date.fromisoformat(partial + "-01" * (2 - partial.count("-")))


def period_end(partial: str | None) -> datetime.date | None:
    """The last day of a partial ISO date (`2018` -> 2018-12-31, `2018-02` -> 2018-02-28); None if blank."""
    if not isinstance(partial, str) or not partial:
        return None
    parts = [int(p) for p in partial.split("-")]
    year, month = parts[0], parts[1] if len(parts) > 1 else 12
    day = parts[2] if len(parts) > 2 else calendar.monthrange(year, month)[1]
    return datetime.date(year, month, day)


def day_end(day: datetime.date) -> str:
    """The first instant after a UTC day, in the stored time format (changes at or after it came later)."""
    return f"{day + datetime.timedelta(days=1):%Y-%m-%d}T00:00:00.000Z"


def read_changes(source, *, up_to_id: int, since: str | None = None, after_id: int = 0, entity: str | None = None,
                 site_id: str | None = None, limit: int | None = None) -> list[dict]:
    """Recorded changes, oldest first, with `before`/`after` records, filtered as asked."""
    where, values = ["id <= ?", "id > ?"], [up_to_id, after_id]
    for column, value in (("at >= ?", since), ("entity = ?", entity), ("site_id = ?", site_id)):
        if value is not None:
            where.append(column)
            values.append(value)
    sql = f"SELECT {', '.join(CHANGE_COLUMNS)}, before, after FROM changes WHERE {' AND '.join(where)} ORDER BY id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    with as_store(source).reading() as connection:
        if not has_table(connection, "changes"):
            return []
        rows = connection.execute(sql, values).fetchall()
    return [_change(row) for row in rows]


def _change(row: tuple) -> dict:
    """A stored change row as a dict with its JSON decoded."""
    change = dict(zip(CHANGE_COLUMNS + ("before", "after"), row))
    for key in ("diff", "before", "after"):
        change[key] = None if change[key] is None else json.loads(change[key])
    return change


def state_at(current: dict[str, dict], changes: list[dict], instant: str) -> dict[str, dict]:
    """Each record as it stood just before `instant`: the latest change's `after`, else the first's `before`."""
    by_id: dict[str, list[dict]] = {}
    for change in changes:
        by_id.setdefault(change["entity_id"], []).append(change)
    states = {}
    for record_id in dict.fromkeys([*current, *by_id]):
        logged = by_id.get(record_id, [])
        done = [c for c in logged if c["at"] < instant]
        state = done[-1]["after"] if done else (logged[0]["before"] if logged else current.get(record_id))
        if state is not None:
            states[record_id] = state
    return states


def site_records(sites: gpd.GeoDataFrame) -> dict[str, dict]:
    """Site rows as the records the change log stores (lon/lat, lists as lists)."""
    records = {}
    for site_id, row in sites.iterrows():
        record = {k: (None if _missing(v) else v) for k, v in row.items() if k != "geometry"}
        point = row.geometry
        located = isinstance(point, shapely.Point) and not point.is_empty
        record.update(lon=point.x if located else None, lat=point.y if located else None)
        for field in SITE_LIST_COLUMNS:
            record[field] = decode_list(record.get(field))
        records[site_id] = record
    return records


def sites_frame(records: list[dict], like: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Site records as a sites layer with the columns and types of `like` (lists as JSON arrays; a list logged as
    `; `-joined text by an older version, such as missile_classes, is read as schema 1 wrote it)."""
    rows = []
    for record in records:
        row = {k: (encode_list(decode_list(v)) if k in SITE_LIST_COLUMNS else v) for k, v in record.items()}
        located = record.get("lon") is not None
        row["geometry"] = shapely.Point(record["lon"], record["lat"]) if located else None
        rows.append(row)
    columns = [c for c in like.columns]
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    for column in columns:
        if column != "geometry":
            frame[column] = frame[column].astype(like[column].dtype)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs=like.crs).set_index("id", drop=False)


def known_since(site: dict, observations: pd.DataFrame, sources: pd.DataFrame) -> datetime.date | None:
    """When a bundled site was first reported: its earliest dated observation or cited source (None if undated)."""
    dates = [period_end(d) for d in observations.loc[observations["site_id"] == site["id"], "observed_on"]]
    cited = [s for s in site.get("source_ids") or [] if s in sources.index]
    dates += [period_end(sources.loc[s, "published_on"]) for s in cited]
    dates = [d for d in dates if d is not None]
    return min(dates) if dates else None


def observations_at(observations: pd.DataFrame, day: datetime.date) -> pd.DataFrame:
    """Observations recorded by the end of the day and observed (to the end of their period) by then."""
    instant = day_end(day)
    recorded = observations["recorded_at"].isna() | (observations["recorded_at"] < instant)
    seen = observations["observed_on"].map(lambda d: period_end(d) is not None and period_end(d) <= day)
    return observations[recorded & seen]


def latest_status(observations: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Per site, (status_seen, observed_on) of its latest observation that saw a status (vocab.latest_status)."""
    columns = (observations[c] for c in ("site_id", "observed_on", "id", "status_seen"))
    return vocab.latest_status(zip(*columns))


def _missing(value) -> bool:
    """Whether a cell is NULL (None, NaN or NA)."""
    return value is None or value is pd.NA or (isinstance(value, float) and value != value)
