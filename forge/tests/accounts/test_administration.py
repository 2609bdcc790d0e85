"""Services behind the administration pages: first run, invitations, passwords, sessions, and the project
settings they reach (environments, four eyes, archived prompt sets)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail as outbox
from django.test import Client
from django.utils import timezone

from anvil_forge.accounts import services
from anvil_forge.accounts.models import Invitation, Membership, Role, SetupLink
from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from anvil_forge.distribution import services as distribution_services
from anvil_forge.prompts import selectors
from anvil_forge.prompts import services as prompt_services
from anvil_forge.prompts.models import Environment
from forge.tests import factories

pytestmark = pytest.mark.django_db
User = get_user_model()
BASE = "http://forge.test"
GOOD_PASSWORD = "a-long-enough-passphrase"


# First run ------------------------------------------------------------------------------------------------


def test_setup_link_exists_only_while_there_is_no_user_and_stays_the_same():
    token = services.setup_link_ensure()
    assert token and services.setup_link_ensure() == token
    assert services.setup_link_usable(token)
    factories.make_user()
    assert services.setup_link_ensure() is None
    assert not services.setup_link_usable(token)


def test_setup_complete_makes_the_owner_organisation_and_project_once():
    token = services.setup_link_ensure()
    result = services.setup_complete(
        token=token, username="ada", password=GOOD_PASSWORD, organisation_slug="acme", organisation_name="Acme",
        project_slug="support-bot", staging=True,
    )
    assert Membership.objects.get(user=result.user).role == Role.OWNER
    assert [e.slug for e in Environment.objects.filter(project=result.project)] == ["production", "staging"]
    assert Environment.objects.get(project=result.project, slug="staging").accepts_review_versions
    assert SetupLink.objects.get(token=token).used_at is not None
    assert AuditEvent.objects.filter(action="setup.complete", actor=result.user).exists()
    with pytest.raises(Conflict, match="used already"):
        services.setup_complete(
            token=token, username="eve", password=GOOD_PASSWORD, organisation_slug="evil", project_slug="x"
        )
    assert not User.objects.filter(username="eve").exists()


def test_setup_complete_is_all_or_nothing():
    token = services.setup_link_ensure()
    with pytest.raises(ApplicationError, match="not a valid project slug"):
        services.setup_complete(
            token=token, username="ada", password=GOOD_PASSWORD, organisation_slug="acme", project_slug="Bad Slug"
        )
    assert not User.objects.exists() and services.setup_link_usable(token)


def test_setup_refuses_a_weak_password_and_a_wrong_token():
    token = services.setup_link_ensure()
    with pytest.raises(ApplicationError, match="too weak"):
        services.setup_complete(token=token, username="ada", password="short", organisation_slug="a", project_slug="p")
    with pytest.raises(Conflict):
        services.setup_complete(
            token="wrong", username="ada", password=GOOD_PASSWORD, organisation_slug="a", project_slug="p"
        )


# Invitations ----------------------------------------------------------------------------------------------


def test_admin_invites_and_a_new_person_joins_once(team):
    issued = services.invitation_create(actor=team.admin, organisation=team.organisation, role="editor", base_url=BASE)
    assert issued.url.startswith(BASE + "/invite/") and not issued.emailed
    token = issued.url.rsplit("/", 2)[-2]
    assert Invitation.objects.get().token_hash != token  # only the hash is kept
    assert services.invitation_pending(token) == issued.invitation
    membership = services.invitation_accept(token=token, username="newbie", password=GOOD_PASSWORD)
    assert membership.role == "editor" and membership.organisation == team.organisation
    assert services.invitation_pending(token) is None
    with pytest.raises(Conflict, match="used already"):
        services.invitation_accept(token=token, username="second", password=GOOD_PASSWORD)
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"invitation.create", "invitation.accept", "membership.add"} <= actions


def test_a_signed_in_user_joins_with_an_invitation(team, other_team):
    issued = services.invitation_create(actor=team.owner, organisation=team.organisation, role="viewer", base_url=BASE)
    token = issued.url.rsplit("/", 2)[-2]
    services.invitation_accept(token=token, user=other_team.editor)
    assert Membership.objects.get(user=other_team.editor, organisation=team.organisation).role == "viewer"


def test_a_member_cannot_use_an_invitation_to_change_their_role(team):
    issued = services.invitation_create(actor=team.admin, organisation=team.organisation, role="admin", base_url=BASE)
    with pytest.raises(Conflict, match="already a member"):
        services.invitation_accept(token=issued.url.rsplit("/", 2)[-2], user=team.viewer)
    assert Membership.objects.get(user=team.viewer, organisation=team.organisation).role == "viewer"


def test_expired_and_revoked_invitations_do_not_work(team):
    expired = services.invitation_create(actor=team.admin, organisation=team.organisation, role="viewer", base_url=BASE)
    Invitation.objects.filter(pk=expired.invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(Conflict):
        services.invitation_accept(token=expired.url.rsplit("/", 2)[-2], username="late", password=GOOD_PASSWORD)
    revoked = services.invitation_create(actor=team.admin, organisation=team.organisation, role="viewer", base_url=BASE)
    services.invitation_revoke(actor=team.admin, invitation=revoked.invitation)
    with pytest.raises(Conflict):
        services.invitation_accept(token=revoked.url.rsplit("/", 2)[-2], username="late", password=GOOD_PASSWORD)
    assert not User.objects.filter(username="late").exists()
    with pytest.raises(Conflict, match="no longer pending"):
        services.invitation_revoke(actor=team.admin, invitation=revoked.invitation)


def test_invitation_defaults_to_seven_days_and_only_owners_invite_owners(team):
    issued = services.invitation_create(actor=team.admin, organisation=team.organisation, role="editor", base_url=BASE)
    lasts = issued.invitation.expires_at - issued.invitation.created_at
    assert timedelta(days=6, hours=23) < lasts <= timedelta(days=7)
    with pytest.raises(PermissionDenied, match="Only an owner"):
        services.invitation_create(actor=team.admin, organisation=team.organisation, role="owner", base_url=BASE)
    services.invitation_create(actor=team.owner, organisation=team.organisation, role="owner", base_url=BASE)
    for role in ("editor", "reviewer", "viewer"):
        with pytest.raises(PermissionDenied):
            services.invitation_create(
                actor=team.member(role), organisation=team.organisation, role="viewer", base_url=BASE
            )


def test_an_outsider_cannot_invite_or_revoke(team, other_team):
    with pytest.raises(NotFound):
        services.invitation_create(actor=other_team.owner, organisation=team.organisation, role="viewer", base_url=BASE)
    issued = services.invitation_create(actor=team.admin, organisation=team.organisation, role="viewer", base_url=BASE)
    with pytest.raises(NotFound):
        services.invitation_revoke(actor=other_team.owner, invitation=issued.invitation)


def test_invitation_is_mailed_when_email_is_configured(team, settings):
    settings.ANVIL_EMAIL_ENABLED = True
    issued = services.invitation_create(
        actor=team.admin, organisation=team.organisation, role="reviewer", email="rev@example.com", base_url=BASE
    )
    assert issued.emailed
    (message,) = outbox.outbox
    assert message.to == ["rev@example.com"] and issued.url in message.body
    assert team.organisation.name in message.subject


def test_invitation_is_not_mailed_when_email_is_off(team):
    issued = services.invitation_create(
        actor=team.admin, organisation=team.organisation, role="reviewer", email="rev@example.com", base_url=BASE
    )
    assert not issued.emailed and outbox.outbox == []


def test_invitation_refuses_a_bad_address_and_a_bad_role(team):
    with pytest.raises(ApplicationError, match="not an e-mail address"):
        services.invitation_create(
            actor=team.admin, organisation=team.organisation, role="viewer", email="nope", base_url=BASE
        )
    with pytest.raises(ApplicationError, match="is not a role"):
        services.invitation_create(actor=team.admin, organisation=team.organisation, role="god", base_url=BASE)


# Members: the last owner ----------------------------------------------------------------------------------


def test_nobody_removes_or_demotes_the_last_owner(team):
    owner_membership = Membership.objects.get(user=team.owner, organisation=team.organisation)
    with pytest.raises(Conflict, match="last owner"):
        services.membership_set_role(actor=team.owner, membership=owner_membership, role="admin")
    with pytest.raises(Conflict, match="last owner"):
        services.membership_remove(actor=team.owner, membership=owner_membership)
    with pytest.raises(PermissionDenied):
        services.membership_remove(actor=team.admin, membership=owner_membership)


# Passwords and sessions -----------------------------------------------------------------------------------


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_password_change_needs_the_current_password_and_ends_other_sessions(team):
    user = team.editor
    here, elsewhere = _signed_in(user), _signed_in(user)
    with pytest.raises(ApplicationError, match="current password"):
        services.password_change(actor=user, current_password="wrong", new_password=GOOD_PASSWORD)
    services.password_change(
        actor=user, current_password=factories.PASSWORD, new_password=GOOD_PASSWORD,
        keep_session=here.session.session_key,
    )
    user.refresh_from_db()
    assert user.check_password(GOOD_PASSWORD)
    assert elsewhere.get(f"/o/{team.organisation.slug}/").status_code == 302  # signed out
    assert AuditEvent.objects.filter(action="user.password_change", actor=user).exists()


def test_sign_out_everywhere_ends_every_session(team):
    first, second = _signed_in(team.viewer), _signed_in(team.viewer)
    other = _signed_in(team.editor)
    assert services.sessions_end_all(actor=team.viewer) == 2
    for client in (first, second):
        assert client.get(f"/o/{team.organisation.slug}/").status_code == 302
    assert other.get(f"/o/{team.organisation.slug}/").status_code == 200


def test_reset_link_from_an_admin_works_once(team):
    membership = Membership.objects.get(user=team.editor, organisation=team.organisation)
    url = services.password_reset_link_issue(actor=team.admin, membership=membership, base_url=BASE)
    _, _, _, _, uid, token, _ = url.split("/")
    services.password_reset_complete(uidb64=uid, token=token, new_password=GOOD_PASSWORD)
    team.editor.refresh_from_db()
    assert team.editor.check_password(GOOD_PASSWORD)
    with pytest.raises(Conflict):
        services.password_reset_complete(uidb64=uid, token=token, new_password="another-long-passphrase")


def test_reset_links_cannot_take_over_owners_or_members_of_other_organisations(team, other_team):
    owner = Membership.objects.get(user=team.owner, organisation=team.organisation)
    with pytest.raises(PermissionDenied):
        services.password_reset_link_issue(actor=team.admin, membership=owner, base_url=BASE)
    # other_team's owner joins team as a viewer: team's admin must not get a link to that account
    prompt_services.membership_add(
        actor=team.owner, organisation=team.organisation, user=other_team.owner, role="viewer"
    )
    joined = Membership.objects.get(user=other_team.owner, organisation=team.organisation)
    with pytest.raises(NotFound):
        services.password_reset_link_issue(actor=team.admin, membership=joined, base_url=BASE)
    for role in ("editor", "reviewer", "viewer"):
        target = Membership.objects.get(user=team.admin, organisation=team.organisation)
        with pytest.raises(PermissionDenied):
            services.password_reset_link_issue(actor=team.member(role), membership=target, base_url=BASE)


def test_password_reset_by_email_when_configured(team, settings):
    team.editor.email = "ed@example.com"
    team.editor.save()
    assert not services.password_reset_request(login="ed@example.com", base_url=BASE)  # e-mail off
    settings.ANVIL_EMAIL_ENABLED = True
    assert services.password_reset_request(login=team.editor.get_username(), base_url=BASE)
    assert not services.password_reset_request(login="nobody", base_url=BASE)
    (message,) = outbox.outbox
    link = next(line for line in message.body.splitlines() if line.startswith(BASE + "/reset/"))
    uid, token = link.split("/")[-3:-1]
    services.password_reset_complete(uidb64=uid, token=token, new_password=GOOD_PASSWORD)
    team.editor.refresh_from_db()
    assert team.editor.check_password(GOOD_PASSWORD)


# Project settings -----------------------------------------------------------------------------------------


def test_environment_removal_is_refused_while_tokens_or_releases_use_it_saying_which(team, project, prompt_set):
    staging = factories.environment(project, "staging")
    distribution_services.token_create(actor=team.owner, project=project, environment=staging, kind="live", name="web")
    version = factories.make_submitted_version(prompt_set, author=team.editor)
    prompt_services.version_publish(actor=team.editor, version=version, environment=staging)
    with pytest.raises(Conflict) as refused:
        prompt_services.environment_delete(actor=team.admin, environment=staging)
    assert "1 access token (web (" in refused.value.message and prompt_set.slug in refused.value.message
    qa = prompt_services.environment_create(actor=team.admin, project=project, slug="qa")
    with pytest.raises(PermissionDenied):
        prompt_services.environment_delete(actor=team.editor, environment=qa)
    prompt_services.environment_delete(actor=team.admin, environment=qa)
    assert not Environment.objects.filter(pk=qa.pk).exists()
    assert AuditEvent.objects.filter(action="environment.delete").count() == 1
    with pytest.raises(ApplicationError, match="production"):
        prompt_services.environment_delete(actor=team.owner, environment=factories.environment(project))


def test_archived_set_is_hidden_publishes_and_edits_nothing_and_keeps_its_history(team, project, prompt_set):
    version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
    with pytest.raises(PermissionDenied):
        prompt_services.prompt_set_archive(actor=team.editor, prompt_set=prompt_set)
    prompt_services.prompt_set_archive(actor=team.admin, prompt_set=prompt_set)
    assert prompt_set not in selectors.prompt_sets_for(actor=team.viewer, project=project)
    assert prompt_set in selectors.prompt_sets_for(actor=team.viewer, project=project, archived=True)
    with pytest.raises(ApplicationError, match="archived"):
        prompt_services.version_publish(actor=team.editor, version=version, environment=factories.environment(project))
    assert selectors.versions_for(actor=team.viewer, prompt_set=prompt_set).count() == 1
    prompt_services.prompt_set_archive(actor=team.admin, prompt_set=prompt_set, archived=False)
    prompt_services.version_publish(actor=team.editor, version=version, environment=factories.environment(project))
    actions = list(AuditEvent.objects.filter(action__startswith="prompt_set.").values_list("action", flat=True))
    assert "prompt_set.archive" in actions and "prompt_set.restore" in actions
