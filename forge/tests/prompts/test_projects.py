"""Projects and environments: production always exists and never takes versions in review."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Environment


def test_project_create_makes_production_that_refuses_review_versions(team):
    project = services.project_create(actor=team.admin, organisation=team.organisation, slug="bot", name="Bot")

    environments = list(project.environments.values_list("slug", "accepts_review_versions"))
    assert environments == [("production", False)]
    assert project.require_four_eyes is True
    assert set(AuditEvent.objects.filter(project=project).values_list("action", flat=True)) == {
        "project.create",
        "environment.create",
    }


def test_project_create_needs_admin_or_owner_and_a_valid_unique_slug(team, other_team):
    with pytest.raises(PermissionDenied):
        services.project_create(actor=team.editor, organisation=team.organisation, slug="bot")
    with pytest.raises(NotFound):
        services.project_create(actor=other_team.owner, organisation=team.organisation, slug="bot")
    with pytest.raises(ApplicationError, match="not a valid project slug"):
        services.project_create(actor=team.owner, organisation=team.organisation, slug="Bot Project")
    services.project_create(actor=team.owner, organisation=team.organisation, slug="bot")
    with pytest.raises(Conflict, match="already has a project named bot"):
        services.project_create(actor=team.owner, organisation=team.organisation, slug="bot")


def test_production_never_accepts_review_versions(team, project):
    with pytest.raises(ApplicationError, match="never accepts"):
        services.environment_create(actor=team.admin, project=project, slug="production", accepts_review_versions=True)
    production = project.environments.get(slug="production")
    with pytest.raises(ApplicationError, match="never accepts"):
        services.environment_update(actor=team.admin, environment=production, accepts_review_versions=True)
    assert not Environment.objects.get(pk=production.pk).accepts_review_versions


def test_the_database_itself_refuses_a_production_that_accepts_review_versions(project):
    with pytest.raises(IntegrityError), transaction.atomic():
        Environment.objects.filter(project=project, slug="production").update(accepts_review_versions=True)


def test_environments_are_managed_by_admins_and_owners_only(team, project):
    with pytest.raises(PermissionDenied):
        services.environment_create(actor=team.editor, project=project, slug="qa")
    with pytest.raises(Conflict, match="already has an environment named staging"):
        services.environment_create(actor=team.admin, project=project, slug="staging")
    qa = services.environment_create(actor=team.admin, project=project, slug="qa")
    assert qa.name == "Qa" and not qa.accepts_review_versions

    updated = services.environment_update(actor=team.owner, environment=qa, accepts_review_versions=True)

    assert updated.accepts_review_versions
    assert AuditEvent.objects.get(action="environment.update").data == {
        "from": {"accepts_review_versions": False},
        "to": {"accepts_review_versions": True},
    }


def test_project_update_changes_four_eyes_and_is_owner_only(team, project):
    with pytest.raises(PermissionDenied):
        services.project_update(actor=team.editor, project=project, require_four_eyes=False)
    with pytest.raises(PermissionDenied, match="Only an owner"):
        services.project_update(actor=team.admin, project=project, require_four_eyes=False)
    assert services.project_update(actor=team.admin, project=project, name="Renamed").name == "Renamed"
    updated = services.project_update(actor=team.owner, project=project, require_four_eyes=False)
    assert updated.require_four_eyes is False


def test_prompt_set_slug_rules(team, project):
    with pytest.raises(ApplicationError, match="not a valid prompt set slug"):
        services.prompt_set_create(actor=team.editor, project=project, slug="has space")
    services.prompt_set_create(actor=team.editor, project=project, slug="core")
    with pytest.raises(Conflict):
        services.prompt_set_create(actor=team.editor, project=project, slug="core")
    with pytest.raises(PermissionDenied):
        services.prompt_set_create(actor=team.viewer, project=project, slug="other")


def test_prompt_set_update_renames_and_describes_and_is_audited(team, prompt_set):
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)  # allowed in any status

    updated = services.prompt_set_update(actor=team.editor, prompt_set=prompt_set, name="Core", description="Main")

    assert (updated.name, updated.description) == ("Core", "Main")
    assert AuditEvent.objects.get(action="prompt_set.update").data["to"] == {"name": "Core", "description": "Main"}
    with pytest.raises(PermissionDenied):
        services.prompt_set_update(actor=team.reviewer, prompt_set=prompt_set, name="X")
    with pytest.raises(ApplicationError, match="must not be empty"):
        services.prompt_set_update(actor=team.editor, prompt_set=prompt_set, name="  ")
