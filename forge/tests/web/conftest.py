"""Web tests: two organisations, a member of each role in the first, and an outsider in the second."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from anvil_forge.accounts.models import Membership, Organisation, Role
from anvil_forge.prompts.models import Environment, Project, PromptSet

ROLES = [role.value for role in Role]


@pytest.fixture
def org(db) -> Organisation:
    return Organisation.objects.create(slug="acme", name="Acme")


@pytest.fixture
def other_org(db) -> Organisation:
    return Organisation.objects.create(slug="globex", name="Globex")


@pytest.fixture
def members(org: Organisation) -> dict[str, User]:
    users = {}
    for role in ROLES:
        user = User.objects.create_user(username=role, password="anvil-demo-pw")
        Membership.objects.create(user=user, organisation=org, role=role)
        users[role] = user
    return users


@pytest.fixture
def outsider(other_org: Organisation) -> User:
    user = User.objects.create_user(username="outsider", password="anvil-demo-pw")
    Membership.objects.create(user=user, organisation=other_org, role=Role.OWNER)
    return user


@pytest.fixture
def project(org: Organisation) -> Project:
    project = Project.objects.create(organisation=org, slug="support-bot", name="Support bot")
    Environment.objects.create(project=project, slug="production", name="Production")
    Environment.objects.create(project=project, slug="staging", name="Staging", accepts_review_versions=True)
    PromptSet.objects.create(project=project, slug="core", name="Core")
    return project


@pytest.fixture
def client_as(client):
    def sign_in(user: User):
        client.force_login(user)
        return client

    return sign_in
