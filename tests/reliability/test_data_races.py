"""Concurrent edits, submits, approvals, publishes and reopens on PostgreSQL, many threads at once.

The owners' race tests (forge/tests/prompts/test_concurrency.py) pit threads against one action each; this
one runs a random mix of every workflow action from eight threads on one prompt set and then checks the
invariants the issue names: no lost update, exactly one version per approval, one release per publish,
an audit event for every change, and no error but a clear refusal (no deadlock or integrity error leaks).
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, connections

from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.models import Release
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Environment, Prompt, PromptSet, PromptSetVersion, VersionState
from forge.tests import factories

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL: SQLite serialises every writer (set DATABASE_URL=postgresql://... to run)",
    ),
]

THREADS = 8
ROUNDS = 6  # actions per thread at least
MAX_ROUNDS = 30  # at most, until the mix has done enough to prove something (most actions are refused)
ENOUGH = THREADS  # successful actions
KEYS = ["welcome.message", "errors.not_found"]


def test_a_random_mix_of_every_workflow_action_from_many_threads_keeps_every_invariant():
    team = factories.make_org_with_members()
    editors = [team.editor, team.add("editor"), team.add("editor")]
    reviewers = [team.reviewer, team.admin, team.add("reviewer")]
    project = factories.make_project(team.organisation, actor=team.owner, require_four_eyes=False)
    prompt_set = factories.make_prompt_set_with_prompts(project, actor=team.editor)
    start_revisions = dict(Prompt.objects.filter(prompt_set=prompt_set).values_list("key", "revision"))
    audit_before = Counter(AuditEvent.objects.values_list("action", flat=True))

    successes: Counter[str] = Counter()
    updates: Counter[str] = Counter()
    unexpected: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(THREADS)

    def edit(rng: random.Random) -> str:
        key = rng.choice(KEYS)
        prompt = Prompt.objects.get(prompt_set=prompt_set, key=key)
        services.prompt_update(
            actor=rng.choice(editors), prompt=prompt, base_revision=prompt.revision,
            template=f"Hello {{{{ name }}}} {rng.random()}" if key == "welcome.message" else
            f"Sorry, no {{{{ thing }}}} {rng.random()}",
        )
        with lock:
            updates[key] += 1
        return "prompt.update"

    def submit(rng: random.Random) -> str:
        services.prompt_set_submit(actor=rng.choice(editors), prompt_set=PromptSet.objects.get(pk=prompt_set.pk))
        return "prompt_set.submit"

    def approve(rng: random.Random) -> str:
        version = PromptSetVersion.objects.filter(prompt_set=prompt_set).order_by("-number").first()
        if version is None:
            raise ApplicationError("nothing to approve yet")
        services.version_approve(actor=rng.choice(reviewers), version=version)
        return "version.approve"

    def publish(rng: random.Random) -> str:
        version = (
            PromptSetVersion.objects.filter(prompt_set=prompt_set, state=VersionState.APPROVED)
            .order_by("-number").first()
        )
        if version is None:
            raise ApplicationError("nothing approved yet")
        environment = Environment.objects.get(project=project, slug=rng.choice(["production", "staging"]))
        services.version_publish(actor=rng.choice(editors), version=version, environment=environment)
        return "release.publish"

    def reopen(rng: random.Random) -> str:
        services.prompt_set_reopen(actor=rng.choice(editors), prompt_set=PromptSet.objects.get(pk=prompt_set.pk))
        return "prompt_set.reopen"

    actions: list[Callable[[random.Random], str]] = [edit, edit, edit, submit, approve, approve, publish, reopen]

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            barrier.wait(timeout=20)
            for round_number in range(MAX_ROUNDS):
                if round_number >= ROUNDS:
                    with lock:
                        if sum(successes.values()) >= ENOUGH:
                            break
                action = rng.choice(actions)
                try:
                    done = action(rng)
                except ApplicationError:
                    continue  # a clear refusal: stale revision, wrong state, already approved...
                except Exception as exc:
                    with lock:
                        unexpected.append(f"{action.__name__}: {type(exc).__name__}: {exc}")
                    continue
                with lock:
                    successes[done] += 1
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung (deadlock?)"
    assert unexpected == [], unexpected
    assert sum(successes.values()) >= ENOUGH, f"the mix did too little to prove anything: {successes}"

    # No lost update: every successful save moved its prompt's revision on by exactly one.
    for key in KEYS:
        revision = Prompt.objects.get(prompt_set=prompt_set, key=key).revision
        assert revision == start_revisions[key] + updates[key], key

    # Versions: numbered 1..n without gaps or repeats, one per successful submit.
    numbers = list(PromptSetVersion.objects.filter(prompt_set=prompt_set).values_list("number", flat=True))
    assert sorted(numbers) == list(range(1, successes["prompt_set.submit"] + 1))
    # Exactly one version per approval.
    approved = PromptSetVersion.objects.filter(prompt_set=prompt_set, state=VersionState.APPROVED).count()
    assert approved == successes["version.approve"]
    # One release per publish, never the same version twice in a row in one environment.
    releases = list(Release.objects.filter(prompt_set=prompt_set).order_by("pk").values_list("environment", "version"))
    assert len(releases) == successes["release.publish"]
    for environment in {e for e, _ in releases}:
        in_order = [v for e, v in releases if e == environment]
        assert all(a != b for a, b in itertools.pairwise(in_order)), environment

    # An audit event for every change, and none for a refusal.
    audit_after = Counter(AuditEvent.objects.values_list("action", flat=True))
    for action, count in successes.items():
        assert audit_after[action] - audit_before[action] == count, action
