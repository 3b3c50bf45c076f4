"""Vocabularies, list encoding, id and cell rules, the site's status: shared by reads, writes and the build.

A list cell is stored as a compact JSON array of strings (as GDAL writes a StringList field in a
GeoPackage), so any item text round-trips, `;` included; an empty list is NULL (encode_list, decode_list).
A list written as text for people is its items joined by TEXT_LIST_SEPARATOR: the cells of the CSV sources in
geodata/sources, schema-1 stored cells, KML values (join_text_list, split_text_list).
"""

from __future__ import annotations

import datetime
import json
import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from json.encoder import encode_basestring

import pandas as pd

MISSILE_CLASSES = ("SRBM", "MRBM", "IRBM", "ICBM", "SLBM")
VOCAB = {
    "coord_confidence": ("exact", "approximate", "unknown"),
    "coord_precision_basis": ("source_stated", "source_extent", "sources_differ", "assessed"),
    "facility_type": (
        "missile_operating_base", "missile_base", "launch_site", "launch_area", "test_site", "space_launch_site",
        "submarine_base", "nuclear_test_site", "nuclear_complex", "support_facility", "airfield",
    ),
    "declared_status": ("undeclared", "declared", "acknowledged", "unknown"),
    "unit_size": (
        "battalion", "battalion-or-regiment", "regiment", "regiment-or-brigade", "brigade", "reinforced-brigade",
        "brigade-or-larger",
    ),
    "belt": ("first", "second", "strategic"),
    "kind": ("imagery", "report", "event"),
    "status_seen": ("active", "inactive", "under_construction", "unknown"),
    "range_kind": ("maximum", "observed_flight", "claimed", "estimate"),
    "range_max_qualifier": ("at_least",),  # "3,000+ km", "over 15,000 km": the figure is a lower bound
    "confidence": ("normal", "low"),
    "place_kind": ("capital", "territorial_capital", "city", "military_base", "air_base", "airfield", "reference_point"),
    "target_kind": ("place", "border"),
}
STATUSES = VOCAB["status_seen"]
CNS_PLACEHOLDER = "unknown"  # the CNS database's facility for launches whose site was not reported: never a location
DECLARED = VOCAB["declared_status"]

# Site fields a client sends as lists, and every stored list column (JSON arrays) by table.
LIST_FIELDS = frozenset({"aliases", "missile_types", "missile_classes_reported", "source_ids"})
LIST_COLUMNS = {
    "sites": ("aliases", "missile_types", "missile_classes_reported", "source_ids", "missile_classes"),
    "missiles": ("aliases", "source_ids"),
    "places": ("aliases",),
    "borders": ("countries",),
}
SITE_LIST_COLUMNS = frozenset(LIST_COLUMNS["sites"])
MISSILE_LIST_COLUMNS = frozenset(LIST_COLUMNS["missiles"])
PLACE_LIST_COLUMNS = frozenset(LIST_COLUMNS["places"])
LIST_COLUMN_NAMES = frozenset(c for columns in LIST_COLUMNS.values() for c in columns)  # a list in every table

TEXT_LIST_SEPARATOR = "; "
PARTIAL_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
MAX_ID_LENGTH = 60


def encode_list(items: Iterable[str] | None) -> str | None:
    """A list as its stored cell: a compact JSON array (`["a","b; c"]`), None for an empty list.

    >>> encode_list(["Foo; Bar", "Ünsan"])
    '["Foo; Bar","Ünsan"]'
    >>> encode_list([]) is None
    True
    """
    items = list(items or ())
    if not items:
        return None
    if all(type(item) is str for item in items):  # the common case, ~5x faster than json.dumps; the same text
        return "[" + ",".join(map(encode_basestring, items)) + "]"
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


def decode_list(cell) -> list[str]:
    """A stored list cell as its items: a JSON array read exactly; None, NaN or blank as [].

    A list passes through. Text that is not a JSON array of strings is read the legacy way (schema 1 cells,
    and lists typed by people in CSV cells or GIS attributes): split on `;`, items stripped, blanks dropped.

    >>> decode_list('["Foo; Bar","x"]'), decode_list(None), decode_list("KOR; PRK")
    (['Foo; Bar', 'x'], [], ['KOR', 'PRK'])
    """
    if isinstance(cell, (list, tuple)):
        return [str(item) for item in cell]
    if cell is None or cell is pd.NA or (isinstance(cell, float) and math.isnan(cell)):
        return []
    text = str(cell).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError:
            items = None
        if isinstance(items, list) and all(isinstance(item, str) for item in items):
            return items
    return split_text_list(text)


def split_text_list(text: str | None) -> list[str]:
    """A list written as text (`a; b`) as its items: split on `;`, stripped, blanks dropped.

    >>> split_text_list("KOR; PRK"), split_text_list("a;b ;; c"), split_text_list("")
    (['KOR', 'PRK'], ['a', 'b', 'c'], [])
    """
    return [item.strip() for item in (text or "").split(";") if item.strip()]


def join_text_list(items: Iterable) -> str:
    """A list as text for people: its items joined by TEXT_LIST_SEPARATOR (split_text_list reads it back)."""
    return TEXT_LIST_SEPARATOR.join(str(item) for item in items)


def is_text_list(text: str) -> bool:
    """Whether a text is exactly a list written by join_text_list (no blank, padded or `;`-holding item)."""
    return join_text_list(split_text_list(text)) == text


def site_classes(missile_types: Iterable[str], reported: Iterable[str], classes: dict[str, str]) -> list[str]:
    """A site's missile classes: the sorted union of its missiles' classes and the classes reported without a type."""
    return sorted({classes[m] for m in missile_types if m in classes} | set(reported))


NO_STATUS = ("unknown", None)  # a site none of whose observations saw a status


def latest_status(observations: Iterable[tuple[str, str, str, str]]) -> dict[str, tuple[str, str]]:
    """Per site, (status_seen, observed_on) of its latest observation that saw a status: the one place this is derived.

    Each observation is (site_id, observed_on, id, status_seen); the latest is the highest (observed_on, id), compared
    as text; an `unknown` observation never counts. A site absent from the answer has NO_STATUS.

    >>> latest_status([("a", "2020", "a-1", "active"), ("a", "2020", "a-2", "inactive"), ("a", "2021", "a-0", "unknown")])
    {'a': ('inactive', '2020')}
    """
    latest: dict[str, tuple[str, str, str]] = {}
    for site_id, observed_on, observation_id, status in observations:
        if status == "unknown":
            continue
        key = (observed_on, observation_id, status)
        if site_id not in latest or key[:2] > latest[site_id][:2]:
            latest[site_id] = key
    return {site_id: (status, on) for site_id, (on, _, status) in latest.items()}


# --- cell rules shared by the build's source checks and the API's models: (value, context) -> problem or None ---


def date(value: str, _ctx: dict) -> str | None:
    """Blank, or an ISO date, possibly partial (YYYY, YYYY-MM, YYYY-MM-DD)."""
    if not value:
        return None
    if PARTIAL_DATE.match(value):
        padded = value + "-01" * (2 - value.count("-"))
        try:
            datetime.date.fromisoformat(padded)
            return None
        except ValueError:
            pass
    return f"{value!r} is not an ISO date (YYYY, YYYY-MM or YYYY-MM-DD)"


def url(value: str, _ctx: dict) -> str | None:
    """Blank or an http(s) URL without spaces."""
    ok = not value or (value.startswith(("http://", "https://")) and " " not in value)
    return None if ok else f"{value!r} is not an http(s) URL"


def alpha3(blank_ok: bool) -> Callable[[str, dict], str | None]:
    """An ISO 3166-1 alpha-3 code (or blank when allowed)."""
    def rule(value: str, _ctx: dict) -> str | None:
        import pycountry  # its tables load on the first check, not with every module that shares these rules

        if (blank_ok and not value) or (value.isupper() and pycountry.countries.get(alpha_3=value)):
            return None
        return f"{value!r} is not an ISO 3166-1 alpha-3 code"
    return rule


def slugify(text: str, fallback: str) -> str:
    """A lowercase ASCII slug of a text, at most MAX_ID_LENGTH long (the fallback when nothing ASCII remains)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")[:MAX_ID_LENGTH].strip("-")
    return slug or fallback
