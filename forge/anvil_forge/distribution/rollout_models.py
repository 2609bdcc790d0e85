"""The canary rollout of a version to a share of an environment's LIVE instances (issue 16).

Imported by :mod:`anvil_forge.distribution.models`, so Django registers it with the distribution app. The
behaviour is in :mod:`anvil_forge.distribution.rollouts`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class RolloutState(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"  # promoted to 100 %: ``release`` is the release to everyone
    HALTED = "halted", "Halted"  # stopped by the evaluator: the canary instances went back (``halt_release``)
    ABORTED = "aborted", "Aborted"  # stopped by hand: the canary instances went back (``halt_release``)


ACTIVE_STATES = (RolloutState.RUNNING, RolloutState.PAUSED)


class Rollout(models.Model):
    """Version ``version`` of a set going to a growing share of ``environment``'s instances, stage by stage.

    While it is active the environment's *release* (what every other instance, and every client that does not
    name its instance, runs) stays ``previous_release``; the canary is not a :class:`Release` until it is
    promoted to 100 % (``release``). ``chosen`` is the ordered list of the instance ids on the canary: it only
    grows while the rollout is active, so raising the percentage moves no instance back.
    """

    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="rollouts")
    prompt_set = models.ForeignKey("prompts.PromptSet", on_delete=models.CASCADE, related_name="rollouts")
    version = models.ForeignKey("prompts.PromptSetVersion", on_delete=models.PROTECT, related_name="rollouts")
    previous_release = models.ForeignKey("distribution.Release", on_delete=models.PROTECT, related_name="rollouts_from")
    # [{"percent": 5, "bake_seconds": 600}, {"percent": 25, ...}, {"percent": 100, "bake_seconds": 0}]
    stages = models.JSONField()
    stage = models.PositiveSmallIntegerField(default=0)  # index into ``stages``
    stage_started_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=RolloutState.choices, default=RolloutState.RUNNING)
    chosen = models.JSONField(default=list, blank=True)  # instance ids on the canary, in the order chosen
    # The canary's error rate may exceed the other instances' by this many percentage points.
    threshold = models.FloatField()
    min_renders = models.PositiveIntegerField()  # renders on each side before a stage can pass or fail
    reason = models.TextField(blank=True)  # why it halted, was aborted or paused
    release = models.ForeignKey(
        "distribution.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    halt_release = models.ForeignKey(
        "distribution.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    evaluation = models.JSONField(default=dict, blank=True)  # the evaluator's last look (rates, renders, verdict)

    class Meta:
        app_label = "distribution"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "prompt_set"],
                condition=models.Q(state__in=["running", "paused"]),
                name="one_active_rollout_per_set_and_environment",
            )
        ]
        indexes = [models.Index(fields=["environment", "state"])]

    def __str__(self) -> str:
        return f"rollout of {self.version} in {self.environment.slug}"

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> float:
        return float(self.stages[self.stage]["percent"])


class RolloutSettings(models.Model):
    """A project's defaults for new rollouts (each rollout records the values it started with)."""

    project = models.OneToOneField("prompts.Project", on_delete=models.CASCADE, related_name="rollout_settings")
    stages = models.CharField(max_length=200)  # "5:600,25:600,100"
    threshold = models.FloatField()
    min_renders = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "distribution"

    def __str__(self) -> str:
        return f"rollout settings of {self.project}"
