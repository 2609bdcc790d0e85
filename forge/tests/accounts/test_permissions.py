"""Who may do what: the capability table, can() for the UI and require() for the services."""

from __future__ import annotations

import pytest

from anvil_forge.accounts.permissions import Capability, SystemActor, can, require
from anvil_forge.core.exceptions import NotFound, PermissionDenied

EXPECTED = {
    "owner": set(Capability),
    "admin": set(Capability),
    "editor": {Capability.VIEW, Capability.EDIT, Capability.SUBMIT, Capability.REOPEN, Capability.PUBLISH},
    "reviewer": {Capability.VIEW, Capability.REVIEW},
    "viewer": {Capability.VIEW},
}


@pytest.mark.parametrize("role", list(EXPECTED))
def test_each_role_has_exactly_its_capabilities(team, role):
    user = team.member(role)

    allowed = {capability for capability in Capability if can(user, team.organisation, capability)}

    assert allowed == EXPECTED[role]


@pytest.mark.parametrize("role", list(EXPECTED))
@pytest.mark.parametrize("capability", list(Capability))
def test_require_refuses_what_can_denies_with_permission_denied_naming_the_role(team, role, capability):
    user = team.member(role)
    if capability in EXPECTED[role]:
        require(user, team.organisation, capability)
    else:
        with pytest.raises(PermissionDenied, match=f"role in {team.organisation.slug} is {role}"):
            require(user, team.organisation, capability)


def test_member_of_another_organisation_gets_not_found_even_for_view(team, other_team):
    assert not can(other_team.owner, team.organisation, Capability.VIEW)
    with pytest.raises(NotFound, match="No project x/y was found"):
        require(other_team.owner, team.organisation, Capability.VIEW, what="project x/y")


def test_anonymous_and_none_are_not_members(team):
    from django.contrib.auth.models import AnonymousUser

    for nobody in (AnonymousUser(), None):
        assert not can(nobody, team.organisation, Capability.VIEW)
        with pytest.raises(NotFound):
            require(nobody, team.organisation, Capability.VIEW)


def test_inactive_membership_removed_means_not_found(team):
    from anvil_forge.accounts.services import membership_remove
    from forge.tests.factories import membership

    membership_remove(actor=team.owner, membership=membership(team.viewer, team.organisation))

    with pytest.raises(NotFound):
        require(team.viewer, team.organisation, Capability.VIEW)


def test_system_actor_may_do_everything(team):
    system = SystemActor("console")
    assert all(can(system, team.organisation, capability) for capability in Capability)
    require(system, team.organisation, Capability.MANAGE_MEMBERS)
