"""Reads that depend on who asks. Anything outside the actor's organisations is :class:`NotFound`.

Views call these instead of querying models, so no page can forget to scope by organisation.
"""

from __future__ import annotations

from django.db.models import Max, Q, QuerySet

from anvil_forge.accounts.models import Membership, Organisation
from anvil_forge.accounts.permissions import Actor, Capability, SystemActor, require
from anvil_forge.core.exceptions import NotFound
from anvil_forge.distribution.models import Release
from anvil_forge.prompts.models import Environment, Project, Prompt, PromptSet, PromptSetVersion


def organisations_for(user: Actor | None) -> QuerySet[Organisation]:
    """The organisations ``user`` is a member of, by slug."""
    if isinstance(user, SystemActor):
        return Organisation.objects.all()
    if user is None or not getattr(user, "is_authenticated", False):
        return Organisation.objects.none()
    return Organisation.objects.filter(memberships__user=user).order_by("slug")


def organisation_get(*, actor: Actor, slug: str) -> Organisation:
    organisation = Organisation.objects.filter(slug=slug).first()
    if organisation is None:
        raise NotFound(f"No organisation {slug} was found.")
    require(actor, organisation, Capability.VIEW, what=f"organisation {slug}")
    return organisation


def members_for(*, actor: Actor, organisation: Organisation) -> QuerySet[Membership]:
    require(actor, organisation, Capability.VIEW, what=f"organisation {organisation.slug}")
    return Membership.objects.filter(organisation=organisation).select_related("user").order_by("user__username")


def projects_for(*, actor: Actor, organisation: Organisation) -> QuerySet[Project]:
    require(actor, organisation, Capability.VIEW, what=f"organisation {organisation.slug}")
    return Project.objects.filter(organisation=organisation).select_related("organisation").order_by("slug")


def project_get(*, actor: Actor, organisation_slug: str, project_slug: str) -> Project:
    """One project by its slugs; :class:`NotFound` when it does not exist or is not the actor's to see."""
    what = f"project {organisation_slug}/{project_slug}"
    project = (
        Project.objects.select_related("organisation")
        .filter(organisation__slug=organisation_slug, slug=project_slug)
        .first()
    )
    if project is None:
        raise NotFound(f"No {what} was found.")
    require(actor, project.organisation, Capability.VIEW, what=what)
    return project


def environments_for(*, actor: Actor, project: Project) -> QuerySet[Environment]:
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    return Environment.objects.filter(project=project).order_by("id")


def environment_get(*, actor: Actor, project: Project, slug: str) -> Environment:
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    environment = Environment.objects.filter(project=project, slug=slug).select_related("project__organisation").first()
    if environment is None:
        raise NotFound(f"{project} has no environment {slug}.")
    return environment


def prompt_sets_for(*, actor: Actor, project: Project, archived: bool = False) -> QuerySet[PromptSet]:
    """The project's prompt sets by slug: the ones in use, or (``archived=True``) the archived ones."""
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    return (
        PromptSet.objects.filter(project=project, archived_at__isnull=not archived)
        .select_related("project__organisation")
        .order_by("slug")
    )


def prompt_set_get(*, actor: Actor, project: Project, slug: str) -> PromptSet:
    require(actor, project.organisation, Capability.VIEW, what=f"project {project}")
    prompt_set = (
        PromptSet.objects.filter(project=project, slug=slug)
        .select_related("project__organisation", "updated_by")
        .first()
    )
    if prompt_set is None:
        raise NotFound(f"{project} has no prompt set {slug}.")
    return prompt_set


def prompts_for(*, actor: Actor, prompt_set: PromptSet, search: str = "") -> QuerySet[Prompt]:
    """The prompts of a set by id; ``search`` matches ids, templates and descriptions (case-insensitive)."""
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    prompts = Prompt.objects.filter(prompt_set=prompt_set).select_related("updated_by", "prompt_set__project")
    if search:
        prompts = prompts.filter(
            Q(key__icontains=search) | Q(template__icontains=search) | Q(description__icontains=search)
        )
    return prompts.order_by("key")


def prompt_get(*, actor: Actor, prompt_set: PromptSet, key: str) -> Prompt:
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    prompt = (
        Prompt.objects.filter(prompt_set=prompt_set, key=key)
        .select_related("updated_by", "prompt_set__project__organisation")
        .first()
    )
    if prompt is None:
        raise NotFound(f"{prompt_set.slug} has no prompt {key}.")
    return prompt


def versions_for(*, actor: Actor, prompt_set: PromptSet) -> QuerySet[PromptSetVersion]:
    """The versions of a set, newest first, with their author, reviewer and releases at hand."""
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    return (
        PromptSetVersion.objects.filter(prompt_set=prompt_set)
        .select_related("created_by", "reviewed_by", "rollback_of", "prompt_set__project__organisation")
        .order_by("-number")
    )


def version_summaries_for(*, actor: Actor, prompt_set: PromptSet) -> QuerySet[PromptSetVersion]:
    """:func:`versions_for` without the snapshots (a 500-prompt set's is ~100 KB a version): for lists."""
    return versions_for(actor=actor, prompt_set=prompt_set).defer(
        "snapshot", "rollback_of__snapshot", "provenance", "rollback_of__provenance"
    )


def version_get(*, actor: Actor, prompt_set: PromptSet, number: int) -> PromptSetVersion:
    require(actor, prompt_set.project.organisation, Capability.VIEW, what=f"prompt set {prompt_set}")
    version = (
        PromptSetVersion.objects.filter(prompt_set=prompt_set, number=number)
        .select_related("created_by", "reviewed_by", "rollback_of", "prompt_set__project__organisation")
        .first()
    )
    if version is None:
        raise NotFound(f"{prompt_set.slug} has no version {number}.")
    return version


def current_releases(project: Project) -> list[Release]:
    """The newest release per (environment, prompt set) of ``project``: what is live where.

    Not actor-scoped: call it with a project obtained through :func:`project_get`.
    """
    newest_ids = (
        Release.objects.filter(environment__project=project)
        .values("environment_id", "prompt_set_id")
        .annotate(newest=Max("id"))
        .values_list("newest", flat=True)
    )
    return list(
        Release.objects.filter(id__in=list(newest_ids))
        .select_related("environment", "prompt_set", "version", "published_by")
        .order_by("prompt_set__slug", "environment_id")
    )


def current_release(*, environment: Environment, prompt_set: PromptSet) -> Release | None:
    """The release live in ``environment`` for ``prompt_set``, or ``None`` when nothing was published there."""
    return (
        Release.objects.filter(environment=environment, prompt_set=prompt_set)
        .select_related("version", "published_by")
        .order_by("-id")
        .first()
    )
