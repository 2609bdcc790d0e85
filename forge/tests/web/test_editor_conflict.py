"""A second save after a conflict: one clear message, base / theirs / yours side by side, and theirs replaced
only by the explicit "Replace <user>'s change with mine"."""

from __future__ import annotations

import html
import re

import pytest

from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt

pytestmark = pytest.mark.django_db

PARAMS = {"param-0-name": "name", "param-0-type": "string", "param-0-required": "1"}


def _hidden(body: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', body)
    assert match, name
    return html.unescape(match.group(1))


def _form(body: str) -> dict[str, str]:
    """The editor form's hidden fields as the browser would post them back."""
    return {name: _hidden(body, name) for name in ("base_revision", "base_template", "base_description")}


@pytest.fixture
def conflict(as_user, team, urls, prompt_set):
    """The editor opened the prompt, the admin saved it, the editor saves: (client, response, data, prompt)."""
    client = as_user(team.editor)
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    base_template = prompt.template
    opened = _form(client.get(urls["prompt"]).content.decode())
    assert opened["base_template"] == base_template
    services.prompt_update(
        actor=team.admin, prompt=prompt, base_revision=prompt.revision, template="Admin's {{ name }}"
    )
    data = {**opened, "save": "1", "template": "Editor's {{ name }}", **PARAMS}
    response = client.post(urls["prompt"], data)
    return client, response, data, prompt


def test_a_conflict_shows_one_message_and_base_theirs_and_yours_side_by_side(conflict, team):
    _client, response, _data, _prompt = conflict
    assert response.status_code == 409
    body = response.content.decode()
    admin = team.admin.get_username()
    assert f"Not saved: {admin} saved this prompt" in body
    assert "Saving again" not in body and "copy your text" not in body  # the old, contradicting messages
    columns = {kind: body.split(f'data-testid="conflict-{kind}"')[1].split("</figure>")[0] for kind in
               ("base", "theirs", "yours")}
    assert "Hello {{ name }}!" in columns["base"] and "<mark>" not in columns["base"]
    assert "Admin&#x27;s {{ name }}" in columns["theirs"] and f"saved by {admin}" in columns["theirs"]
    assert "Editor&#x27;s {{ name }}" in columns["yours"]
    assert "<mark>Editor&#x27;s {{ name }}</mark>" in columns["yours"]  # differs from where the editor started
    assert "Editor&#x27;s {{ name }}</textarea>" in body  # the typed text stays in the editor
    assert f"Replace {admin}'s change with mine" in body


def test_a_plain_second_save_after_a_conflict_does_not_overwrite_theirs(conflict):
    client, response, data, prompt = conflict
    again = {**data, **_form(response.content.decode())}  # what the re-rendered page posts back
    second = client.post(prompt_url(prompt), again)
    assert second.status_code == 409
    prompt.refresh_from_db()
    assert prompt.template == "Admin's {{ name }}"


def test_replace_theirs_is_the_explicit_choice_that_saves_mine(conflict):
    client, response, data, prompt = conflict
    body = response.content.decode()
    replace = re.search(r'name="replace" value="(\d+)"', body).group(1)
    saved = client.post(prompt_url(prompt), {**data, **_form(body), "replace": replace})
    assert saved.status_code == 302
    prompt.refresh_from_db()
    assert prompt.template == "Editor's {{ name }}"


def test_replace_of_a_revision_overtaken_again_conflicts_again_naming_the_newer_change(conflict, team):
    client, response, data, prompt = conflict
    body = response.content.decode()
    replace = re.search(r'name="replace" value="(\d+)"', body).group(1)
    prompt.refresh_from_db()
    services.prompt_update(actor=team.owner, prompt=prompt, base_revision=prompt.revision, template="Owner {{ name }}")
    again = client.post(prompt_url(prompt), {**data, **_form(body), "replace": replace})
    assert again.status_code == 409
    assert f"Not saved: {team.owner.get_username()} saved" in again.content.decode()
    prompt.refresh_from_db()
    assert prompt.template == "Owner {{ name }}"


def prompt_url(prompt: Prompt) -> str:
    s = prompt.prompt_set
    return f"/o/{s.project.organisation.slug}/p/{s.project.slug}/s/{s.slug}/prompts/{prompt.key}/"
