"""The review workflow end to end: submit, approve, publish, request changes, reopen, rollback."""

from __future__ import annotations

import pytest

from anvil_client.bundle import content_digest
from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.distribution.models import Release
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


def test_approve_by_the_author_is_allowed_when_the_project_turns_four_eyes_off(team):
    project = factories.make_project(team.organisation, actor=team.owner, require_four_eyes=False)
    prompt_set = factories.make_prompt_set_with_prompts(project, actor=team.admin)
    version = services.prompt_set_submit(actor=team.admin, prompt_set=prompt_set)

    assert services.version_approve(actor=team.admin, version=version).state == VersionState.APPROVED


def test_reviewer_of_another_organisation_gets_not_found(team, other_team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    with pytest.raises(NotFound):
        services.version_approve(actor=other_team.reviewer, version=version)
    with pytest.raises(NotFound):
        services.version_request_changes(actor=other_team.reviewer, version=version, comment="no")


def test_submit_refuses_empty_set_non_live_set_and_stale_base_revision(team, project, prompt_set):
    empty = factories.make_prompt_set_with_prompts(project, actor=team.editor, prompts=[])
    with pytest.raises(ApplicationError, match="no prompts"):
        services.prompt_set_submit(actor=team.editor, prompt_set=empty)

    seen = PromptSet.objects.get(pk=prompt_set.pk).revision
    factories.edit_prompt(prompt_set, "welcome.message", "Changed {{ name }}", actor=team.admin)
    with pytest.raises(Conflict, match="changed since you opened it"):
        services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set, base_revision=seen)

    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    with pytest.raises(Conflict, match="only a LIVE set can be submitted"):
        services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    with pytest.raises(PermissionDenied):
        services.prompt_set_submit(actor=team.reviewer, prompt_set=empty)


def test_request_changes_needs_a_comment_rejects_version_and_reopens_set(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    with pytest.raises(ApplicationError, match="comment is required"):
        services.version_request_changes(actor=team.reviewer, version=version, comment="   ")

    rejected = services.version_request_changes(actor=team.reviewer, version=version, comment="Too formal")

    assert rejected.state == VersionState.REJECTED
    assert rejected.review_comment == "Too formal"
    assert PromptSet.objects.get(pk=prompt_set.pk).status == SetStatus.LIVE
    with pytest.raises(Conflict, match="already had changes requested"):
        services.version_approve(actor=team.reviewer, version=version)
    factories.edit_prompt(prompt_set, "welcome.message", "Hi {{ name }}", actor=team.editor)
    second = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    assert second.number == 2
    assert type(version).objects.get(pk=version.pk).state == VersionState.REJECTED


def test_versions_are_immutable_snapshots_later_edits_do_not_change_them(team, prompt_set):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    digest, snapshot = version.digest, version.snapshot

    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Something else", actor=team.editor)

    version.refresh_from_db()
    assert (version.digest, version.snapshot) == (digest, snapshot)


def test_reopen_only_from_locked_and_editing_continues_from_locked_content(team, prompt_set):
    with pytest.raises(Conflict, match="only a LOCKED set can be reopened"):
        services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    with pytest.raises(PermissionDenied):
        services.prompt_set_reopen(actor=team.reviewer, prompt_set=prompt_set)

    reopened = services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)

    assert reopened.status == SetStatus.LIVE
    current = sorted((p.key, p.template) for p in reopened.prompts.all())
    assert current == [(p["id"], p["template"]) for p in version.snapshot["prompts"]]


def test_publishing_a_version_in_review_to_production_is_refused(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    with pytest.raises(ApplicationError, match="production takes only approved versions"):
        factories.make_release(version, "production", actor=team.editor)
    assert not Release.objects.exists()


def test_a_version_in_review_may_go_to_staging_that_accepts_review_versions(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    release = factories.make_release(version, "staging", actor=team.editor)

    assert release.environment.slug == "staging"


def test_a_version_in_review_is_refused_by_an_environment_not_accepting_review_versions(team, project, prompt_set):
    services.environment_create(actor=team.admin, project=project, slug="qa")
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    with pytest.raises(ApplicationError, match="qa takes only approved versions"):
        factories.make_release(version, "qa", actor=team.editor)


def test_a_rejected_version_is_never_published(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_request_changes(actor=team.reviewer, version=version, comment="No")

    with pytest.raises(ApplicationError, match="changes requested"):
        factories.make_release(version, "staging", actor=team.editor)


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_roles_without_publish_cannot_publish_or_roll_back(team, prompt_set, role):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    with pytest.raises(PermissionDenied):
        factories.make_release(version, "production", actor=team.member(role))
    with pytest.raises(PermissionDenied):
        services.version_rollback(actor=team.member(role), version=version)


def test_publishing_to_another_projects_environment_is_not_found(team, prompt_set):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    elsewhere = factories.make_project(team.organisation, actor=team.owner)

    with pytest.raises(NotFound):
        services.version_publish(
            actor=team.editor, version=version, environment=factories.environment(elsewhere, "production")
        )


def test_another_organisation_cannot_publish(team, other_team, prompt_set):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    with pytest.raises(NotFound):
        factories.make_release(version, "production", actor=other_team.owner)


def test_publishing_the_live_version_again_or_an_older_one_is_a_conflict(team, prompt_set):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    with pytest.raises(Conflict, match="already live in production"):
        factories.make_release(v1, actor=team.editor)

    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v2, actor=team.editor)
    with pytest.raises(Conflict, match="Roll back instead"):
        factories.make_release(v1, actor=team.editor)
    assert Release.objects.filter(environment__slug="production").count() == 2


def test_publish_announces_the_release_inside_its_transaction(team, prompt_set, monkeypatch):
    from django.db import transaction

    from anvil_forge.distribution import events

    seen = []
    def record(release):
        seen.append((release.pk, transaction.get_connection().in_atomic_block))

    monkeypatch.setattr(events, "release_published", record)
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)

    release = factories.make_release(version, actor=team.editor)

    assert seen == [(release.pk, True)]


def test_rollback_makes_a_new_approved_version_with_the_old_content_ready_to_publish(team, prompt_set):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "A worse greeting, {{ name }}", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v2, actor=team.editor)

    v3 = services.version_rollback(actor=team.editor, version=v1)

    assert v3.number == 3
    assert v3.state == VersionState.APPROVED
    assert v3.rollback_of == v1
    assert (v3.snapshot, v3.digest) == (v1.snapshot, v1.digest)
    # Nobody reviewed v3: it records who rolled back and which approved version it copies.
    assert v3.created_by == team.editor and v3.reviewed_by is None and v3.reviewed_at is None
    release = factories.make_release(v3, actor=team.editor)
    assert release.version == v3
    assert AuditEvent.objects.filter(action="version.rollback", object_id=str(v3.pk)).exists()


def test_rollback_refuses_unapproved_and_newest_versions(team, prompt_set):
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    with pytest.raises(Conflict, match="already the newest"):
        services.version_rollback(actor=team.editor, version=v1)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    v2 = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_request_changes(actor=team.reviewer, version=v2, comment="no")
    factories.edit_prompt(prompt_set, "welcome.message", "v3 {{ name }}", actor=team.editor)
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    with pytest.raises(ApplicationError, match="never approved"):
        services.version_rollback(actor=team.editor, version=v2)


def test_every_change_of_the_whole_journey_leaves_one_audit_row(team, project):
    start = AuditEvent.objects.count()
    prompt_set = services.prompt_set_create(actor=team.editor, project=project, slug="journey")
    prompt = services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="a.b", template="Hi {{ x }}")
    prompt = services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, template="Yo")
    prompt = services.prompt_rename(actor=team.editor, prompt=prompt, new_key="a.c")
    services.prompt_create(actor=team.editor, prompt_set=prompt_set, key="gone", template="x")
    services.prompt_delete(actor=team.editor, prompt=prompt_set.prompts.get(key="gone"))
    v1 = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_request_changes(actor=team.reviewer, version=v1, comment="again")
    v2 = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_approve(actor=team.reviewer, version=v2)
    factories.make_release(v2, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    services.environment_create(actor=team.admin, project=project, slug="qa")
    services.project_update(actor=team.owner, project=project, require_four_eyes=False)

    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True)[start:])
    assert actions == [
        "prompt_set.create",
        "prompt.create",
        "prompt.update",
        "prompt.rename",
        "prompt.create",
        "prompt.delete",
        "prompt_set.submit",
        "version.request_changes",
        "prompt_set.submit",
        "version.approve",
        "release.publish",
        "prompt_set.reopen",
        "environment.create",
        "project.update",
    ]
    events = AuditEvent.objects.order_by("id")[start:]
    assert all(e.organisation_id == team.organisation.pk and e.project_id == project.pk for e in events)


def test_submit_records_provenance_while_the_content_is_exactly_a_copied_peer_version(team, prompt_set):
    from anvil_forge.peering.models import PeerCopy, SetSource

    copied_digest = content_digest(
        sorted(
            (
                {
                    "id": p.key,
                    "template": p.template,
                    "description": p.description,
                    "parameters": p.parameters,
                    "metadata": p.metadata,
                }
                for p in prompt_set.prompts.all()
            ),
            key=lambda p: p["id"],
        )
    )
    source = SetSource.objects.create(
        prompt_set=prompt_set,
        peer_name="upstream",
        peer_url="http://127.0.0.1:9/",
        remote_organisation="them",
        remote_project="bot",
        remote_set="core",
        copied_version=4,
        copied_digest=copied_digest,
    )
    PeerCopy.objects.create(
        source=source, remote_version=4, content_digest=copied_digest, bundle_digest="x", copied_by_label="e"
    )

    v1 = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_request_changes(actor=team.reviewer, version=v1, comment="tweak it")
    factories.edit_prompt(prompt_set, "welcome.message", "Edited locally {{ name }}", actor=team.editor)
    v2 = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    assert v1.digest == copied_digest
    assert v1.provenance == {
        "peer": "upstream",
        "url": "http://127.0.0.1:9/",
        "organisation": "them",
        "project": "bot",
        "set": "core",
        "version": 4,
        "digest": copied_digest,
    }
    assert AuditEvent.objects.get(action="prompt_set.submit", object_id=str(v1.pk)).data["provenance"] == v1.provenance
    assert v2.provenance is None


def test_a_saved_versions_content_cannot_be_changed_through_the_model_or_the_queryset(team, prompt_set):
    from anvil_forge.prompts.models import PromptSetVersion, VersionContentChanged

    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    original = (version.snapshot, version.digest, version.number)

    version.snapshot = {"prompts": []}
    with pytest.raises(VersionContentChanged):
        version.save()
    with pytest.raises(VersionContentChanged):
        PromptSetVersion.objects.filter(pk=version.pk).update(digest="sha256:" + "0" * 64)
    with pytest.raises(VersionContentChanged):
        PromptSetVersion.objects.bulk_update([version], ["number"])

    stored = PromptSetVersion.objects.get(pk=version.pk)
    assert (stored.snapshot, stored.digest, stored.number) == original
    stored.review_comment = "review fields may change"
    stored.save()
