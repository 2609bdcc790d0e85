"""The prompt editor: live checks, declare, preview, and saves that never lose typed text."""

from __future__ import annotations

import pytest

from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt

pytestmark = pytest.mark.django_db

PARAMS = {"param-0-name": "name", "param-0-type": "string", "param-0-required": "1"}


def test_check_reports_a_syntax_error_with_its_line(as_user, team, urls):
    response = as_user(team.editor).post(urls["prompt"] + "check/", {"template": "Hello\n{% if name %}x", **PARAMS})
    body = response.content.decode()
    assert 'data-testid="template-error"' in body
    assert "Line 2" in body


def test_check_offers_to_declare_undeclared_variables_and_warns_of_unused_ones(as_user, team, urls):
    data = {"template": "Hi {{ first }} {{ second }}", **PARAMS}
    body = as_user(team.editor).post(urls["prompt"] + "check/", data).content.decode()
    assert 'name="declare" value="first"' in body and 'name="declare" value="second"' in body
    assert "Declared but not used" in body and "<code>name</code>" in body


def test_preview_renders_the_sample_values(as_user, team, urls):
    data = {"template": "Hi {{ name }}!", **PARAMS, "sample-name": "Ada"}
    body = as_user(team.editor).post(urls["prompt"] + "preview/", data).content.decode()
    assert 'data-testid="preview">Hi Ada!</pre>' in body


def test_preview_escapes_what_the_engineer_typed(as_user, team, urls):
    data = {"template": "Hi {{ name }}!", **PARAMS, "sample-name": "<script>x</script>"}
    body = as_user(team.editor).post(urls["prompt"] + "preview/", data).content.decode()
    assert "<script>x" not in body and "&lt;script&gt;x" in body


def test_declare_adds_a_parameter_row_without_saving_and_keeps_the_text(as_user, team, urls, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {"template": "Hi {{ name }} from {{ city }}", "base_revision": prompt.revision, "declare": "city", **PARAMS}
    body = as_user(team.editor).post(urls["prompt"], data).content.decode()
    assert 'name="param-1-name" value="city"' in body
    assert "Hi {{ name }} from {{ city }}</textarea>" in body
    prompt.refresh_from_db()
    assert "city" not in prompt.template


def test_save_updates_the_prompt_and_its_parameters(as_user, team, urls, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {
        "save": "1",
        "base_revision": prompt.revision,
        "template": "Hi {{ name }}, {{ count }} new",
        **PARAMS,
        "param-1-name": "count",
        "param-1-type": "number",
        "param-1-default": "3",
        "metadata": '{"model": "gpt-4o"}',
    }
    assert as_user(team.editor).post(urls["prompt"], data).status_code == 302
    prompt.refresh_from_db()
    assert prompt.template == "Hi {{ name }}, {{ count }} new"
    assert prompt.parameters[1]["name"] == "count" and prompt.parameters[1]["default"] == 3
    assert prompt.metadata == {"model": "gpt-4o"}


def test_saving_a_syntax_error_is_refused_and_keeps_the_text(as_user, team, urls, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {"save": "1", "base_revision": prompt.revision, "template": "Hi {{ name", **PARAMS}
    response = as_user(team.editor).post(urls["prompt"], data)
    assert response.status_code == 400
    body = response.content.decode()
    assert "Not saved." in body and "Hi {{ name</textarea>" in body


def test_stale_save_names_who_changed_it_and_keeps_both_texts(as_user, team, urls, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    opened_at = prompt.revision
    services.prompt_update(actor=team.admin, prompt=prompt, base_revision=opened_at, template="Admin's {{ name }}")
    data = {"save": "1", "base_revision": opened_at, "template": "Editor's {{ name }}", **PARAMS}
    response = as_user(team.editor).post(urls["prompt"], data)
    assert response.status_code == 409
    body = response.content.decode()
    assert team.admin.get_username() in body
    assert "Editor&#x27;s {{ name }}</textarea>" in body  # the engineer's text is kept
    assert "Admin&#x27;s {{ name }}" in body  # and theirs is shown
    prompt.refresh_from_db()
    assert prompt.template == "Admin's {{ name }}"
    # Replacing theirs is an explicit choice naming the revision it replaces (test_editor_conflict.py).
    data["replace"] = prompt.revision
    assert as_user(team.editor).post(urls["prompt"], data).status_code == 302
    prompt.refresh_from_db()
    assert prompt.template == "Editor's {{ name }}"


def test_rename_and_delete(as_user, team, urls, prompt_set):
    client = as_user(team.editor)
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    response = client.post(urls["prompt"] + "rename/", {"new_key": "greeting.hello", "base_revision": prompt.revision})
    assert response["Location"].endswith("/prompts/greeting.hello/")
    bad = client.post(urls["base"] + "prompts/greeting.hello/rename/", {"new_key": "Not Valid"})
    assert bad.status_code == 400 and 'value="Not Valid"' in bad.content.decode()
    assert "Delete <span" in client.get(urls["base"] + "prompts/greeting.hello/delete/").content.decode()
    client.post(urls["base"] + "prompts/greeting.hello/delete/", {})
    assert not Prompt.objects.filter(prompt_set=prompt_set, key="greeting.hello").exists()


def test_search_returns_only_matching_rows_to_htmx(as_user, team, urls):
    response = as_user(team.viewer).get(urls["set"] + "?q=sorry", headers={"HX-Request": "true"})
    body = response.content.decode()
    assert body.lstrip().startswith('<tbody id="prompt-rows">')
    assert "errors.not_found" in body and "welcome.message" not in body


def test_a_page_rerendered_from_an_unsaved_post_guards_against_leaving(as_user, team, urls, prompt_set):
    client = as_user(team.editor)
    assert "data-unsaved" not in client.get(urls["prompt"]).content.decode()
    data = {"template": "Hi {{ name }} {{ city }}", "base_revision": 1, "declare": "city", **PARAMS}
    assert "data-guard-unsaved data-unsaved" in client.post(urls["prompt"], data).content.decode()
