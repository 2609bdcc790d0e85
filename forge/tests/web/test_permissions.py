"""Every action is shown only to the roles that may take it, and refused on the server for the rest."""

from __future__ import annotations

import pytest

from anvil_forge.distribution.models import AccessToken
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSet, PromptSetVersion
from forge.tests import factories

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "editor", "reviewer", "viewer"]


def _allowed(*roles):
    return [(role, role in roles) for role in ROLES]


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin", "editor"))
def test_adding_a_prompt_is_shown_and_allowed_only_to_writers(as_user, team, urls, prompt_set, role, allowed):
    client = as_user(team.member(role))
    assert ("Add a prompt" in client.get(urls["set"]).content.decode()) is allowed
    response = client.post(urls["base"] + "add/", {"key": "new.prompt"})
    assert Prompt.objects.filter(prompt_set=prompt_set, key="new.prompt").exists() is allowed
    assert response.status_code == (302 if allowed else 403)


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin", "editor"))
def test_saving_a_prompt_is_allowed_only_to_writers(as_user, team, urls, prompt_set, role, allowed):
    client = as_user(team.member(role))
    page = client.get(urls["prompt"]).content.decode()
    assert ('name="save"' in page) is allowed
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    response = client.post(
        urls["prompt"],
        {
            "save": "1",
            "base_revision": prompt.revision,
            "template": "Hi {{ name }}",
            "param-0-name": "name",
            "param-0-type": "string",
            "param-0-required": "1",
        },
    )
    prompt.refresh_from_db()
    assert (prompt.template == "Hi {{ name }}") is allowed
    assert response.status_code == (302 if allowed else 403)


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin", "editor"))
def test_submitting_for_review_is_allowed_only_to_writers(as_user, team, urls, prompt_set, role, allowed):
    client = as_user(team.member(role))
    assert ("Submit for review" in client.get(urls["set"]).content.decode()) is allowed
    response = client.post(urls["base"] + "submit/", {"base_revision": prompt_set.revision})
    assert PromptSetVersion.objects.filter(prompt_set=prompt_set).exists() is allowed
    assert response.status_code == (302 if allowed else 403)


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin", "reviewer"))
def test_approving_is_shown_and_allowed_only_to_reviewers(as_user, team, urls, prompt_set, role, allowed):
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    client = as_user(team.member(role))
    assert ("Approve version 1" in client.get(urls["set"]).content.decode()) is allowed
    response = client.post(urls["base"] + "review/", {"version": 1, "decision": "approve", "comment": "ok"})
    version.refresh_from_db()
    assert (version.state == "approved") is allowed
    assert response.status_code == (302 if allowed else 403)


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin", "editor"))
def test_publishing_is_shown_and_allowed_only_to_publishers(as_user, team, urls, prompt_set, role, allowed):
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    client = as_user(team.member(role))
    assert ("Publish to production" in client.get(urls["versions"]).content.decode()) is allowed
    response = client.post(urls["base"] + "versions/1/publish/production/")
    assert prompt_set.releases.exists() is allowed
    assert response.status_code == (302 if allowed else 403)


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin", "editor"))
def test_rollback_is_allowed_only_to_publishers(as_user, team, urls, prompt_set, role, allowed):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Changed {{ name }}", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v2, actor=team.editor)
    client = as_user(team.member(role))
    assert ("Roll back production to version 1" in client.get(urls["versions"]).content.decode()) is allowed
    response = client.post(urls["base"] + "versions/1/rollback/production/")
    assert PromptSetVersion.objects.filter(prompt_set=prompt_set, number=3).exists() is allowed
    assert response.status_code == (302 if allowed else 403)


@pytest.mark.parametrize(("role", "allowed"), _allowed("owner", "admin"))
def test_tokens_are_shown_and_made_only_by_owners_and_admins(as_user, team, urls, project, role, allowed):
    client = as_user(team.member(role))
    assert ("Create token" in client.get(urls["tokens"]).content.decode()) is allowed
    response = client.post(urls["tokens"], {"target": f"{project.slug}/production", "kind": "live", "name": "web"})
    assert AccessToken.objects.filter(project=project).exists() is allowed
    assert response.status_code == (200 if allowed else 403)


def test_another_organisations_owner_cannot_act_and_learns_nothing(as_user, other_team, urls, prompt_set):
    client = as_user(other_team.owner)
    for path, data in [
        (urls["base"] + "add/", {"key": "x.y"}),
        (urls["base"] + "submit/", {}),
        (urls["base"] + "reopen/", {}),
        (urls["prompt"], {"save": "1", "base_revision": 1, "template": "x"}),
        (urls["prompt"] + "check/", {"template": "{{ x }}"}),
        (urls["base"] + "versions/1/publish/production/", {}),
        (urls["tokens"], {"target": "x/production", "name": "t"}),
    ]:
        assert client.post(path, data).status_code == 404, path
    assert PromptSet.objects.get(pk=prompt_set.pk).prompts.count() == 2
