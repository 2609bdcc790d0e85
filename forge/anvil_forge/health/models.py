"""Counters of what the instances report per version they run in an environment: renders, errors by kind,
fallbacks, guarded renders, outcomes. Written only by :func:`anvil_forge.health.services.release_signals_record`
(from both check-in paths).

The rows are keyed by (environment, version), not by release, so a canary version (a rollout's, which is not a
release until it is promoted) is counted in the same rows: the rollout evaluator, the rollout page and the release
page all read these counters (there is no second copy)."""

from __future__ import annotations

from django.db import models

# Counts are summed into one row per version, environment, instance and minute, so "since the stage started"
# can be asked.
BUCKET_SECONDS = 60


class ReleaseSignal(models.Model):
    """What one instance's processes reported of one version (released or on a canary) in an environment during
    one minute (``bucket``), summed."""

    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("prompts.PromptSetVersion", on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey("distribution.LiveInstance", on_delete=models.CASCADE, related_name="+")
    bucket = models.DateTimeField()  # the start of the minute the check-ins arrived in
    renders = models.BigIntegerField(default=0)
    missing_variables = models.BigIntegerField(default=0)
    invalid_variable = models.BigIntegerField(default=0)
    template_error = models.BigIntegerField(default=0)
    render_limit = models.BigIntegerField(default=0)
    fallbacks = models.BigIntegerField(default=0)
    guarded = models.BigIntegerField(default=0)
    outcomes_ok = models.BigIntegerField(default=0)
    outcomes_failed = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "version", "instance", "bucket"], name="version_signal_unique_minute"
            )
        ]
        indexes = [models.Index(fields=["environment", "version", "bucket"], name="health_signal_version_bucket")]

    def __str__(self) -> str:
        return f"signals of version {self.version_id} from instance {self.instance_id} at {self.bucket:%H:%M}"

    @property
    def errors(self) -> int:
        return self.missing_variables + self.invalid_variable + self.template_error + self.render_limit


class ReleaseProblem(models.Model):
    """One kind of failure an instance reported for a version in an environment, with how often: a render error of
    a prompt (``kind`` is the error kind, ``detail`` the missing variables, the invalid one, the limit or the message;
    ``guarded`` of them served the previous version's text) or a failed outcome (``kind`` "outcome", ``detail``
    the host's kind, ``prompt`` empty). At most :data:`MAX_PROBLEMS_PER_INSTANCE` rows per version and instance."""

    environment = models.ForeignKey("prompts.Environment", on_delete=models.CASCADE, related_name="+")
    version = models.ForeignKey("prompts.PromptSetVersion", on_delete=models.CASCADE, related_name="+")
    instance = models.ForeignKey("distribution.LiveInstance", on_delete=models.CASCADE, related_name="+")
    prompt = models.CharField(max_length=265, blank=True)
    kind = models.CharField(max_length=32)
    detail = models.CharField(max_length=200, blank=True)
    count = models.BigIntegerField(default=0)
    guarded = models.BigIntegerField(default=0)
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "version", "instance", "prompt", "kind", "detail"],
                name="version_problem_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.prompt} {self.detail}"


MAX_PROBLEMS_PER_INSTANCE = 50
