"""Nothing typed is lost when the session ends: fragments answer 401 (never the sign-in page), Save goes
through sign-in and back to the editor."""

from __future__ import annotations

import pytest
from django.test import Client

from anvil_forge.prompts.models import Prompt

pytestmark = pytest.mark.django_db

PARAMS = {"param-0-name": "name", "param-0-type": "string", "param-0-required": "1"}
HTMX = {"HX-Request": "true"}


@pytest.mark.parametrize("fragment", ["check/", "preview/"])
def test_a_fragment_after_the_session_ended_answers_401_without_the_sign_in_page(urls, fragment):
    response = Client().post(urls["prompt"] + fragment, {"template": "Hi {{ name }}", **PARAMS}, headers=HTMX)
    assert response.status_code == 401
    assert response["HX-Reswap"] == "none" and response["X-Anvil-Problem"] == "signed-out"
    body = response.content.decode()
    assert "signed out" in body and "<form" not in body and "Username" not in body


def test_a_page_request_after_the_session_ended_still_goes_to_sign_in(urls):
    response = Client().get(urls["prompt"])
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_an_htmx_get_of_a_signed_in_page_is_untouched(as_user, team, urls):
    response = as_user(team.viewer).get(urls["set"] + "?q=sorry", headers=HTMX)
    assert response.status_code == 200 and "X-Anvil-Problem" not in response


def test_a_fragment_refused_by_the_csrf_check_says_so_without_a_page(team, urls):
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.editor)
    response = client.post(urls["prompt"] + "check/", {"template": "x"}, headers=HTMX)
    assert response.status_code == 403 and response["X-Anvil-Problem"] == "csrf"
    assert response["HX-Reswap"] == "none" and "<html" not in response.content.decode()


def test_a_view_refusal_of_an_htmx_post_is_not_taken_for_a_csrf_failure(as_user, team, urls, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {"save": "1", "base_revision": prompt.revision, "template": "Hi {{ name }}", **PARAMS}
    response = as_user(team.viewer).post(urls["prompt"], data, headers=HTMX)
    assert response.status_code == 403 and "X-Anvil-Problem" not in response


def test_save_after_the_session_ended_goes_to_sign_in_and_back_to_the_editor(team, urls, prompt_set):
    client = Client()
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {"save": "1", "base_revision": prompt.revision, "template": "Kept {{ name }}", **PARAMS}
    response = client.post(urls["prompt"], data)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=") and urls["prompt"] in response["Location"]
    assert Prompt.objects.get(pk=prompt.pk).template != "Kept {{ name }}"  # nothing saved; the browser keeps the draft


def test_the_page_after_a_save_tells_the_browser_to_drop_its_draft_once(as_user, team, urls, prompt_set):
    client = as_user(team.editor)
    body = client.get(urls["prompt"]).content.decode()
    org, project = team.organisation.slug, prompt_set.project.slug
    assert f'data-draft-key="{org}/{project}/{prompt_set.slug}/welcome.message"' in body
    assert "data-saved" not in body
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {"save": "1", "base_revision": prompt.revision, "template": "Saved {{ name }}", **PARAMS}
    after = client.post(urls["prompt"], data, follow=True).content.decode()
    assert "data-saved" in after and f'data-revision="{prompt.revision + 1}"' in after
    assert "data-saved" not in client.get(urls["prompt"]).content.decode()


def test_a_refused_save_is_marked_unsaved_so_the_browser_keeps_its_draft(as_user, team, urls, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    data = {"save": "1", "base_revision": prompt.revision, "template": "Broken {{ name", **PARAMS}
    body = as_user(team.editor).post(urls["prompt"], data).content.decode()
    assert "data-unsaved" in body and "data-saved" not in body
