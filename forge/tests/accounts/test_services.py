"""Users, organisations and memberships."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from anvil_forge.accounts.models import Membership, Role
from anvil_forge.accounts.permissions import SystemActor
from anvil_forge.accounts.services import (
    membership_add,
    membership_remove,
    membership_set_role,
    organisation_create,
    user_create,
)
from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError, Conflict, NotFound, PermissionDenied
from forge.tests.factories import make_user, membership

SYSTEM = SystemActor("tests")


@pytest.mark.django_db
def test_user_create_hashes_with_argon2_and_audits(settings):
    # The test settings put a fast hasher first; production's list starts with argon2.
    settings.PASSWORD_HASHERS = [h for h in settings.PASSWORD_HASHERS if "MD5" not in h]
    assert settings.PASSWORD_HASHERS[0] == "django.contrib.auth.hashers.Argon2PasswordHasher"
    user = user_create(actor=SYSTEM, username="ada", password="a long enough passphrase")

    user.refresh_from_db()
    assert user.password.startswith("argon2")
    assert user.check_password("a long enough passphrase")
    assert AuditEvent.objects.filter(action="user.create", object_id=str(user.pk), actor_label="tests").exists()


@pytest.mark.django_db
def test_user_create_refuses_weak_password_and_duplicates_and_web_users():
    with pytest.raises(ApplicationError, match="too short"):
        user_create(actor=SYSTEM, username="ada", password="short")
    user_create(actor=SYSTEM, username="ada", password="a long enough passphrase")
    with pytest.raises(Conflict, match="already exists"):
        user_create(actor=SYSTEM, username="ada", password="a long enough passphrase")
    with pytest.raises(PermissionDenied):
        user_create(actor=make_user(), username="eve", password="a long enough passphrase")
    with pytest.raises(ApplicationError, match="not a valid username"):
        user_create(actor=SYSTEM, username="no spaces please", password="a long enough passphrase")


@pytest.mark.django_db
def test_organisation_create_makes_creator_owner_and_refuses_bad_slug():
    user = make_user()

    organisation = organisation_create(actor=user, slug="globex", name="Globex")

    assert membership(user, organisation).role == Role.OWNER
    assert AuditEvent.objects.filter(action="organisation.create", organisation=organisation).count() == 1
    with pytest.raises(ApplicationError, match="not a valid organisation slug"):
        organisation_create(actor=user, slug="Not A Slug")
    with pytest.raises(Conflict):
        organisation_create(actor=user, slug="globex")


def test_admin_adds_member_but_only_owner_grants_owner(team):
    newcomer = make_user()
    membership_add(actor=team.admin, organisation=team.organisation, user=newcomer, role=Role.EDITOR)
    assert membership(newcomer, team.organisation).role == Role.EDITOR

    with pytest.raises(PermissionDenied, match="Only an owner"):
        membership_set_role(actor=team.admin, membership=membership(newcomer, team.organisation), role=Role.OWNER)
    membership_set_role(actor=team.owner, membership=membership(newcomer, team.organisation), role=Role.OWNER)
    assert membership(newcomer, team.organisation).role == Role.OWNER
    event = AuditEvent.objects.filter(action="membership.set_role").first()
    assert event.data == {"username": newcomer.username, "from": "editor", "to": "owner"}


def test_editor_cannot_manage_members_and_outsider_gets_not_found(team, other_team):
    with pytest.raises(PermissionDenied):
        membership_add(actor=team.editor, organisation=team.organisation, user=make_user(), role=Role.VIEWER)
    with pytest.raises(NotFound):
        membership_add(actor=other_team.owner, organisation=team.organisation, user=make_user(), role=Role.VIEWER)


def test_last_owner_cannot_be_demoted_or_removed(team):
    own = membership(team.owner, team.organisation)
    with pytest.raises(Conflict, match="last owner"):
        membership_set_role(actor=team.owner, membership=own, role=Role.ADMIN)
    with pytest.raises(Conflict, match="last owner"):
        membership_remove(actor=team.owner, membership=own)
    assert membership(team.owner, team.organisation).role == Role.OWNER


def test_adding_an_existing_member_again_is_a_conflict(team):
    with pytest.raises(Conflict, match="already a member"):
        membership_add(actor=team.owner, organisation=team.organisation, user=team.viewer, role=Role.EDITOR)
    assert Membership.objects.filter(user=team.viewer).count() == 1


def test_unknown_role_is_refused(team):
    with pytest.raises(ApplicationError, match="not a role"):
        membership_add(actor=team.owner, organisation=team.organisation, user=make_user(), role="superuser")
    assert get_user_model().objects.count() >= 5
