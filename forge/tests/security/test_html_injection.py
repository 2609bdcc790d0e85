"""HTML and script in every text a user (or a LIVE instance) can enter, rendered on every page: always escaped.

The payload goes into project, set and prompt texts, parameters, metadata, review comments, token names,
instance check-ins and peer references; then every page (and the htmx fragments) is read as the owner.
The raw payload must never appear: only its escaped form.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution import services as distribution_services
from anvil_forge.distribution.checkin import parse_checkin
from anvil_forge.distribution.models import AccessToken
from anvil_forge.peering.models import RemoteProjectReference
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Project, Prompt, PromptSet, PromptSetVersion
from forge.tests.security.test_access_matrix import POST_ONLY, ROUTES, _fill

pytestmark = pytest.mark.django_db

PAYLOAD = "</textarea></title><script>alert('xss')</script><img src=x onerror=alert(1)>\"'"
RAW_MARKERS = ("<script>alert('xss')</script>", "<img src=x onerror=alert(1)>", "</textarea></title><script>")


def _try(call, *args, **kwargs):
    """Apply a change; a refusal is fine (the payload is then simply not stored)."""
    try:
        return call(*args, **kwargs)
    except ApplicationError:
        return None


def _inject(world) -> list[str]:
    """Put the payload everywhere a person or a LIVE instance can write text; returns where it went."""
    team = world.team
    project = Project.objects.get(slug=world.values["project"])
    core = PromptSet.objects.get(project=project, slug="core")
    stored = []
    if _try(services.project_update, actor=team.owner, project=project, name="P " + PAYLOAD, description=PAYLOAD):
        stored.append("project")
    if _try(services.prompt_set_update, actor=team.editor, prompt_set=core, name="S " + PAYLOAD, description=PAYLOAD):
        stored.append("prompt set")
    prompt = Prompt.objects.get(prompt_set=core, key="welcome.message")
    if _try(
        services.prompt_update,
        actor=team.editor,
        prompt=prompt,
        base_revision=prompt.revision,
        template="Hello {{ name }} " + PAYLOAD,
        description=PAYLOAD,
        parameters=[{"name": "name", "type": "string", "required": False, "default": PAYLOAD, "description": PAYLOAD}],
        metadata={"model": PAYLOAD, PAYLOAD[:40]: 1},
    ):
        stored.append("prompt")
    review = PromptSetVersion.objects.get(prompt_set__project=project, prompt_set__slug="review")
    if _try(services.version_request_changes, actor=team.reviewer, version=review, comment=PAYLOAD):
        stored.append("review comment")
    token = AccessToken.objects.get(pk=world.values["token_id"])
    if _try(distribution_services.token_create, actor=team.owner, project=project, environment=token.environment,
            kind="live", name=PAYLOAD[:60]):
        stored.append("token name")
    checkin = parse_checkin(json.dumps({
        "instance_id": "xss-1", "name": PAYLOAD[:150], "host": PAYLOAD[:150], "client_version": PAYLOAD[:30],
        "mode": "ACCEPTING", "versions": {"core": 1}, "usage": {"welcome.message": ["name"]},
    }).encode())
    distribution_services.instance_checkin(token=token, checkin=checkin)
    stored.append("instance")
    RemoteProjectReference.objects.filter(pk=world.values["reference_id"]).update(
        name=PAYLOAD, snapshot={"project": {"name": PAYLOAD, "description": PAYLOAD}, "sets": [
            {"set": "core", "name": PAYLOAD, "description": PAYLOAD, "latest_version": 1, "approved_by": PAYLOAD,
             "digest": PAYLOAD, "prompts": [{"id": "a.b", "template": PAYLOAD, "description": PAYLOAD,
                                             "parameters": [], "metadata": {"m": PAYLOAD}}]}]},
        last_error=PAYLOAD,
    )
    stored.append("peer reference (as a peer would send it)")
    return stored


def test_payload_in_every_user_text_is_escaped_on_every_page(world):
    stored = _inject(world)
    assert {"prompt", "instance", "review comment"} <= set(stored), stored
    client = Client()
    client.force_login(world.team.owner)
    values = {**world.values, "prompt_revision": Prompt.objects.get(
        prompt_set__slug="core", prompt_set__project__slug=world.values["project"], key="welcome.message").revision}
    problems, seen = [], 0
    pages = [_fill(r.path, values) for r in ROUTES if r.get != POST_ONLY]
    pages += [_fill("/o/{org}/p/{project}/s/review/", values), _fill("/o/{org}/p/{project}/s/review/versions/", values)]
    for path in pages:
        response = client.get(path)
        if not response.get("Content-Type", "").startswith("text/html"):
            continue  # a download (a version's zip): not a page a browser renders
        html = response.content.decode()
        seen += "&lt;script&gt;" in html
        problems += [f"{path}: raw {marker!r}" for marker in RAW_MARKERS if marker in html]
    for fragment in ("check/", "preview/"):
        path = _fill("/o/{org}/p/{project}/s/core/prompts/welcome.message/", values) + fragment
        response = client.post(path, {"template": "{{ name }} " + PAYLOAD, "param-0-name": "name",
                                      "param-0-type": "string", "sample-name": PAYLOAD}, HTTP_HX_REQUEST="true")
        html = response.content.decode()
        seen += "&lt;script&gt;" in html
        problems += [f"{path}: raw {marker!r}" for marker in RAW_MARKERS if marker in html]
    assert not problems, "\n".join(problems)
    assert seen >= 8, "the payload should be visible (escaped) on the pages that show these texts"


def test_a_payload_in_the_audit_log_filters_is_escaped(world):
    client = Client()
    client.force_login(world.team.owner)
    response = client.get(_fill("/o/{org}/audit/", world.values), {"actor": PAYLOAD, "action": PAYLOAD})
    html = response.content.decode()
    assert not [m for m in RAW_MARKERS if m in html]
