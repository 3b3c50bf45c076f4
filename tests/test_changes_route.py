"""/changes: `since` in any offset answers the changes at or after that instant in UTC (never a 500)."""

import datetime

import pytest
from fastapi.testclient import TestClient

from app.auth import hash_token, new_token
from app.main import create_app
from app.routers.changes import since_instant
from tests.conftest import engine_settings, new_live

pytestmark = pytest.mark.contract
EDITOR_TOKEN = new_token()
EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}"}
SOURCE = "csis-bp-hoejung-ni-2022"


@pytest.fixture(scope="module")
def service(request, engine, tmp_path_factory):
    """A client of an app on a fresh catalogue on the engine holding two recorded changes."""
    live = new_live(request, engine, tmp_path_factory.mktemp("changes"))
    tokens = [{"name": "alice", "role": "editor", "sha256": hash_token(EDITOR_TOKEN)}]
    app = create_app(engine_settings(live, tokens=tokens, write_burst=1000))
    with TestClient(app, raise_server_exceptions=False) as client:
        for title in ("First report", "Second report"):
            assert client.post("/sources", json={"title": title, "publisher": "CSIS"}, headers=EDITOR).status_code == 201
        yield client


def _ids(service, since: str) -> list[int]:
    response = service.get("/changes", params={"since": since})
    assert response.status_code == 200, response.text
    return [change["id"] for change in response.json()["changes"]]


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+00:01", "0001-01-01T00:00:00+23:59",
                                   "0001-01-01T23:58:59+23:59", "0001-01-01", "0001-01-01T00:00:00Z"])
def test_since_before_year_one_in_utc_is_every_change(service, since):
    assert _ids(service, since) == [1, 2]


@pytest.mark.parametrize("since", ["9999-12-31T23:59:59-00:01", "9999-12-31T23:59:59.999999-23:59",
                                   "9999-12-31T00:00:00-12:00", "9999-12-31"])
def test_since_after_year_9999_in_utc_is_no_change(service, since):
    assert _ids(service, since) == []


@pytest.mark.parametrize("offset", ["+05:45", "-09:30", "+13:59", "-00:00", "+14:00", "-23:59"])
def test_since_in_an_odd_offset_means_the_same_instant_in_utc(service, offset):
    second = service.get("/changes").json()["changes"][1]
    at = datetime.datetime.fromisoformat(second["at"].replace("Z", "+00:00"))
    sign, hours, minutes = offset[0], *map(int, offset[1:].split(":"))
    delta = datetime.timedelta(hours=hours, minutes=minutes)
    local = (at + delta if sign == "+" else at - delta).replace(tzinfo=None)
    assert _ids(service, local.isoformat(timespec="milliseconds") + offset) == [2]
    assert since_instant(local.isoformat(timespec="milliseconds") + offset) == second["at"]


@pytest.mark.parametrize("since", ["2020-W01-1", "20200101", "2020-01-01T00", "2020-01-01 00:00:00", "2020",
                                   "2020-01-01T00:00:00+00:00:30", "2020-02-30", "2020-01-01T24:00:00Z", "0",
                                   "2020-01-01T00:00Z", "yesterday"])
def test_since_takes_only_a_day_or_an_rfc_3339_date_time(service, since):
    response = service.get("/changes", params={"since": since})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["parameter"] == "since"


@pytest.mark.parametrize("since, expected", [("2020-01-01t00:00:00z", "2020-01-01T00:00:00.000Z"),
                                             ("2020-01-01T00:00:00.123456789Z", "2020-01-01T00:00:00.123Z"),
                                             ("2020-01-01T09:00:00+09:00", "2020-01-01T00:00:00.000Z"),
                                             ("2020-01-01T00:00:00", "2020-01-01T00:00:00.000Z"),
                                             ("2020-01-01", "2020-01-01T00:00:00.000Z")])
def test_since_forms_read_as_their_utc_instant(since, expected):
    assert since_instant(since) == expected
