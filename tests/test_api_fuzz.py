"""No input reaches a 500: random values for every query parameter of every route."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROUTES = ["/sites", "/reach", "/borders/distance", "/sites/sakkanmol/rings", "/sites/sakkanmol"]
PARAMETERS = ["lat", "lon", "near", "within_km", "status", "declared", "missile_class", "missile_type",
              "facility_type", "country", "border", "border_min_km", "border_max_km", "sort", "limit", "offset", "km"]
VALUES = st.one_of(
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-0", "0", "", " ", "Seoul", "mdl", "active", "SRBM",
                     "90", "-90", "180", "-180", "180.0000001", "20003.93", "1000", "1001", "\x00", "%", "${x}"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**20, max_value=10**20).map(str),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(ROUTES), params=st.dictionaries(st.sampled_from(PARAMETERS), VALUES, max_size=5))
def test_no_input_reaches_a_500(client, route, params):
    response = client.get(route, params=params)
    assert response.status_code < 500, (route, params, response.text)
    if response.status_code >= 400:
        assert set(response.json()["error"]) == {"status", "code", "message", "parameter"}
