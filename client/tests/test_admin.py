"""The admin page through both server interfaces (WSGI and ASGI), with a real client and real HTTP clients."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from anvil_client import Client, Config, read_host_state, write_bootstrap
from anvil_client._admin import AdminPage, mount_asgi, mount_wsgi
from anvil_client.bundle import build_bundle

SECRET = "correct horse battery staple"


def make_bundle(version: int, text: str = "Hello {{ name }}!") -> dict:
    return build_bundle(
        forge="http://127.0.0.1:8000",
        organisation="acme",
        project="support-bot",
        environment="production",
        set_slug="core",
        version=version,
        approval="approved",
        prompts=[{"id": "welcome.message", "template": text}],
        created_at="2026-11-25T10:00:00Z",
    )


@pytest.fixture
def client(tmp_path: Path) -> Client:
    bootstrap = write_bootstrap(tmp_path / "bootstrap.json", [make_bundle(3)])
    client = Client(Config(cache_dir=tmp_path / "cache", bootstrap=bootstrap))
    client.start()
    yield client
    client.close()


class Through:
    """One server interface: makes an httpx client for an AdminPage (or a mounted app)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def app(self, page: AdminPage) -> Callable:
        return page.wsgi if self.kind == "wsgi" else page.asgi

    def mount(self, host: Callable, prefix: str, page: AdminPage) -> Callable:
        if self.kind == "wsgi":
            return mount_wsgi(host, prefix, page.wsgi)
        return mount_asgi(host, prefix, page.asgi)

    def http(self, app: Callable) -> SyncHTTP:
        return SyncHTTP(self.kind, app)


class SyncHTTP:
    """A synchronous face over httpx's WSGI and ASGI transports, keeping cookies."""

    def __init__(self, kind: str, app: Callable) -> None:
        self.kind = kind
        if kind == "wsgi":
            self._client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://host")
        else:
            self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://host")
        self._loop = asyncio.new_event_loop() if kind == "asgi" else None

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies

    def request(self, method: str, url: str, **kwargs) -> httpx.Response:
        if self._loop is None:
            return self._client.request(method, url, **kwargs)
        return self._loop.run_until_complete(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def close(self) -> None:
        if self._loop is None:
            self._client.close()
        else:
            self._loop.run_until_complete(self._client.aclose())
            self._loop.close()


@pytest.fixture(params=["wsgi", "asgi"])
def through(request) -> Through:
    return Through(request.param)


@pytest.fixture
def http(through: Through, client: Client):
    made: list[SyncHTTP] = []

    def make(page: AdminPage | None = None, app: Callable | None = None) -> SyncHTTP:
        made.append(through.http(app or through.app(page or AdminPage(client, secret=SECRET))))
        return made[-1]

    yield make
    for each in made:
        each.close()


def sign_in(http: SyncHTTP, prefix: str = "") -> str:
    response = http.post(f"{prefix}/login", data={"secret": SECRET})
    assert response.status_code == 303
    page = http.get(f"{prefix}/")
    assert page.status_code == 200
    return re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)


def test_without_a_secret_the_page_refuses_to_serve(http, client, monkeypatch):
    monkeypatch.delenv("ANVIL_ADMIN_SECRET", raising=False)
    browser = http(AdminPage(client))

    for method, path in (("GET", "/"), ("POST", "/login"), ("GET", "/status.json")):
        response = browser.request(method, path, data={"secret": ""} if method == "POST" else None)
        assert response.status_code == 503
        assert "ANVIL_ADMIN_SECRET" in response.text


def test_a_short_secret_disables_the_page(http, client):
    response = http(AdminPage(client, secret="short")).get("/")

    assert response.status_code == 503
    assert "at least 16 characters" in response.text


def test_the_secret_is_read_from_the_environment(http, client, monkeypatch):
    monkeypatch.setenv("ANVIL_ADMIN_SECRET", SECRET)
    browser = http(AdminPage(client))

    assert browser.post("/login", data={"secret": SECRET}).status_code == 303


def test_unauthenticated_visitors_get_the_sign_in_form_and_no_status(http):
    response = http().get("/")

    assert response.status_code == 401
    assert 'name="secret"' in response.text
    assert "core" not in response.text


def test_wrong_secret_is_refused_with_403_and_sets_no_cookie(http):
    browser = http()

    response = browser.post("/login", data={"secret": "wrong secret, long enough"})

    assert response.status_code == 403
    assert "Wrong secret" in response.text
    assert "set-cookie" not in response.headers
    assert browser.get("/status.json").status_code == 403


def test_wrong_bearer_secret_is_refused_with_403(http):
    response = http().get("/status.json", headers={"Authorization": "Bearer not the secret at all"})

    assert response.status_code == 403


def test_right_bearer_secret_reads_the_status(http):
    response = http().get("/status.json", headers={"Authorization": f"Bearer {SECRET}"})

    assert response.status_code == 200
    assert response.json()["versions"] == {"core": 3}


def test_signed_in_page_shows_mode_versions_and_a_session_cookie(http):
    browser = http()

    response = browser.post("/login", data={"secret": SECRET})

    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = browser.get("/")
    assert page.status_code == 200
    assert "ACCEPTING" in page.text and "<td>core</td>" in page.text and "<td>3</td>" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_mode_toggle_with_csrf_token_freezes_the_host(http, client):
    browser = http()
    csrf = sign_in(browser)

    response = browser.post("/mode", data={"mode": "frozen", "csrf": csrf})

    assert response.status_code == 303
    assert read_host_state(client.config.cache_dir).mode == "frozen"
    page = browser.get(response.headers["location"])
    assert "FROZEN" in page.text and "Mode set to FROZEN" in page.text


def test_post_without_or_with_a_wrong_csrf_token_is_refused(http, client):
    browser = http()
    csrf = sign_in(browser)

    assert browser.post("/mode", data={"mode": "frozen"}).status_code == 403
    assert browser.post("/mode", data={"mode": "frozen", "csrf": csrf[::-1]}).status_code == 403
    assert read_host_state(client.config.cache_dir).mode is None


def test_csrf_token_of_one_session_does_not_work_in_another(http, client):
    first, second = http(), http()
    csrf_first = sign_in(first)
    sign_in(second)

    assert second.post("/mode", data={"mode": "frozen", "csrf": csrf_first}).status_code == 403


def test_post_without_a_session_is_refused(http, client):
    assert http().post("/mode", data={"mode": "frozen", "csrf": "x"}).status_code == 403
    assert read_host_state(client.config.cache_dir).mode is None


def test_sessions_end_when_the_secret_changes(through, client):
    old = through.http(through.app(AdminPage(client, secret=SECRET)))
    sign_in(old)
    cookies = dict(old.cookies)
    old.close()
    new = through.http(through.app(AdminPage(client, secret="another secret of some length")))
    try:
        for name, value in cookies.items():
            new.cookies.set(name, value)
        assert new.get("/").status_code == 401
    finally:
        new.close()


def test_pin_and_unpin_through_the_forms(http, client):
    browser = http()
    csrf = sign_in(browser)

    assert browser.post("/pin", data={"set": "core", "version": "3", "csrf": csrf}).status_code == 303
    assert read_host_state(client.config.cache_dir).pins == {"core": 3}
    assert "Unpin" in browser.get("/").text
    assert browser.post("/unpin", data={"set": "core", "csrf": csrf}).status_code == 303
    assert read_host_state(client.config.cache_dir).pins == {}


def test_bad_pin_input_is_refused_with_a_message(http, client):
    browser = http()
    csrf = sign_in(browser)

    response = browser.post("/pin", data={"set": "core", "version": "two", "csrf": csrf})

    assert response.status_code == 400
    assert "version number" in response.text
    assert read_host_state(client.config.cache_dir).pins == {}


def test_sync_without_a_forge_shows_the_clients_error(http):
    browser = http()
    csrf = sign_in(browser)

    response = browser.post("/sync", data={"csrf": csrf})

    assert response.status_code == 400
    assert "no FORGE to sync with" in response.text


def test_sync_now_takes_the_release_here_and_in_every_other_process_of_the_host_even_frozen(
    http, stub, make_client, tmp_path
):
    stub.publish("core", 1)
    served = make_client(stub, cache_dir=tmp_path / "host", mode="frozen")
    other = make_client(stub, cache_dir=tmp_path / "host", mode="frozen", state_check_interval=0.5)  # "another process"
    assert served.prompt("welcome.message", name="Ada") == "Hello Ada (v1)"
    assert other.prompt("welcome.message", name="Ada") == "Hello Ada (v1)"
    stub.publish("core", 2)
    assert _eventually(lambda: other.status()["available"] == served.status()["available"] == {"core": 2})
    browser = http(AdminPage(served, secret=SECRET))
    csrf = sign_in(browser)

    response = browser.post("/sync", data={"csrf": csrf})

    assert response.status_code == 303
    assert served.prompt("welcome.message", name="Ada") == "Hello Ada (v2)"
    assert _eventually(lambda: other.prompt("welcome.message", name="Ada") == "Hello Ada (v2)", 1.5)
    assert other.mode == served.mode == "frozen"


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return bool(check())


def test_bearer_scripts_can_change_the_mode_without_csrf(http, client):
    response = http().post("/mode", data={"mode": "frozen"}, headers={"Authorization": f"Bearer {SECRET}"})

    assert response.status_code == 200 and response.json() == {"ok": True, "done": "mode-frozen"}
    assert read_host_state(client.config.cache_dir).mode == "frozen"


def test_sign_out_clears_the_session_cookie(http):
    browser = http()
    csrf = sign_in(browser)

    response = browser.post("/logout", data={"csrf": csrf})

    assert response.status_code == 303 and "Max-Age=0" in response.headers["set-cookie"]
    assert browser.get("/").status_code == 401


def test_too_many_wrong_secrets_are_answered_429(http):
    browser = http()
    for _ in range(20):
        browser.post("/login", data={"secret": "wrong secret, long enough"})

    assert browser.post("/login", data={"secret": SECRET}).status_code == 429


def test_unknown_paths_and_methods(http):
    browser = http()

    assert browser.get("/nope").status_code == 404
    assert browser.get("/mode").status_code == 405
    assert browser.post("/", data={}).status_code == 405


def test_oversized_bodies_are_refused(http):
    assert http().post("/login", content=b"secret=" + b"x" * 20_000).status_code == 413


def test_mounted_under_a_prefix_the_page_links_and_cookies_use_it(through, http, client):
    def wsgi_host(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"host application"]

    async def asgi_host(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"host application"})

    host = wsgi_host if through.kind == "wsgi" else asgi_host
    browser = http(app=through.mount(host, "/ops/anvil", AdminPage(client, secret=SECRET)))

    assert browser.get("/").text == "host application"
    assert browser.get("/ops/anvilx").text == "host application"
    assert 'action="/ops/anvil/login"' in browser.get("/ops/anvil/").text
    login = browser.post("/ops/anvil/login", data={"secret": SECRET})
    assert login.headers["location"] == "/ops/anvil/"
    assert "Path=/ops/anvil/" in login.headers["set-cookie"]
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', browser.get("/ops/anvil/").text).group(1)
    assert browser.post("/ops/anvil/mode", data={"mode": "frozen", "csrf": csrf}).status_code == 303
    assert read_host_state(client.config.cache_dir).mode == "frozen"


def test_starlette_mount_passes_the_prefix_through_root_path(client):
    from starlette.applications import Starlette
    from starlette.routing import Mount

    app = Starlette(routes=[Mount("/anvil", app=AdminPage(client, secret=SECRET).asgi)])
    browser = SyncHTTP("asgi", app)
    try:
        page = browser.get("/anvil/")
        assert page.status_code == 401 and 'action="/anvil/login"' in page.text
        assert browser.post("/anvil/login", data={"secret": SECRET}).headers["location"] == "/anvil/"
        assert browser.get("/anvil/status.json").json()["mode"] == "accepting"
    finally:
        browser.close()


def test_asgi_lifespan_is_answered():
    page = AdminPage(object(), secret=SECRET)
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent: list[dict] = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message)

    asyncio.run(page.asgi({"type": "lifespan"}, receive, send))

    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_text_from_the_client_is_escaped_on_the_page(through, tmp_path):
    hostile = Client(Config(cache_dir=tmp_path / "c", bootstrap=tmp_path / "<script>alert(1)</script>.json"))
    hostile.start()
    browser = through.http(through.app(AdminPage(hostile, secret=SECRET)))
    try:
        assert "<script>" in hostile.status()["last_error"]
        sign_in(browser)
        page = browser.get("/").text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "<script>" not in page
    finally:
        browser.close()
        hostile.close()
