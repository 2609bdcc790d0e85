"""Releases, ACCESS_TOKENs and the registry of LIVE instances."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models


class Release(models.Model):
    """Version N of set S is live in environment E. Append-only; the newest per (environment, set) is current.

    The primary key doubles as the stream's event id: it only grows, so ``Last-Event-ID`` resumes from it.
    """

    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="releases")
    prompt_set = models.ForeignKey("prompts.PromptSet", on_delete=models.CASCADE, related_name="releases")
    version = models.ForeignKey("prompts.PromptSetVersion", on_delete=models.PROTECT, related_name="releases")
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["environment", "prompt_set", "-id"])]

    def __str__(self) -> str:
        return f"{self.version} in {self.environment.slug}"


class TokenKind(models.TextChoices):
    LIVE = "live", "LIVE instance"
    PEER = "peer", "Peer FORGE"


class AccessToken(models.Model):
    project = models.ForeignKey("prompts.Project", on_delete=models.CASCADE, related_name="access_tokens")
    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="access_tokens")
    kind = models.CharField(max_length=8, choices=TokenKind.choices)
    name = models.CharField(max_length=200)
    # The readable start of the token ("anvil_live_Xy12ab"), shown in lists and logs; never the secret part.
    prefix = models.CharField(max_length=32)
    token_hash = models.CharField(max_length=64, unique=True)  # sha256 hex of the whole token
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.name})"


class InstanceMode(models.TextChoices):
    ACCEPTING = "ACCEPTING", "Accepting"
    FROZEN = "FROZEN", "Frozen"


# An instance none of whose processes has been live for this long is no longer listed, and its rows are deleted
# (opportunistically, when another instance of its environment first checks in).
OFFLINE_RETENTION = timedelta(days=1)


class LiveInstanceQuerySet(models.QuerySet["LiveInstance"]):
    def retained(self, *, now: datetime) -> LiveInstanceQuerySet:
        """The instances live, or offline for less than :data:`OFFLINE_RETENTION`."""
        cutoff = now - OFFLINE_RETENTION
        recent = LiveProcess.objects.filter(instance=models.OuterRef("pk"), expires_at__gt=cutoff)
        return self.filter(models.Q(last_seen_at__gte=cutoff) | models.Exists(recent))


class LiveInstance(models.Model):
    """One application on one host that checked in: one row per (environment, instance id).

    All processes of the application on that host (pre-fork workers, restarts) share the instance id; each
    is a :class:`LiveProcess`, and what the instance runs is what its live processes run. ``last_seen_at`` is
    written with the instance's own fields (name, host, token) and on a goodbye, not on every check-in: the
    exact times are on the processes.
    """

    project = models.ForeignKey("prompts.Project", on_delete=models.CASCADE, related_name="instances")
    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="instances")
    token = models.ForeignKey(AccessToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    instance_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    host = models.CharField(max_length=255)
    first_seen_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField()

    objects = LiveInstanceQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["environment", "instance_id"], name="instance_unique_in_environment")
        ]
        ordering = ["name", "instance_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.host})"


class LiveProcessQuerySet(models.QuerySet["LiveProcess"]):
    def live(self, *, now: datetime) -> LiveProcessQuerySet:
        """The processes not yet aged out (see ``expires_at``)."""
        return self.filter(expires_at__gt=now)


class LiveProcess(models.Model):
    """One process of a LIVE instance, as it last checked in. One row per (instance, process id).

    ``process_id`` is the OS pid the client sends (0 for clients that send none: one process per instance).
    A process is live until ``expires_at`` (its last check-in plus a few of its check-in intervals, see
    :attr:`~anvil_forge.distribution.checkin.CheckIn.gone_after_seconds`); one that says goodbye is deleted at
    once, and aged-out rows are deleted when the instance next gains or loses a process.
    """

    instance = models.ForeignKey(LiveInstance, on_delete=models.CASCADE, related_name="processes")
    process_id = models.PositiveIntegerField()
    client_version = models.CharField(max_length=32)
    mode = models.CharField(max_length=16, choices=InstanceMode.choices, default=InstanceMode.ACCEPTING)
    pins = models.JSONField(default=dict, blank=True)  # {"core": 3}
    versions = models.JSONField(default=dict, blank=True)  # {"core": 4}: what it runs per set
    # {"welcome.message": ["name", "plan"], ...}: the prompt ids and variable names the process used.
    usage = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    objects = LiveProcessQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["instance", "process_id"], name="process_unique_in_instance")]
        ordering = ["process_id"]

    def __str__(self) -> str:
        return f"process {self.process_id}"


class ScheduleState(models.TextChoices):
    PENDING = "pending", "Pending"
    PUBLISHED = "published", "Published"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class ScheduledRelease(models.Model):
    """Publish ``version`` to ``environment`` at ``at`` (UTC), as ``created_by`` (see distribution.scheduling).

    A FORGE process's scheduler claims a due pending row under a row lock and publishes it through the normal
    publish service; ``late_by`` is how long after ``at`` that happened (a FORGE that was down at the time).
    """

    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="+")
    prompt_set = models.ForeignKey("prompts.PromptSet", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("prompts.PromptSetVersion", on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    state = models.CharField(max_length=16, choices=ScheduleState.choices, default=ScheduleState.PENDING)
    release = models.ForeignKey(Release, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    published_at = models.DateTimeField(null=True, blank=True)
    late_by = models.DurationField(null=True, blank=True)
    failure_reason = models.TextField(blank=True, default="")
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["state", "at"]), models.Index(fields=["prompt_set", "-at"])]

    def __str__(self) -> str:
        return f"{self.version} to {self.environment.slug} at {self.at:%Y-%m-%d %H:%M:%S} UTC"


from anvil_forge.distribution.rollout_models import (  # noqa: E402,F401  (registers the models)
    Rollout,
    RolloutSettings,
    RolloutState,
)
