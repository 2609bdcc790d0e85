"""Rolling an environment back (prompts.rollback): one step that makes and publishes a version, true in the audit."""

from __future__ import annotations

import pytest

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, PermissionDenied
from anvil_forge.distribution.models import Release
from anvil_forge.prompts import services
from anvil_forge.prompts.models import PromptSetVersion, VersionState
from anvil_forge.prompts.rollback import approval_of, rollback_environment, rollback_targets
from forge.tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(team, prompt_set):
    """v1 live in production, then v2 (other content) live there; v3 approved, never published."""
    v1 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v1, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Second {{ name }}", actor=team.editor)
    v2 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v2, actor=team.editor)
    services.prompt_set_reopen(actor=team.editor, prompt_set=prompt_set)
    factories.edit_prompt(prompt_set, "welcome.message", "Third {{ name }}", actor=team.editor)
    v3 = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    return v1, v2, v3


def test_rollback_makes_and_publishes_a_copy_that_names_who_rolled_back_and_what_it_copies(team, project, history):
    v1, _v2, _ = history
    production = factories.environment(project)

    release = rollback_environment(actor=team.editor, prompt_set=v1.prompt_set, number=1, environment=production)

    made = release.version
    assert (made.number, made.state, made.digest, made.snapshot) == (4, VersionState.APPROVED, v1.digest, v1.snapshot)
    assert made.rollback_of == v1 and made.created_by == team.editor
    assert made.reviewed_by is None and made.reviewed_at is None and made.review_comment == ""
    assert Release.objects.filter(environment=production, prompt_set=v1.prompt_set).order_by("-id").first() == release
    actions = list(
        AuditEvent.objects.filter(action__in=["version.rollback", "release.publish"]).order_by("-id")[:2]
    )
    assert [(e.action, e.actor_label) for e in reversed(actions)] == [
        ("version.rollback", team.editor.username),
        ("release.publish", team.editor.username),
    ]
    assert actions[1].data["rollback_of"] == 1 and actions[0].data["previous_version"] == 2


def test_the_approval_shown_for_a_rollback_is_the_copied_versions_never_a_later_time(team, project, history):
    v1, _, _ = history
    production = factories.environment(project)
    made = rollback_environment(actor=team.editor, prompt_set=v1.prompt_set, number=1, environment=production).version

    approval = approval_of(made)
    assert approval.version == v1 and not approval.is_own
    assert approval.reviewed_by == team.reviewer and approval.reviewed_at == v1.reviewed_at
    assert approval.reviewed_at < made.created_at
    # A rollback to that rollback still traces back to the review that approved the content.
    services.prompt_set_reopen(actor=team.editor, prompt_set=v1.prompt_set)
    factories.edit_prompt(v1.prompt_set, "welcome.message", "Fifth {{ name }}", actor=team.editor)
    v5 = factories.make_approved_version(v1.prompt_set, author=team.editor, reviewer=team.reviewer)
    factories.make_release(v5, actor=team.editor)
    again = rollback_environment(actor=team.owner, prompt_set=v1.prompt_set, number=4, environment=production)
    assert again.version.rollback_of.number == 4 and approval_of(again.version).version == v1
    assert approval_of(v5).is_own and approval_of(v5).reviewed_by == team.reviewer


def test_only_versions_live_there_before_are_targets(team, project, history):
    v1, _v2, _v3 = history
    production = factories.environment(project)
    staging = factories.environment(project, "staging")
    assert rollback_targets(prompt_set=v1.prompt_set, environment=production) == [v1]
    assert rollback_targets(prompt_set=v1.prompt_set, environment=staging) == []
    with pytest.raises(ApplicationError, match="never live in production"):
        rollback_environment(actor=team.editor, prompt_set=v1.prompt_set, number=3, environment=production)
    with pytest.raises(ApplicationError, match="what production runs now"):
        rollback_environment(actor=team.editor, prompt_set=v1.prompt_set, number=2, environment=production)
    assert PromptSetVersion.objects.filter(prompt_set=v1.prompt_set).count() == 3


def test_after_a_rollback_the_same_content_is_not_offered_again(team, project, history):
    v1, v2, _ = history
    production = factories.environment(project)
    rollback_environment(actor=team.editor, prompt_set=v1.prompt_set, number=1, environment=production)
    assert rollback_targets(prompt_set=v1.prompt_set, environment=production) == [v2]


@pytest.mark.parametrize("role", ["reviewer", "viewer"])
def test_roles_that_may_not_publish_may_not_roll_back(team, project, history, role):
    v1 = history[0]
    with pytest.raises(PermissionDenied):
        rollback_environment(
            actor=team.member(role), prompt_set=v1.prompt_set, number=1, environment=factories.environment(project)
        )
    assert PromptSetVersion.objects.filter(prompt_set=v1.prompt_set).count() == 3


def test_a_refused_publish_leaves_no_rollback_version_behind(team, project, history):
    v1 = history[0]
    v1.prompt_set.archived_at = v1.created_at
    v1.prompt_set.save(update_fields=["archived_at"])
    with pytest.raises(ApplicationError, match="archived"):
        rollback_environment(
            actor=team.editor, prompt_set=v1.prompt_set, number=1, environment=factories.environment(project)
        )
    assert PromptSetVersion.objects.filter(prompt_set=v1.prompt_set).count() == 3
    assert not AuditEvent.objects.filter(action="version.rollback").exists()
