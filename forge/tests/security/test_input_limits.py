"""Oversized and malformed input, through the HTTP layer: a clear 4xx, nothing changed, never a 500.

The services' own limits are tested by their owners (forge/tests/prompts, forge/tests/distribution); this
sweeps the same limits through the pages and the API, plus what only the HTTP layer sees.
"""

from __future__ import annotations

import pytest
from django.test import Client

from anvil_forge.distribution import services as distribution_services
from anvil_forge.distribution.models import AccessToken, LiveInstance
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt
from forge.tests.security.test_access_matrix import _fill, fingerprint

pytestmark = pytest.mark.django_db

PROMPT = "/o/{org}/p/{project}/s/core/prompts/welcome.message/"


def _editor(world) -> Client:
    client = Client()
    client.force_login(world.team.editor)
    return client


def _save(world, client: Client, template: str, **extra: str):
    revision = Prompt.objects.get(prompt_set__slug="core", prompt_set__project__slug=world.values["project"],
                                  key="welcome.message").revision
    data = {"save": "1", "base_revision": str(revision), "template": template, "param-0-name": "name",
            "param-0-type": "string", "param-0-required": "1", **extra}
    return client.post(_fill(PROMPT, world.values), data)


def test_an_oversized_template_is_refused_on_the_page_and_the_typed_text_kept(world):
    client = _editor(world)
    before = fingerprint()
    template = "{{ name }} " + "x" * (101 * 1024)
    response = _save(world, client, template)
    assert response.status_code == 400
    page = response.content.decode()
    assert "longer than 100 KB" in page
    assert "x" * 1000 in page, "the engineer's text is kept"
    assert fingerprint() == before


def test_a_form_post_beyond_the_request_size_limit_is_400_not_500(world):
    client = _editor(world)
    before = fingerprint()
    response = _save(world, client, "{{ name }}", description="d" * (3 * 1024 * 1024))
    assert response.status_code == 400
    assert fingerprint() == before


def test_a_form_with_thousands_of_fields_is_400_not_500(world):
    client = _editor(world)
    before = fingerprint()
    fields = {f"param-{i}-name": f"p{i}" for i in range(1200)}
    response = _save(world, client, "{{ name }}", **fields)
    assert response.status_code == 400
    assert fingerprint() == before


def test_a_full_prompt_set_refuses_one_more_prompt_on_the_page(world, monkeypatch):
    monkeypatch.setattr(services, "MAX_PROMPTS_PER_SET", 2)
    client = _editor(world)
    before = fingerprint()
    response = client.post(_fill("/o/{org}/p/{project}/s/core/add/", world.values), {"key": "one.more"})
    assert response.status_code == 400
    assert "at most 2 prompts" in response.content.decode()
    assert fingerprint() == before


@pytest.mark.parametrize("key", ["a" * 300, "Upper.case", "../../etc/passwd", "a..b", "<b>x</b>", ""])
def test_invalid_prompt_ids_are_refused_on_the_page(world, key):
    client = _editor(world)
    before = fingerprint()
    response = client.post(_fill("/o/{org}/p/{project}/s/core/add/", world.values), {"key": key})
    assert response.status_code == 400
    assert fingerprint() == before


@pytest.fixture
def live_token(world):
    token = AccessToken.objects.get(pk=world.values["token_id"])
    _, raw = distribution_services.token_create(
        actor=world.team.owner, project=token.project, environment=token.environment, kind="live", name="limits"
    )
    return raw


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"instance_id": "x", "process_count": 1e999999}',
        b'{"instance_id": "x", "process_count": ' + b"9" * 5000 + b"}",
        b'{"instance_id": "x", "versions": {"core": ' + b"9" * 50 + b"}}",
        b'{"instance_id": "x", "usage": {"a.b": [' + b'"v",' * 20_000 + b'"v"]}}',
        b'{"instance_id": "\\ud800"}',
        b"\x00" * 100,
        b"",
    ],
)
def test_malformed_checkins_are_refused_with_a_4xx_and_store_nothing(live_token, body):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {live_token}")
    response = client.post("/api/v1/live/checkin", body, content_type="application/json")
    assert 400 <= response.status_code < 500, response.content[:200]
    assert "error" in response.json()
    assert not LiveInstance.objects.exists()


@pytest.mark.parametrize("query", ["?version=abc", "?version=-1", "?version=0", "?version=" + "9" * 40, "?version=%00"])
def test_malformed_bundle_queries_are_400_or_404(live_token, query):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {live_token}")
    response = client.get("/api/v1/live/bundles/core" + query)
    assert response.status_code in (400, 404), (query, response.status_code)
    assert "error" in response.json()


@pytest.mark.parametrize(
    "authorization",
    ["Bearer " + "a" * 100_000, "Bearer anvil_live_" + "\u00e9" * 43, "Bearer\tanvil_live_x", "Basic Zm9vOmJhcg==",
     "Bearer anvil_live_" + "A" * 43 + "\x00"],
)
def test_odd_authorization_headers_get_401_never_500(world, authorization):
    client = Client(HTTP_AUTHORIZATION=authorization)
    for path in ("/api/v1/live/releases", "/api/v1/peer/projects"):
        response = client.get(path)
        assert response.status_code in (401, 429), (path, response.status_code)
