"""Map inputs shared by the map and browser tests: real borders and countries, hostile text."""

from __future__ import annotations

from datetime import datetime, timezone

import geopandas as gpd
import pandas as pd

from app.maps import site_map

HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(2)</script>",
    "${document.title=7*7}",
    "`",
    "back`tick ${alert(5)} \\u0041 \\",
    "\" onmouseover=\"alert(6)",
    "{{ 7*191 }}{{ range.__name__ }}",
    "{% for x in range(3) %}loop{% endfor %}{# gone #}",
)
HOSTILE_URL = "javascript:alert(3)"
GENERATED_AT = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
HOSTILE_QUERY = "near=${document.title=7*7}</title><script>alert(8)</script>&x={{ 7*191 }}{% raw %}"


BENIGN = tuple(f"plain name {i}" for i in range(len(HOSTILE)))


def hostile_sites(catalogue, texts=HOSTILE) -> gpd.GeoDataFrame:
    """Located catalogue sites renamed with the given texts (names, aliases, notes)."""
    located = catalogue.sites[~catalogue.sites.geometry.isna()].head(len(texts)).copy()
    located["name"] = list(texts[: len(located)])
    located["aliases"] = texts[0] + ";" + texts[2]
    located["notes"] = list(reversed(texts[: len(located)]))
    return located


def hostile_sources(texts=HOSTILE, url=HOSTILE_URL) -> pd.DataFrame:
    """A sources table whose title, publisher and URL are the given texts."""
    return pd.DataFrame({
        "id": ["evil-source", "good-source"],
        "title": [texts[1], "A real report"],
        "publisher": [texts[2], "CSIS"],
        "published_on": ["2019-01-21", "2019-01-21"],
        "url": [url, "https://example.org/report?a=1&b=2"],
    })


def hostile_rings(catalogue, sites, texts=HOSTILE) -> list[dict]:
    """One real range ring per site, with the given missile name."""
    rings = []
    for site_id, site in sites.iterrows():
        for ring in catalogue.site_rings(site_id)[:1]:
            rings.append({**ring, "name": texts[4], "site_id": site_id, "site_name": site["name"]})
    return rings


def hostile_map(catalogue, texts=HOSTILE, *, url=HOSTILE_URL, query=HOSTILE_QUERY):
    """A map whose every text field that comes from data is one of `texts` (hostile unless told)."""
    sites = hostile_sites(catalogue, texts)
    observations = pd.DataFrame({
        "site_id": [sites.index[0]], "observed_on": ["2019-01-21"], "kind": [texts[0]],
        "status_seen": [texts[2]], "source_id": ["evil-source"],
    })
    return site_map(
        sites, borders=catalogue.borders, countries=catalogue.countries, rings=hostile_rings(catalogue, sites, texts),
        centre=(126.978, 37.5665), centre_label=texts[1], radius_km=300, query=query,
        data_version=texts[3], sources=hostile_sources(texts, url), generated_at=GENERATED_AT,
        border_distances={site_id: {"mdl": 85.0} for site_id in sites.index}, observations=observations,
        site_sources={site_id: ["evil-source", "good-source"] for site_id in sites.index},
    )


def hostile_city_and_launch_layers(texts=HOSTILE) -> tuple[dict, dict]:
    """A cities layer and a launches layer (`city_layer`, `launch_layer`) whose every text is one of `texts`."""
    import shapely

    from app.maps import city_layer, launch_layer

    count = len(texts)
    rows = pd.DataFrame({"name": list(texts), "country": list(reversed(texts)),
                         "population": [15_000 * (i + 1) ** 2 for i in range(count)],
                         "lon": [126.0 + 0.3 * i for i in range(count)], "lat": [38.0] * count,
                         "source_id": ["evil-source"] * count}, index=[f"{t}#{i}" for i, t in enumerate(texts)])
    pairs = pd.DataFrame({"city_id": list(rows.index), "site_id": [f"site-{i}" for i in range(count)],
                          "missile_id": [f"missile-{i}" for i in range(count)],
                          "distance_km": [10.0 * (i + 1) for i in range(count)]})
    cities = city_layer(rows, pairs, site_names={f"site-{i}": t for i, t in enumerate(texts)},
                        missile_labels={f"missile-{i}": t for i, t in enumerate(reversed(texts))})
    launches = gpd.GeoDataFrame({
        "launched_on": [f"{2000 + i}-01-0{1 + i % 9}" for i in range(count)], "missile": list(texts),
        "facility_name": list(reversed(texts)), "outcome": list(texts), "source_id": ["evil-source"] * count,
    }, geometry=[shapely.Point(125.5 + 0.3 * i, 39.0) for i in range(count)], index=[f"launch-{i}" for i in range(count)])
    return cities, launch_layer(launches)
