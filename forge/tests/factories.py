"""Plain functions that build test data through the real services (so the data obeys every rule).

Shared by every FORGE test: ``from forge.tests.factories import make_team, make_project, ...``.
Each returns ordinary model objects; names are unique per call so tests can make as many as they need.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from anvil_forge.accounts.models import Membership, Organisation, Role
from anvil_forge.accounts.permissions import SystemActor
from anvil_forge.distribution.models import Release
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Environment, Project, Prompt, PromptSet, PromptSetVersion

PASSWORD = "anvil-test-password"
SYSTEM = SystemActor("tests")
_counter = itertools.count(1)

DEFAULT_PROMPTS: list[dict[str, Any]] = [
    {
        "key": "welcome.message",
        "template": "Hello {{ name }}!{% if plan == 'pro' %} Thanks for being a Pro customer.{% endif %}",
        "description": "First words to a new customer.",
        "parameters": [
            {"name": "name", "type": "string", "required": True},
            {"name": "plan", "type": "string", "default": "free"},
        ],
        "metadata": {"model": "gpt-4o-mini", "temperature": 0.2},
    },
    {
        "key": "errors.not_found",
        "template": "Sorry, we could not find {{ thing }}.",
        "parameters": [{"name": "thing", "type": "string", "required": True}],
    },
]


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


def make_user(username: str | None = None, *, password: str = PASSWORD) -> AbstractBaseUser:
    """A user who can sign in with ``password``."""
    return get_user_model().objects.create_user(username=username or unique("user"), password=password)


@dataclass
class Team:
    """An organisation with one member per role (``team.owner``, ``team.editor``, ...)."""

    organisation: Organisation
    owner: AbstractBaseUser
    admin: AbstractBaseUser
    editor: AbstractBaseUser
    reviewer: AbstractBaseUser
    viewer: AbstractBaseUser
    others: dict[str, AbstractBaseUser] = field(default_factory=dict)

    def member(self, role: str) -> AbstractBaseUser:
        return getattr(self, role)

    def add(self, role: str, username: str | None = None) -> AbstractBaseUser:
        """Another member with ``role`` (a second editor or reviewer, say)."""
        user = make_user(username)
        services.membership_add(actor=self.owner, organisation=self.organisation, user=user, role=role)
        self.others[user.get_username()] = user
        return user


def make_org_with_members(slug: str | None = None) -> Team:
    """An organisation and one member per role, usernames prefixed with the organisation's slug."""
    slug = slug or unique("org")
    owner = make_user(f"{slug}-owner")
    organisation = services.organisation_create(actor=owner, slug=slug, name=slug.title())
    members: dict[str, AbstractBaseUser] = {"owner": owner}
    for role in (Role.ADMIN, Role.EDITOR, Role.REVIEWER, Role.VIEWER):
        user = make_user(f"{slug}-{role}")
        services.membership_add(actor=owner, organisation=organisation, user=user, role=role)
        members[str(role)] = user
    return Team(organisation=organisation, **members)


make_team = make_org_with_members


def make_project(
    organisation: Organisation | None = None,
    *,
    slug: str | None = None,
    actor: Any = None,
    staging: bool = True,
    require_four_eyes: bool = True,
) -> Project:
    """A project with ``production`` and (by default) a ``staging`` environment that accepts review versions."""
    organisation = organisation or make_org_with_members().organisation
    actor = actor or SYSTEM
    project = services.project_create(
        actor=actor, organisation=organisation, slug=slug or unique("project"), require_four_eyes=require_four_eyes
    )
    if staging:
        services.environment_create(actor=actor, project=project, slug="staging", accepts_review_versions=True)
    return project


def environment(project: Project, slug: str = "production") -> Environment:
    return Environment.objects.get(project=project, slug=slug)


def make_prompt_set_with_prompts(
    project: Project | None = None,
    *,
    actor: Any = None,
    slug: str | None = None,
    prompts: list[dict[str, Any]] | None = None,
) -> PromptSet:
    """A LIVE prompt set holding ``prompts`` (dicts of prompt_create's arguments; two simple ones by default)."""
    project = project or make_project()
    actor = actor or SYSTEM
    prompt_set = services.prompt_set_create(actor=actor, project=project, slug=slug or unique("set"))
    for prompt in DEFAULT_PROMPTS if prompts is None else prompts:
        services.prompt_create(actor=actor, prompt_set=prompt_set, **prompt)
    prompt_set.refresh_from_db()
    return prompt_set


def make_submitted_version(prompt_set: PromptSet, *, author: Any = None) -> PromptSetVersion:
    """Submit ``prompt_set`` (LIVE) for review; returns the version in review."""
    return services.prompt_set_submit(actor=author or SYSTEM, prompt_set=prompt_set)


def make_approved_version(
    prompt_set: PromptSet | None = None, *, author: Any = None, reviewer: Any = None
) -> PromptSetVersion:
    """Submit and approve ``prompt_set`` (a new one with default prompts if not given); the set ends LOCKED.

    When the set is LOCKED already it is reopened first, so calling this twice makes versions 1 and 2.
    """
    prompt_set = prompt_set or make_prompt_set_with_prompts()
    prompt_set.refresh_from_db()
    if prompt_set.status == "LOCKED":
        services.prompt_set_reopen(actor=author or SYSTEM, prompt_set=prompt_set)
    version = make_submitted_version(prompt_set, author=author)
    return services.version_approve(actor=reviewer or SYSTEM, version=version)


def make_release(version: PromptSetVersion, environment_slug: str = "production", *, actor: Any = None) -> Release:
    """Publish ``version`` to the named environment of its project."""
    env = environment(version.prompt_set.project, environment_slug)
    return services.version_publish(actor=actor or SYSTEM, version=version, environment=env)


def edit_prompt(prompt_set: PromptSet, key: str, template: str, *, actor: Any = None) -> Prompt:
    """Change one prompt's template (the set must be LIVE), from its current revision."""
    prompt = Prompt.objects.get(prompt_set=prompt_set, key=key)
    return services.prompt_update(
        actor=actor or SYSTEM, prompt=prompt, base_revision=prompt.revision, template=template
    )


def membership(user: AbstractBaseUser, organisation: Organisation) -> Membership:
    return Membership.objects.get(user=user, organisation=organisation)
