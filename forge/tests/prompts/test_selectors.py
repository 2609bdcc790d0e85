"""Actor-scoped reads: members see their organisation's objects; everyone else gets NotFound."""

from __future__ import annotations

import pytest

from anvil_forge.core.exceptions import NotFound
from anvil_forge.prompts import selectors
from forge.tests import factories


def test_organisations_for_lists_only_memberships(team, other_team):
    assert list(selectors.organisations_for(team.viewer)) == [team.organisation]
    from django.contrib.auth.models import AnonymousUser

    assert list(selectors.organisations_for(AnonymousUser())) == []


def test_every_role_reads_the_project_its_sets_prompts_and_versions(team, prompt_set):
    project = prompt_set.project
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    for role in ("owner", "admin", "editor", "reviewer", "viewer"):
        actor = team.member(role)
        found = selectors.project_get(actor=actor, organisation_slug=team.organisation.slug, project_slug=project.slug)
        assert found == project
        assert list(selectors.projects_for(actor=actor, organisation=team.organisation)) == [project]
        assert selectors.prompt_set_get(actor=actor, project=project, slug=prompt_set.slug) == prompt_set
        assert list(selectors.prompt_sets_for(actor=actor, project=project)) == [prompt_set]
        assert selectors.prompt_get(actor=actor, prompt_set=prompt_set, key="welcome.message").key == "welcome.message"
        assert [v.number for v in selectors.versions_for(actor=actor, prompt_set=prompt_set)] == [1]
        assert selectors.version_get(actor=actor, prompt_set=prompt_set, number=1) == version
        assert selectors.environment_get(actor=actor, project=project, slug="staging").slug == "staging"


def test_another_organisations_member_gets_not_found_that_looks_like_a_missing_object(team, other_team, prompt_set):
    project = prompt_set.project
    outsider = other_team.owner
    with pytest.raises(NotFound) as caught:
        selectors.project_get(actor=outsider, organisation_slug=team.organisation.slug, project_slug=project.slug)
    with pytest.raises(NotFound) as truly_missing:
        selectors.project_get(actor=outsider, organisation_slug=team.organisation.slug, project_slug="nope")
    assert caught.value.message.replace(project.slug, "X") == truly_missing.value.message.replace("nope", "X")
    for read in (
        lambda: selectors.organisation_get(actor=outsider, slug=team.organisation.slug),
        lambda: selectors.projects_for(actor=outsider, organisation=team.organisation),
        lambda: selectors.prompt_set_get(actor=outsider, project=project, slug=prompt_set.slug),
        lambda: selectors.prompt_sets_for(actor=outsider, project=project),
        lambda: selectors.prompts_for(actor=outsider, prompt_set=prompt_set),
        lambda: selectors.prompt_get(actor=outsider, prompt_set=prompt_set, key="welcome.message"),
        lambda: selectors.versions_for(actor=outsider, prompt_set=prompt_set),
        lambda: selectors.version_get(actor=outsider, prompt_set=prompt_set, number=1),
        lambda: selectors.environments_for(actor=outsider, project=project),
        lambda: selectors.members_for(actor=outsider, organisation=team.organisation),
    ):
        with pytest.raises(NotFound):
            read()


def test_missing_objects_are_not_found_with_their_name(team, prompt_set):
    with pytest.raises(NotFound, match="no prompt set nope"):
        selectors.prompt_set_get(actor=team.viewer, project=prompt_set.project, slug="nope")
    with pytest.raises(NotFound, match="no version 9"):
        selectors.version_get(actor=team.viewer, prompt_set=prompt_set, number=9)
    with pytest.raises(NotFound, match="no environment moon"):
        selectors.environment_get(actor=team.viewer, project=prompt_set.project, slug="moon")


def test_prompts_for_searches_ids_templates_and_descriptions(team, prompt_set):
    assert [p.key for p in selectors.prompts_for(actor=team.viewer, prompt_set=prompt_set, search="WELCOME")] == [
        "welcome.message"
    ]
    assert [p.key for p in selectors.prompts_for(actor=team.viewer, prompt_set=prompt_set, search="could not")] == [
        "errors.not_found"
    ]
    assert len(selectors.prompts_for(actor=team.viewer, prompt_set=prompt_set)) == 2


def test_current_releases_are_the_newest_per_environment_and_set(team, project, prompt_set):
    other_set = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, "production", actor=team.editor)
    factories.make_release(v1, "staging", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v2, "production", actor=team.editor)
    o1 = factories.make_approved_version(other_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(o1, "staging", actor=team.editor)

    current = {(r.prompt_set.slug, r.environment.slug): r.version.number for r in selectors.current_releases(project)}

    assert current == {
        (prompt_set.slug, "production"): 2,
        (prompt_set.slug, "staging"): 1,
        (other_set.slug, "staging"): 1,
    }
    production = factories.environment(project, "production")
    assert selectors.current_release(environment=production, prompt_set=prompt_set).version == v2
    assert selectors.current_release(environment=production, prompt_set=other_set) is None
