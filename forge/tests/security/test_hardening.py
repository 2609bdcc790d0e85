"""Hardening (issue 12, item 7): a Content-Security-Policy on every page that the pages themselves obey,
HTTPS settings that pass Django's deploy check in the documented production configuration, and JSON errors
for every address under /api/."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from django.test import Client, override_settings

from anvil_forge.core.middleware import CONTENT_SECURITY_POLICY
from forge.tests.security.crawl import crawl

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
FORGE = ROOT / "forge" / "anvil_forge"
TEMPLATES = sorted(path for path in FORGE.rglob("templates/**/*.html"))


def _directives(policy: str) -> dict[str, list[str]]:
    return {part.split()[0]: part.split()[1:] for part in (p.strip() for p in policy.split(";")) if part}


def test_the_policy_takes_scripts_and_styles_from_the_forge_only():
    policy = _directives(CONTENT_SECURITY_POLICY)
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]
    assert policy["default-src"] == ["'self'"] and policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"] and policy["base-uri"] == ["'none'"]
    assert "unsafe" not in CONTENT_SECURITY_POLICY


# In a tag: an inline <script> (one without src), <style>, a style="" attribute, an on*= handler, a
# javascript: address; htmx attributes that need eval (hx-on, hx-vals/hx-vars with js:, trigger filters).
FORBIDDEN = [
    (re.compile(r"<script\b(?![^>]*\bsrc=)[^>]*>", re.I), "inline <script>"),
    (re.compile(r"<style\b", re.I), "<style> element"),
    (re.compile(r"<[a-z][^>]*\sstyle\s*=", re.I), "style= attribute"),
    (re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.I), "on*= handler"),
    (re.compile(r"javascript:", re.I), "javascript: address"),
    (re.compile(r"\shx-on[:-]", re.I), "hx-on (needs eval)"),
    (re.compile(r"\shx-(vals|vars)\s*=\s*['\"]\s*(js|javascript):", re.I), "hx-vals js: (needs eval)"),
    (re.compile(r"\shx-trigger\s*=\s*['\"][^'\"]*\[", re.I), "hx-trigger filter (needs eval)"),
]


def test_no_template_has_inline_script_style_or_handlers():
    """What the policy would block: every template under forge/anvil_forge/**/templates is checked."""
    assert len(TEMPLATES) > 30, "the template search found too few templates"
    problems = []
    for path in TEMPLATES:
        text = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}", "", path.read_text(), flags=re.S)
        for pattern, what in FORBIDDEN:
            for match in pattern.finditer(text):
                line = text[: match.start()].count("\n") + 1
                problems.append(f"{path.relative_to(ROOT)}:{line}: {what}")
    assert not problems, "move these into static files (anvil.js, anvil.css):\n" + "\n".join(problems)


def test_htmx_is_told_not_to_inject_styles_nor_to_eval(client):
    page = client.get("/login/").content.decode()
    config = json.loads(re.search(r"<meta name=\"htmx-config\" content='([^']*)'", page).group(1))
    assert config["includeIndicatorStyles"] is False and config["allowEval"] is False


def test_every_page_of_the_crawl_carries_the_policy(world):
    """Every page the owner reaches, and the sign-in, error and API answers."""
    answers: dict = {}
    crawl(_signed_in(world, "owner"), ["/", f"/o/{world.values['org']}/", "/forges/"], visited=answers)
    assert len(answers) > 30
    anonymous, viewer = Client(), _signed_in(world, "viewer")
    answers["anonymous /login/"] = anonymous.get("/login/")
    answers["anonymous /o/.../ (302)"] = anonymous.get(f"/o/{world.values['org']}/")
    answers["404 page"] = viewer.get("/no/such/page/")
    answers["403 page"] = viewer.get(f"/o/{world.values['org']}/tokens/{world.values['token_id']}/revoke/")
    answers["405"] = viewer.get("/logout/")
    answers["API 404"] = anonymous.get("/api/v1/nope")
    policy = CONTENT_SECURITY_POLICY
    missing = [where for where, answer in answers.items() if answer.get("Content-Security-Policy") != policy]
    assert not missing, "no Content-Security-Policy on:\n" + "\n".join(missing)
    assert answers["403 page"].status_code == 403 and answers["404 page"].status_code == 404


def _signed_in(world, role: str) -> Client:
    client = Client()
    client.force_login(world.team.member(role))
    return client


# ---------------------------------------------------------------- /api/: JSON errors only

API_MISSES = [
    "/api/", "/api/v1/", "/api/v1/nope", "/api/v2/live/releases", "/api/v1/live/stream/", "/api/v1/live/streams",
    "/api/v1/live/bundles/", "/api/v1/live/bundles/a/b", "/api/v1/live/releases/", "/api/v1/peer/", "/api/v1/peer/nope",
]


@pytest.mark.parametrize("path", API_MISSES)
def test_an_unknown_address_under_api_answers_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert isinstance(response.json()["error"], str)


def test_a_page_that_is_not_under_api_stays_a_page(client):
    response = client.get("/apix/nope")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


@pytest.mark.django_db(transaction=True)
def test_through_the_asgi_application_too_stream_route_included():
    """The stream is a Starlette route ahead of Django (asgi.py): addresses near it still reach Django's JSON."""
    from anvil_forge.asgi import application

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for path in ["/api/v1/nope", "/api/v1/live/stream/", "/api/v1/live/stream/x", "/api/v1/live/streamx"]:
                response = await http.get(path)
                assert (response.status_code, response.headers["content-type"]) == (404, "application/json"), path
                assert "error" in response.json()
            refused = await http.post("/api/v1/live/stream")
            assert refused.status_code == 405 and refused.json() == {"error": "method not allowed"}
            page = await http.get("/no/such/page/")
            assert page.status_code == 404 and page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY

    asyncio.run(scenario())


# ---------------------------------------------------------------- HTTPS behind a TLS proxy

HTTPS = {
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "SECURE_SSL_REDIRECT": True,
    "SECURE_HSTS_SECONDS": 31536000,
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    "SECURE_HSTS_PRELOAD": True,
}


@override_settings(**HTTPS)
def test_behind_a_tls_proxy_plain_http_is_redirected_and_https_gets_hsts():
    client = Client()
    plain = client.get("/login/?next=/o/x/")
    assert plain.status_code == 301 and plain["Location"] == "https://testserver/login/?next=/o/x/"
    secure = client.get("/login/", headers={"X-Forwarded-Proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert client.get("/healthz").status_code == 200  # load balancers check over plain HTTP


def _documented_production_environment() -> dict[str, str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    block = re.search(r"<!-- production-environment -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "docs/operations.md lost its production-environment block"
    environment = {}
    for line in block.group(1).splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, value = line.partition("=")
            environment[name] = value
    return environment


def test_the_documented_settings_are_the_ones_the_forge_reads():
    settings_source = (FORGE / "settings.py").read_text()
    for name in _documented_production_environment():
        assert f'"{name}"' in settings_source, f"docs/operations.md sets {name}, which settings.py never reads"


def test_check_deploy_is_clean_in_the_documented_production_configuration(tmp_path):
    environment = _documented_production_environment()
    assert environment["SECRET_KEY"] == "..."  # the placeholder; a real one here:
    environment["SECRET_KEY"] = secrets.token_urlsafe(50)
    keep = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "PYTHONPATH") if name in os.environ}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("anvil-forge")), "manage", "check", "--deploy", "--fail-level", "WARNING"],
        env={**keep, **environment, "ANVIL_DATA_DIR": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
