"""Projects, their environments, prompt sets, prompts and the immutable prompt set versions."""

from __future__ import annotations

from django.conf import settings
from django.db import models

PRODUCTION = "production"


class Project(models.Model):
    organisation = models.ForeignKey("accounts.Organisation", on_delete=models.CASCADE, related_name="projects")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    # Four eyes: the author of a version may not approve it.
    require_four_eyes = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organisation", "slug"], name="project_slug_unique_in_org")]
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.organisation.slug}/{self.slug}"


class Environment(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="environments")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    # Whether versions still in REVIEW may be published here (for testing). Never for production.
    accepts_review_versions = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "slug"], name="environment_slug_unique_in_project"),
            models.CheckConstraint(
                condition=~(models.Q(slug=PRODUCTION) & models.Q(accepts_review_versions=True)),
                name="production_never_accepts_review_versions",
            ),
        ]
        ordering = ["id"]

    @property
    def is_production(self) -> bool:
        return self.slug == PRODUCTION

    def __str__(self) -> str:
        return f"{self.project}/{self.slug}"


class SetStatus(models.TextChoices):
    LIVE = "LIVE", "Live (editing)"
    REVIEW = "REVIEW", "In review"
    LOCKED = "LOCKED", "Locked"


class PromptSet(models.Model):
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompt_sets")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=8, choices=SetStatus.choices, default=SetStatus.LIVE)
    # Bumped by every change to the set or its prompts; a write based on an older revision is refused.
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Archived: hidden from the lists, publishes nothing new; its versions, releases and audit stay.
    archived_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "slug"], name="prompt_set_slug_unique_in_project")]
        ordering = ["slug"]

    def __str__(self) -> str:
        return f"{self.project}/{self.slug}"


class Prompt(models.Model):
    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="prompts")
    key = models.CharField(max_length=200)  # the prompt id, e.g. "welcome.message"
    template = models.TextField()
    description = models.TextField(blank=True)
    # [{"name": "name", "type": "string", "required": true, "default": null, "description": ""}, ...]
    parameters = models.JSONField(default=list, blank=True)
    metadata = models.JSONField(default=dict, blank=True)  # model, temperature...
    # Test cases: [{"name", "values": {param: value}, "checks": [{"kind", "value"}]}] (see prompts.samples).
    # Kept in versions beside the prompts (snapshot["tests"]), never in LIVE bundles.
    tests = models.JSONField(default=list, blank=True)
    revision = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt_set", "key"], name="prompt_key_unique_in_set")]
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class VersionState(models.TextChoices):
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Changes requested"


# What makes a version what it is; only the review fields (state, reviewer, comment) ever change.
VERSION_CONTENT_FIELDS = frozenset({"prompt_set", "prompt_set_id", "number", "snapshot", "digest"})


class VersionContentChanged(Exception):
    """Raised on any attempt to change a saved version's content: versions only move forward."""


class PromptSetVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):  # type: ignore[no-untyped-def]
        frozen = sorted(VERSION_CONTENT_FIELDS & set(kwargs))
        if frozen:
            raise VersionContentChanged(f"A prompt set version's {', '.join(frozen)} never change.")
        return super().update(**kwargs)

    def bulk_update(self, objs, fields, batch_size=None):  # type: ignore[no-untyped-def]
        frozen = sorted(VERSION_CONTENT_FIELDS & set(fields))
        if frozen:
            raise VersionContentChanged(f"A prompt set version's {', '.join(frozen)} never change.")
        return super().bulk_update(objs, fields, batch_size=batch_size)


class PromptSetVersion(models.Model):
    """An immutable, numbered snapshot of a prompt set. Only its review fields ever change."""

    prompt_set = models.ForeignKey(PromptSet, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    # {"prompts": [{"id", "template", "description", "parameters", "metadata"}, ...]}, canonical order; when
    # prompts have test cases also "tests" ({id: samples}) and "test_results" (prompts.samples.results_for, run
    # at submit). Bundles and the digest take only "prompts".
    snapshot = models.JSONField()
    digest = models.CharField(max_length=71)  # "sha256:" + 64 hex, over the canonical JSON of snapshot["prompts"]
    state = models.CharField(max_length=16, choices=VersionState.choices, default=VersionState.IN_REVIEW)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    review_comment = models.TextField(blank=True)
    # Set on a rollback: the older version whose content this one repeats.
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Set when copied from a peer FORGE: {"peer", "url", "organisation", "project", "set", "version", "digest"}.
    provenance = models.JSONField(null=True, blank=True)

    objects = PromptSetVersionQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["prompt_set", "number"], name="version_number_unique_in_set")]
        # State and digest without the row: on SQLite they are stored after the snapshot, so reading them from the
        # table walks every snapshot's overflow pages (rollback targets read them for every version of a set).
        indexes = [models.Index(fields=["prompt_set", "state", "digest"], name="version_state_digest")]
        ordering = ["-number"]

    # A guard, not business logic: a saved version's content is never written again.
    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not self._state.adding and self.pk is not None:
            stored = (
                type(self).objects.filter(pk=self.pk).values("prompt_set_id", "number", "snapshot", "digest").first()
            )
            if stored is not None and any(getattr(self, key) != value for key, value in stored.items()):
                raise VersionContentChanged(f"Version {stored['number']}'s content never changes; make a new version.")
        super().save(*args, **kwargs)

    @property
    def is_approved(self) -> bool:
        return self.state == VersionState.APPROVED

    def __str__(self) -> str:
        return f"{self.prompt_set} v{self.number}"
