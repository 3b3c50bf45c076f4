"""Access: bearer tokens with reader and editor roles, the write rate limit, the body cap, and every write closed."""

import http.client
import json
import re
import shutil
import threading
import time

import pydantic
import pytest
import uvicorn
from fastapi import Body, Depends, FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.auth import (ANONYMOUS, READ_ACCESS, Principal, RateLimiter, _BodyLimit, hash_token, install_access,
                      new_token, require_editor)
from app.cli import cli
from app.errors import install_error_handlers
from app.main import create_app
from app.settings import GEODATA_DIR, Settings

# The write routes the service must have, as (METHOD, path template). Fill in as write routes land,
# e.g. {("POST", "/sites"), ("PATCH", "/sites/{site_id}"), ("DELETE", "/sites/{site_id}"), ...}.
EXPECTED_WRITE_ROUTES: set[tuple[str, str]] = {
    ("POST", "/sites"), ("PATCH", "/sites/{site_id}"), ("DELETE", "/sites/{site_id}"),
    ("POST", "/sites/{site_id}/observations"), ("POST", "/sources"), ("PATCH", "/sources/{source_id}"),
}

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
EDITOR_TOKEN, READER_TOKEN = new_token(), new_token()
TOKENS = [
    {"name": "alice", "role": "editor", "sha256": hash_token(EDITOR_TOKEN)},
    {"name": "bob", "role": "reader", "sha256": hash_token(READER_TOKEN)},
]
EDITOR = {"Authorization": f"Bearer {EDITOR_TOKEN}"}
READER = {"Authorization": f"Bearer {READER_TOKEN}"}


def _settings(**values) -> Settings:
    """Settings with the two test tokens, ignoring any local .env."""
    return Settings(_env_file=None, tokens=TOKENS, **values)


def _app(**values) -> FastAPI:
    """A small app using the access dependencies as the service's routers do."""
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/things")
    def create(payload: dict = Body(...), who: Principal = Depends(require_editor)) -> dict:
        return {"who": who.name, "size": len(json.dumps(payload))}

    @app.delete("/things/{thing_id}")
    def retire(thing_id: str, who: Principal = Depends(require_editor)) -> dict:
        return {"who": who.name, "retired": thing_id}

    @app.get("/things", dependencies=[READ_ACCESS])
    def things() -> list:
        return []

    @app.get("/health", dependencies=[READ_ACCESS])
    def health() -> dict:
        return {"status": "ok"}

    install_access(app, _settings(**values))
    return app


@pytest.fixture
def client():
    with TestClient(_app(), raise_server_exceptions=False) as test_client:
        yield test_client


def _is_error(response, status: int, code: str) -> None:
    """The house error shape with this status and code."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code), error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": f"Bearer {new_token()}"},
        {"Authorization": f"Basic {EDITOR_TOKEN}"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Bearer {EDITOR_TOKEN} extra"},
        {"Authorization": "Bearer not a token"},
        {"Authorization": "Bearer {}"},
        {"Authorization": EDITOR_TOKEN},
    ],
    ids=["none", "unknown", "basic", "empty", "two-words", "spaces", "braces", "no-scheme"],
)
def test_write_without_a_valid_token_is_401(client, headers):
    for response in (client.post("/things", json={"a": 1}, headers=headers),
                     client.delete("/things/x", headers=headers)):
        _is_error(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_reader_token_on_a_write_is_403_and_editor_token_is_200(client):
    _is_error(client.post("/things", json={"a": 1}, headers=READER), 403, "forbidden")
    _is_error(client.delete("/things/x", headers=READER), 403, "forbidden")
    assert client.post("/things", json={"a": 1}, headers=EDITOR).json()["who"] == "alice"
    assert client.delete("/things/x", headers={"Authorization": f"bearer {EDITOR_TOKEN}"}).status_code == 200


def test_reads_are_open_by_default(client):
    assert client.get("/things").status_code == 200
    assert client.get("/things", headers={"Authorization": "Bearer wrong"}).status_code == 200


def test_closed_reads_need_a_token_but_health_stays_open():
    with TestClient(_app(read_access="token")) as closed:
        _is_error(closed.get("/things"), 401, "unauthorized")
        _is_error(closed.get("/things", headers={"Authorization": f"Bearer {new_token()}"}), 401, "unauthorized")
        assert closed.get("/things").headers["WWW-Authenticate"].startswith("Bearer")
        assert closed.get("/things", headers=READER).status_code == 200
        assert closed.get("/things", headers=EDITOR).status_code == 200
        assert closed.get("/health").status_code == 200


def test_writes_past_the_burst_answer_429_with_retry_after():
    with TestClient(_app(write_burst=3, write_rate_per_minute=2)) as limited:
        assert [limited.delete("/things/x", headers=EDITOR).status_code for _ in range(3)] == [200] * 3
        response = limited.delete("/things/x", headers=EDITOR)
        _is_error(response, 429, "too_many_requests")
        assert response.headers["Retry-After"].isdigit() and 1 <= int(response.headers["Retry-After"]) <= 30
        _is_error(limited.delete("/things/x", headers=READER), 403, "forbidden")  # readers never spend a write


def test_rate_limiter_refills_at_the_rate_and_counts_per_key():
    now = [0.0]
    limiter = RateLimiter(per_minute=60, burst=2, clock=lambda: now[0])
    assert [limiter.take("a"), limiter.take("a")] == [0, 0]
    assert limiter.take("a") == pytest.approx(1.0)
    assert limiter.take("b") == 0
    now[0] = 0.5
    assert limiter.take("a") == pytest.approx(0.5)
    now[0] = 1.0
    assert limiter.take("a") == 0
    now[0] = 100.0
    assert [limiter.take("a") for _ in range(3)][-1] > 0  # never more than the burst banked


def test_rate_limiter_is_thread_safe():
    limiter = RateLimiter(per_minute=1e-6, burst=50)
    allowed = []

    def hammer():
        allowed.extend(limiter.take("alice") == 0 for _ in range(100))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(allowed) == 50


def test_body_over_the_cap_by_content_length_is_413():
    with TestClient(_app(max_body_bytes=100)) as small:
        _is_error(small.post("/things", json={"a": "x" * 200}, headers=EDITOR), 413, "payload_too_large")
        _is_error(small.post("/things", json={"a": "x" * 200}), 413, "payload_too_large")
        assert small.post("/things", json={"a": "x" * 50}, headers=EDITOR).status_code == 200


def test_chunked_body_over_the_cap_is_413_and_under_it_arrives_whole():
    with TestClient(_app(max_body_bytes=100)) as small:
        over = small.post("/things", content=(b'{"a": "' if i == 0 else b"x" * 30 for i in range(6)), headers=EDITOR)
        _is_error(over, 413, "payload_too_large")
        under = small.post("/things", content=iter([b'{"a": ', b'"', b"x" * 40, b'"}']),
                           headers={**EDITOR, "Content-Type": "application/json"})
        assert under.status_code == 200 and under.json()["size"] == len(json.dumps({"a": "x" * 40}))


@pytest.mark.anyio
async def test_streamed_body_stops_being_read_at_the_cap():
    chunks = [{"type": "http.request", "body": b"x" * 40, "more_body": True} for _ in range(10)]
    read, sent = [], []

    async def receive():
        read.append(chunks.pop(0))
        return read[-1]

    async def send(message):
        sent.append(message)

    async def never(scope, receive, send):
        raise AssertionError("the app must not run")

    await _BodyLimit(never, 100, drain_bytes=100)({"type": "http", "method": "POST", "path": "/", "headers": []},
                                                  receive, send)
    assert len(read) == 6 and sent[0]["status"] == 413  # 3 chunks pass the cap, 3 more are drained, 4 never read
    assert json.loads(sent[1]["body"])["error"]["code"] == "payload_too_large"


@pytest.fixture
def anyio_backend():
    return "asyncio"


def test_chunked_body_over_the_cap_over_a_real_socket_is_413():
    server = uvicorn.Server(uvicorn.Config(_app(max_body_bytes=1000), host="127.0.0.1", port=0, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        body = (b'{"a": "' if i == 0 else b"x" * 500 for i in range(10))
        connection.request("POST", "/things", body=body, headers={**EDITOR, "Content-Type": "application/json"},
                           encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "payload_too_large"
    finally:
        server.should_exit = True
        thread.join(10)


def test_settings_read_tokens_from_the_environment(monkeypatch):
    monkeypatch.setenv("MISSILE_SITES_TOKENS", json.dumps([{**TOKENS[0], "sha256": TOKENS[0]["sha256"].upper()}]))
    monkeypatch.setenv("MISSILE_SITES_READ_ACCESS", "token")
    settings = Settings(_env_file=None)
    assert settings.read_access == "token"
    assert [(t.name, t.role, t.sha256) for t in settings.tokens] == [("alice", "editor", hash_token(EDITOR_TOKEN))]
    assert Settings(_env_file=None, tokens=[]).tokens == [] and Settings(_env_file=None).max_body_bytes == 1 << 20


@pytest.mark.parametrize(
    ("tokens", "named"),
    [
        ([{**TOKENS[0], "role": "admin"}], "role"),
        ([{**TOKENS[0], "sha256": "abc"}], "sha256"),
        ([{**TOKENS[0], "sha256": "g" * 64}], "sha256"),
        ([{**TOKENS[0], "name": ""}], "name"),
        ([{**TOKENS[0], "token": EDITOR_TOKEN}], "token"),
        ([TOKENS[0], {**TOKENS[1], "name": "alice"}], "duplicate name alice"),
        ([TOKENS[0], {**TOKENS[1], "sha256": TOKENS[0]["sha256"]}], "duplicate sha256"),
    ],
)
def test_bad_token_entries_stop_start_up_with_a_clear_error(monkeypatch, tokens, named):
    monkeypatch.setenv("MISSILE_SITES_TOKENS", json.dumps(tokens))
    with pytest.raises(pydantic.ValidationError, match=named):
        Settings(_env_file=None)


@pytest.mark.parametrize("values", [{"read_access": "closed"}, {"write_rate_per_minute": 0},
                                    {"write_burst": 0}, {"max_body_bytes": 0}])
def test_bad_access_settings_are_rejected(values):
    with pytest.raises(pydantic.ValidationError):
        Settings(_env_file=None, **values)


def test_tokens_never_start_like_an_option():
    tokens = {new_token() for _ in range(2000)}  # one in 64 raw URL-safe tokens starts with "-"
    assert len(tokens) == 2000 and all(t.startswith("ms_") and len(t) == 46 for t in tokens)


def test_cli_token_create_prints_a_token_and_its_entry():
    result = CliRunner().invoke(cli, ["token", "create", "--name", "carol", "--role", "editor"])
    assert result.exit_code == 0, result.output
    token, entry = result.stdout.strip().splitlines()
    assert json.loads(entry) == {"name": "carol", "role": "editor", "sha256": hash_token(token)}
    again = CliRunner().invoke(cli, ["token", "hash", token])
    assert again.exit_code == 0 and again.stdout.strip() == hash_token(token)


def test_cli_token_create_rejects_bad_input():
    assert CliRunner().invoke(cli, ["token", "create", "--name", "a b", "--role", "editor"]).exit_code == 2
    assert CliRunner().invoke(cli, ["token", "create", "--name", "carol", "--role", "admin"]).exit_code == 2


def test_a_token_the_cli_issued_opens_writes():
    created = CliRunner().invoke(cli, ["token", "create", "--name", "carol", "--role", "editor"])
    token, entry = created.stdout.strip().splitlines()
    app = FastAPI()
    install_error_handlers(app)
    app.delete("/things/{thing_id}")(lambda thing_id, who=Depends(require_editor): {"who": who.name})
    install_access(app, Settings(_env_file=None, tokens=[json.loads(entry)]))
    with TestClient(app) as fresh:
        assert fresh.delete("/things/x", headers={"Authorization": f"Bearer {token}"}).json() == {"who": "carol"}


def test_dependencies_fail_closed_without_install_access():
    app = FastAPI()
    install_error_handlers(app)
    app.delete("/things/{thing_id}")(lambda thing_id, who=Depends(require_editor): {"who": who.name})
    with TestClient(app, raise_server_exceptions=False) as bare:
        assert bare.delete("/things/x", headers=EDITOR).status_code == 500


def test_anonymous_is_not_an_editor():
    assert ANONYMOUS.role not in ("reader", "editor")


def _api_routes(routes, prefix: str = ""):
    """Every APIRoute with its full path, looking inside included routers (FastAPI may include them lazily)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield prefix + route.path, route
        elif hasattr(route, "original_router"):
            yield from _api_routes(route.original_router.routes, prefix + route.include_context.prefix)


def _write_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (METHOD, path) of the app that writes."""
    return {(method, path) for path, route in _api_routes(app.routes) for method in route.methods & WRITE_METHODS}


def test_every_write_route_is_closed(tmp_path):
    live = tmp_path / "catalogue.gpkg"
    shutil.copyfile(GEODATA_DIR / "catalogue.gpkg", live)
    settings = _settings(gpkg=live, seed_gpkg=GEODATA_DIR / "catalogue.gpkg")
    app = create_app(settings)
    assert getattr(app.state, "access", None) is not None, "create_app must install access control"
    found = _write_routes(app)
    assert EXPECTED_WRITE_ROUTES <= found, EXPECTED_WRITE_ROUTES - found
    with TestClient(app, raise_server_exceptions=False) as service:
        for method, path in sorted(found):
            url = re.sub(r"\{[^}]+\}", "dummy", path)
            anonymous = service.request(method, url, json={})
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            assert anonymous.headers["WWW-Authenticate"].startswith("Bearer"), (method, path)
            reader = service.request(method, url, json={}, headers=READER)
            assert reader.status_code == 403, (method, path, reader.text)


def _get_paths(app: FastAPI) -> set[str]:
    """Every path the app answers GET on, its own API routes and any plain route (docs) alike."""
    paths = {path for path, route in _api_routes(app.routes) if "GET" in route.methods}
    return paths | {route.path for route in app.routes if "GET" in (getattr(route, "methods", None) or ())}


def test_closed_reads_close_every_get_route_the_docs_too(tmp_path):
    """With read_access=token every GET but /health is 401 without a token, /openapi.json and the docs included."""
    app = create_app(_settings(gpkg=GEODATA_DIR / "catalogue.gpkg", read_access="token"))
    paths = _get_paths(app)
    assert {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"} <= paths
    with TestClient(app, raise_server_exceptions=False) as service:
        for path in sorted(paths):
            url = re.sub(r"\{[^}]+\}", "dummy", path)
            if path == "/health":
                assert service.get(url).status_code == 200
                continue
            _is_error(service.get(url), 401, "unauthorized")
            assert service.get(url, headers=READER).status_code != 401, path
        for path in ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"):
            assert service.get(path, headers=READER).status_code == 200, path


NOSNIFF_REQUESTS = [
    # (method, url, headers, body, the status expected)
    ("GET", "/sites", {}, None, 200),
    ("GET", "/sites?f=csv", {}, None, 200),
    ("GET", "/sites?f=kml", {}, None, 200),
    ("GET", "/sites?f=gpkg", {}, None, 200),
    ("GET", "/collections/sites/items?f=html", {}, None, 200),
    ("GET", "/map", {}, None, 200),
    ("GET", "/openapi.json", {}, None, 200),
    ("GET", "/docs", {}, None, 200),
    ("GET", "/redoc", {}, None, 200),
    ("HEAD", "/openapi.json", {}, None, 200),
    ("GET", "/sites?lat=100&lon=0", {}, None, 422),
    ("GET", "/collections/sites/items?foo=1", {}, None, 400),
    ("GET", "/sites/no-such-site", {}, None, 404),
    ("GET", "/no/such/route", {}, None, 404),
    ("DELETE", "/sites", {}, None, 405),
    ("POST", "/sites", {}, "{}", 401),
    ("POST", "/sites", READER, "{}", 403),
    ("POST", "/sites", {**EDITOR, "Content-Type": "application/json"}, "x" * 70_000, 413),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "status"), NOSNIFF_REQUESTS,
                         ids=[f"{m} {u} {s}" for m, u, _, _, s in NOSNIFF_REQUESTS])
def test_every_response_says_nosniff(method, url, headers, body, status):
    app = create_app(_settings(gpkg=GEODATA_DIR / "catalogue.gpkg", max_body_bytes=64 * 1024))
    with TestClient(app, raise_server_exceptions=False) as service:
        response = service.request(method, url, headers=headers, content=body)
    assert response.status_code == status, response.text[:200]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_500_and_a_429_say_nosniff_too():
    app = _app(write_burst=1, write_rate_per_minute=1)
    app.get("/broken")(lambda: 1 / 0)
    with TestClient(app, raise_server_exceptions=False) as service:
        broken = service.get("/broken")
        assert broken.status_code == 500 and broken.headers["X-Content-Type-Options"] == "nosniff"
        service.delete("/things/x", headers=EDITOR)
        limited = service.delete("/things/x", headers=EDITOR)
        assert limited.status_code == 429 and limited.headers["X-Content-Type-Options"] == "nosniff"
