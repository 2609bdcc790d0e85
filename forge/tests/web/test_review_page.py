"""The review page (issue 14): by default the version in review against what is live in production (or the
project's most protected environment when none is named production, and it says which), a switch to the previous
version, the prompts that changed, and approve / request changes beside it."""

from __future__ import annotations

import pytest

from anvil_forge.prompts import services
from anvil_forge.prompts.models import Environment, VersionState
from forge.tests import factories

pytestmark = pytest.mark.django_db


def _three_versions(prompt_set, team):
    """v1 live in production (welcome.message 'Hello'), v2 approved (errors.not_found changed), v3 in review
    (welcome.message changed)."""
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.owner)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "errors.not_found", "Nothing called {{ thing }} here.", actor=team.editor)
    factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Welcome aboard, {{ name }}!", actor=team.editor)
    return services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set, note="Warmer welcome")


def _changed(body: str) -> str:
    return body.split('data-testid="changed-prompts"', 1)[1].split("</ul>", 1)[0]


def test_by_default_the_review_compares_with_what_is_live_in_production(as_user, team, prompt_set, urls):
    _three_versions(prompt_set, team)
    body = as_user(team.reviewer).get(urls["set"] + "review/").content.decode()
    assert "Compared with version 1, live in <strong>production</strong>" in body
    changed = _changed(body)
    assert "welcome.message" in changed and "errors.not_found" in changed  # v2's change is not live yet either
    assert "Warmer welcome" in body
    assert "Approve version 3" in body and "Request changes" in body


def test_the_switch_compares_with_the_previous_version(as_user, team, prompt_set, urls):
    _three_versions(prompt_set, team)
    body = as_user(team.reviewer).get(urls["set"] + "review/?against=previous").content.decode()
    assert "Compared with version 2, the previous version." in body
    changed = _changed(body)
    assert "welcome.message" in changed and "errors.not_found" not in changed
    assert 'href="?against=production"' in body


def test_nothing_live_yet_shows_every_prompt_as_new(as_user, team, prompt_set, urls):
    factories.make_submitted_version(prompt_set, author=team.editor)
    body = as_user(team.reviewer).get(urls["set"] + "review/").content.decode()
    assert "Nothing is live in <strong>production</strong> yet" in body
    assert _changed(body).count("added") == 2


def test_without_an_environment_named_production_the_most_protected_one_is_used_and_named(as_user, team):
    project = factories.make_project(team.organisation, actor=team.owner)
    Environment.objects.filter(project=project, slug="production").update(slug="prod")
    prompt_set = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, "prod", actor=team.owner)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Hi {{ name }}", actor=team.editor)
    factories.make_submitted_version(prompt_set, author=team.editor)
    path = f"/o/{team.organisation.slug}/p/{project.slug}/s/{prompt_set.slug}/review/"
    body = as_user(team.reviewer).get(path).content.decode()
    assert "live in <strong>prod</strong>" in body and "prod is its most protected one" in body


def test_approving_from_the_review_page_locks_the_set_and_a_refusal_stays_on_the_review_page(as_user, team,
                                                                                           prompt_set, urls):
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    client = as_user(team.reviewer)
    refused = client.post(urls["set"] + "review/", {"version": version.number, "decision": "changes"})
    assert refused.status_code == 400 and "a comment is required" in refused.content.decode()
    assert 'data-testid="changed-prompts"' in refused.content.decode()
    approved = client.post(urls["set"] + "review/", {"version": version.number, "decision": "approve"})
    assert approved.status_code == 302
    version.refresh_from_db()
    assert version.state == VersionState.APPROVED


def test_a_viewer_reads_the_review_but_is_offered_no_decision(as_user, team, prompt_set, urls):
    factories.make_submitted_version(prompt_set, author=team.editor)
    body = as_user(team.viewer).get(urls["set"] + "review/").content.decode()
    assert 'data-testid="changed-prompts"' in body and "Approve version" not in body


def test_the_set_page_links_the_review_and_a_set_without_one_says_so(as_user, team, prompt_set, urls):
    client = as_user(team.reviewer)
    assert "Nothing in this set is waiting for review." in client.get(urls["set"] + "review/").content.decode()
    factories.make_submitted_version(prompt_set, author=team.editor)
    assert f'href="{urls["set"]}review/"' in client.get(urls["set"]).content.decode()


def test_the_author_is_not_offered_approval_of_their_own_version_under_four_eyes(as_user, team, prompt_set, urls):
    factories.make_submitted_version(prompt_set, author=team.admin)
    client = as_user(team.admin)
    for path in (urls["set"] + "review/", urls["set"]):
        body = client.get(path).content.decode()
        assert "Approve version 1" not in body and "Request changes" in body, path
    assert 'data-testid="own-version"' in client.get(urls["set"] + "review/").content.decode()
    assert "Approve version 1" in as_user(team.owner).get(urls["set"] + "review/").content.decode()
