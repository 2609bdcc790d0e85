"""The review workflow end to end: submit, approve, publish, request changes, reopen, rollback."""

from __future__ import annotations

import pytest

from anvil_client.bundle import content_digest
from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, PermissionDenied
from anvil_forge.prompts import services
from anvil_forge.prompts.models import PromptSet, SetStatus, VersionState
from forge.tests import factories


def test_submit_makes_numbered_version_with_sorted_snapshot_and_digest_and_moves_set_to_review(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    assert version.number == 1
    assert version.state == VersionState.IN_REVIEW
    assert version.created_by == team.editor
    ids = [p["id"] for p in version.snapshot["prompts"]]
    assert ids == ["errors.not_found", "welcome.message"]
    assert version.digest == content_digest(version.snapshot["prompts"])
    assert set(version.snapshot["prompts"][1]) == {"id", "template", "description", "parameters", "metadata"}
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.REVIEW


def test_approve_by_reviewer_locks_set_and_records_reviewer(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    approved = services.version_approve(actor=team.reviewer, version=version, comment="Looks good")

    assert approved.state == VersionState.APPROVED
    assert approved.reviewed_by == team.reviewer
    assert approved.review_comment == "Looks good"
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LOCKED


def test_publish_approved_version_to_production_makes_release(team, prompt_set):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)

    release = factories.make_release(version, "production", actor=team.editor)

    assert release.version == version
    assert release.environment.slug == "production"
    assert release.published_by == team.editor
    assert AuditEvent.objects.filter(action="release.publish", object_id=str(release.pk)).exists()


def test_author_cannot_approve_own_version_when_project_requires_four_eyes(team, prompt_set):
    version = services.prompt_set_submit(actor=team.admin, prompt_set=prompt_set)

    with pytest.raises(ApplicationError, match="four eyes"):
        services.version_approve(actor=team.admin, version=version)


def test_editor_cannot_approve(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    with pytest.raises(PermissionDenied, match="editor"):
        services.version_approve(actor=team.editor, version=version)


def test_second_approval_of_the_same_version_is_a_conflict(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_approve(actor=team.reviewer, version=version)

    with pytest.raises(Conflict, match="already approved"):
        services.version_approve(actor=team.admin, version=version)  # the stale in-memory object says in_review
