"""The answer path's cached feature bytes give the same JSON as the pandas query and encoders they replace."""

import json

import orjson
import pytest

from app.queries import BorderBand, Centre, has_point, SiteFilter
from app.formats import sites_geojson

SEOUL = "Seoul"
QUERIES = [
    {}, {"centre": SEOUL}, {"centre": SEOUL, "within_km": 300}, {"centre": SEOUL, "within_km": 300, "sort": "name"},
    {"centre": SEOUL, "sort": "name", "limit": 3, "offset": 2}, {"limit": 5, "offset": 4}, {"offset": 500},
    {"centre": Centre(179.9, 0.0), "within_km": 20_000}, {"centre": Centre(127.0, 39.0), "within_km": 0.001},
    {"where": SiteFilter(status=("active",))}, {"band": BorderBand("mdl", 50, 90), "sort": "border"},
    {"centre": SEOUL, "within_km": 200, "band": BorderBand("mdl", None, 90)},
]


@pytest.mark.parametrize("query", QUERIES, ids=[str(n) for n in range(len(QUERIES))])
def test_sites_bytes_are_the_pandas_answer(catalogue, query):
    query = {**query, "centre": catalogue.place(SEOUL)} if query.get("centre") == SEOUL else query
    limit, offset = query.get("limit", 100), query.get("offset", 0)
    old = json.loads(json.dumps(sites_geojson(catalogue, catalogue.find_sites(**query), limit=limit, offset=offset)))
    new = orjson.loads(catalogue.answers.sites_body(catalogue.answers.select(**query), limit=limit, offset=offset))
    assert new == old
    assert list(new) == list(old)
    assert [list(f["properties"]) for f in new["features"]] == [list(f["properties"]) for f in old["features"]]


def test_ogc_heads_write_empty_lists_as_null(catalogue):
    answers = catalogue.answers
    selection = answers.select(limit=1000)
    features = orjson.loads(b"[" + answers.features(selection, ogc=True) + b"]")
    plain = orjson.loads(b"[" + answers.features(selection) + b"]")
    assert len(features) == len(catalogue.sites)
    emptied = [(a["id"], k) for a, b in zip(features, plain) for k, v in b["properties"].items() if v == []]
    assert emptied, "the bundled catalogue has sites with an empty list"
    assert all(dict(zip([f["id"] for f in features], features))[i]["properties"][k] is None for i, k in emptied)


def test_bbox_selection_matches_shapely(catalogue):
    import shapely
    answers = catalogue.answers
    for boxes in ([(124, 37, 131, 43)], [(125, 37.5, 127.2, 38.5)], [(170, -90, 180, 90), (-180, -90, -170, 90)]):
        got = [answers.ids[p] for p in answers.select(limit=1000, boxes=boxes).positions]
        shapes = [shapely.box(*b) for b in boxes]
        want = [i for i in catalogue.find_sites(limit=1000).sites.index
                if has_point(catalogue.sites.loc[i].geometry)
                and any(catalogue.sites.loc[i].geometry.intersects(s) for s in shapes)]
        assert got == want


OGC_QUERIES = ["", "bbox=124,37,131,43&limit=100", "bbox=124,37,131,43&limit=3&offset=2", "bbox=170,-90,-170,90",
               "lat=39&lon=125.7&within_km=300", "lat=39&lon=125.7", "limit=2000", "offset=20",
               "bbox=-180,-90,180,90&lat=39&lon=125.7&within_km=3000&limit=5", "bbox=125,37.5,127.2,38.5"]


@pytest.mark.parametrize("query", OGC_QUERIES)
def test_ogc_sites_items_from_cached_bytes_are_the_pandas_answer(client, monkeypatch, query):
    from app.routers import ogc

    url = f"/collections/sites/items?{query}"
    fast, again = client.get(url), client.get(url)  # the second from the kept page and links
    monkeypatch.setattr(ogc, "_site_items_fast", lambda catalogue, request: None)
    slow = client.get(url)
    assert fast.status_code == again.status_code == slow.status_code == 200
    answers = [r.json() for r in (fast, again, slow)]
    for answer in answers:
        answer.pop("timeStamp")
    assert answers[0] == answers[1] == answers[2]
    assert list(answers[0]) == list(answers[2])
