"""The framework hooks: Django (a real project in a subprocess), FastAPI/Starlette lifespan, Flask extension."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

import anvil_client
from anvil_client import Client, Config, write_bootstrap
from anvil_client._cli import main as anvil_main
from anvil_client.bundle import build_bundle


def make_bundle(version: int = 1) -> dict:
    return build_bundle(
        forge="http://127.0.0.1:8000",
        organisation="acme",
        project="support-bot",
        environment="production",
        set_slug="core",
        version=version,
        approval="approved",
        prompts=[{"id": "welcome.message", "template": "Hello {{ name }}!"}],
        created_at="2026-11-25T10:00:00Z",
    )


@pytest.fixture
def client(tmp_path: Path):
    bootstrap = write_bootstrap(tmp_path / "bootstrap.json", [make_bundle()])
    client = Client(Config(cache_dir=tmp_path / "cache", bootstrap=bootstrap))
    yield client
    client.close()


@pytest.fixture
def restore_default(monkeypatch):
    """configure() replaces the module-level client: put the previous one back afterwards."""
    monkeypatch.setattr(anvil_client, "_default", anvil_client._default)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    env.update(extra)
    return env


def test_importing_anvil_client_imports_no_framework_and_no_integration():
    code = (
        "import sys, anvil_client\n"
        "print([m for m in sys.modules if m.split('.')[0] in ('django', 'flask', 'fastapi', 'starlette')"
        " or m.startswith('anvil_client.integrations')])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env())

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# -- Django --------------------------------------------------------------------------------------------------


def django_project(root: Path) -> Path:
    pytest.importorskip("django")
    (root / "shop").mkdir()
    (root / "shop" / "__init__.py").write_text("")
    (root / "manage.py").write_text(
        'import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")\n'
    )
    (root / "shop" / "settings.py").write_text(
        textwrap.dedent(
            """
            SECRET_KEY = "test"
            USE_TZ = True
            INSTALLED_APPS = [
                "django.contrib.contenttypes",
            ]
            """
        )
    )
    write_bootstrap(root / "prompts.json", [make_bundle(4)])
    return root


def run_django(root: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = "import django, json\ndjango.setup()\nimport anvil_client\n" + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(DJANGO_SETTINGS_MODULE="shop.settings", PYTHONPATH=str(root)),
    )


def test_django_project_after_anvil_install_starts_the_client_in_app_ready(tmp_path):
    root = django_project(tmp_path)
    assert anvil_main(["install", "--path", str(root), "--yes"]) == 0
    with (root / "anvil.toml").open("a") as handle:
        handle.write('bootstrap = "prompts.json"\n')

    result = run_django(
        root,
        """
        status = anvil_client.status()
        print(json.dumps({"started": status["started"], "versions": status["versions"],
                          "text": anvil_client.prompt("welcome.message", name="Ada")}))
        """,
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"started": True, "versions": {"core": 4}, "text": "Hello Ada!"}


def test_django_settings_anvil_dict_configures_the_client(tmp_path):
    root = django_project(tmp_path)
    assert anvil_main(["install", "--path", str(root), "--yes"]) == 0
    with (root / "shop" / "settings.py").open("a") as handle:
        handle.write('ANVIL = {"mode": "frozen", "bootstrap": "prompts.json"}\n')

    result = run_django(root, 'print(json.dumps(anvil_client.status()["mode"]))')

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "frozen"


def test_django_autoreloader_watcher_process_does_not_start_the_client(monkeypatch):
    pytest.importorskip("django")
    from anvil_client.integrations.django import _is_autoreload_watcher

    monkeypatch.delenv("RUN_MAIN", raising=False)
    monkeypatch.setattr(sys, "argv", ["manage.py", "runserver"])
    assert _is_autoreload_watcher()
    monkeypatch.setenv("RUN_MAIN", "true")
    assert not _is_autoreload_watcher()
    monkeypatch.setattr(sys, "argv", ["gunicorn", "shop.wsgi"])
    monkeypatch.delenv("RUN_MAIN")
    assert not _is_autoreload_watcher()


# -- FastAPI / Starlette lifespan ------------------------------------------------------------------------------


async def in_lifespan(app, during):
    """Run ``app``'s lifespan startup, then ``during()``, then its shutdown (what an ASGI server does)."""
    import asyncio

    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    try:
        await during()
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
        await task


def test_anvil_lifespan_starts_the_client_exposes_it_and_closes_it(client):
    import asyncio
    from functools import partial

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from anvil_client.integrations.fastapi import anvil_lifespan

    async def hello(request):
        return PlainTextResponse(request.app.state.anvil.prompt("welcome.message", name="Ada"))

    app = Starlette(routes=[Route("/", hello)], lifespan=partial(anvil_lifespan, client=client))

    async def during():
        assert client.status()["started"] is True
        assert app.state.anvil is client
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://host") as http:
            assert (await http.get("/")).text == "Hello Ada!"

    asyncio.run(in_lifespan(app, during))
    assert client._closed


def test_wrap_lifespan_runs_the_applications_own_lifespan_inside(client):
    import asyncio
    import contextlib

    from starlette.applications import Starlette

    from anvil_client.integrations.fastapi import wrap_lifespan

    events: list[str] = []

    @contextlib.asynccontextmanager
    async def own(app):
        events.append(f"own start, anvil started={client.status()['started']}")
        yield
        events.append(f"own stop, anvil closed={client._closed}")

    async def during():
        events.append("serving")

    asyncio.run(in_lifespan(Starlette(lifespan=wrap_lifespan(own, client=client)), during))

    assert events == ["own start, anvil started=True", "serving", "own stop, anvil closed=False"]
    assert client._closed


# -- Flask (a stand-in with the attributes the extension uses; Flask itself is not a dependency) ----------------


class FakeFlask:
    def __init__(self, config: dict | None = None) -> None:
        self.config = dict(config or {})
        self.extensions: dict = {}
        self.jinja_env = type("JinjaEnv", (), {"globals": {}})()

    def wsgi_app(self, environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"flask app"]


def test_flask_extension_starts_the_client_and_registers_itself(client):
    from anvil_client.integrations.flask import Anvil

    app = FakeFlask()
    extension = Anvil(app, client=client)

    assert app.extensions["anvil"] is extension and extension.client is client
    assert client.status()["started"] is True
    assert app.jinja_env.globals["prompt"]("welcome.message", name="Ada") == "Hello Ada!"


def test_flask_extension_with_an_app_factory(client):
    from anvil_client.integrations.flask import Anvil

    extension = Anvil(client=client)
    app = FakeFlask()
    extension.init_app(app)

    assert app.extensions["anvil"] is extension


def test_flask_config_options_configure_the_default_client(tmp_path, restore_default):
    from anvil_client.integrations.flask import Anvil

    bootstrap = write_bootstrap(tmp_path / "b.json", [make_bundle(6)])
    app = FakeFlask({"ANVIL": {"bootstrap": str(bootstrap), "cache_dir": str(tmp_path / "c"), "mode": "frozen"}})

    extension = Anvil(app)

    try:
        assert extension.client is anvil_client.default_client()
        assert anvil_client.status()["mode"] == "frozen" and anvil_client.status()["versions"] == {"core": 6}
    finally:
        extension.client.close()


def test_flask_extension_mounts_the_admin_page_when_asked(client, monkeypatch):
    from anvil_client.integrations.flask import Anvil

    monkeypatch.setenv("ANVIL_ADMIN_SECRET", "a secret that is long enough")
    app = FakeFlask({"ANVIL_ADMIN_PATH": "/ops/anvil"})
    Anvil(app, client=client)

    with httpx.Client(transport=httpx.WSGITransport(app=app.wsgi_app), base_url="http://host") as http:
        assert http.get("/").text == "flask app"
        page = http.get("/ops/anvil/")
        assert page.status_code == 401 and 'action="/ops/anvil/login"' in page.text
        bearer = {"Authorization": "Bearer a secret that is long enough"}
        assert http.get("/ops/anvil/status.json", headers=bearer).json()["versions"] == {"core": 1}
