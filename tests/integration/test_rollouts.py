"""Canary rollouts against a real FORGE and 20 real LIVE clients (issue 16).

The 20 clients are 20 other processes (``rollout_fleet.py --count 1`` each: one :class:`anvil_client.Client`
with its own cache directory and so its own instance id, rendering ``greeting.welcome`` as a host would, and
writing what it served to its own status file). Each ends by itself after ``FLEET_SECONDS`` at the latest, and the
fixture stops (then kills) every one of them. Rollouts are started and moved on with the ``anvil-forge manage shell``
command (a third process), as an operator's page click would: the FORGE hears of them by itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.forge_process import ForgeProcess, postgres_url
from tests.integration.test_client_live import V1, V2, eventually, live_token

pytestmark = pytest.mark.integration

FAST = {
    "ANVIL_RELEASE_POLL_SECONDS": "0.2",
    "ANVIL_STREAM_HEARTBEAT_SECONDS": "1",
    "ANVIL_ROLLOUT_CHECKIN_INTERVAL": "1",
    "ANVIL_ROLLOUT_EVALUATE_SECONDS": "0.25",
}
FLEET = Path(__file__).with_name("rollout_fleet.py")

SHELL_HEAD = """
import json
from django.contrib.auth import get_user_model
from anvil_forge.distribution import rollouts
from anvil_forge.distribution.rollout_models import Rollout
from anvil_forge.prompts.models import Environment, PromptSet
editor = get_user_model().objects.get(username="editor")
core = PromptSet.objects.get(slug="core", project__slug="support-bot")
production = Environment.objects.get(project=core.project, slug="production")
"""


def shell(forge: ForgeProcess, code: str) -> str:
    return forge.cli("manage", "shell", "-c", SHELL_HEAD + code)


def eligible(forge: ForgeProcess) -> int:
    out = shell(forge, "print(len(rollouts.eligible_instances(environment_id=production.pk, set_slug='core')))")
    return int(out.strip().splitlines()[-1])


FLEET_SIZE = 20
FLEET_SECONDS = 150  # each client process ends by itself after this, whatever happens to the test


class Fleet:
    """``count`` LIVE client processes, one client each."""

    def __init__(self, forge: ForgeProcess, workdir: Path, count: int = FLEET_SIZE, *extra: str) -> None:
        token = live_token(forge, "fleet")
        self.statuses = [workdir / f"status-{n:02d}.json" for n in range(count)]
        self.processes: list[subprocess.Popen[bytes]] = []
        try:
            for n, status in enumerate(self.statuses):
                self.processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            str(FLEET),
                            "--forge",
                            forge.url,
                            "--token",
                            token,
                            "--dir",
                            str(workdir / f"process-{n:02d}"),
                            "--status",
                            str(status),
                            "--count",
                            "1",
                            "--first",
                            str(n),
                            "--seconds",
                            str(FLEET_SECONDS),
                            "--every",
                            "0.1",  # 20 processes x 10 renders (and status writes) a second
                            *extra,
                        ],
                        cwd=Path(__file__).parents[2],
                    )
                )
        except BaseException:
            self.stop()
            raise

    def state(self) -> dict[str, Any]:
        """The processes' status files merged: ``{"instances": {instance id: {...}}}`` (those written so far)."""
        instances: dict[str, Any] = {}
        for status in self.statuses:
            try:
                instances.update(json.loads(status.read_text())["instances"])
            except (OSError, ValueError, KeyError):
                continue
        return {"instances": instances}

    def texts(self) -> dict[str, str | None]:
        return {instance_id: state["text"] for instance_id, state in self.state()["instances"].items()}

    def pids(self) -> set[int]:
        return {process.pid for process in self.processes if process.poll() is None}

    def stop(self) -> None:
        for status in self.statuses:
            Path(str(status) + ".stop").touch()
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def forge(make_forge: Callable[..., ForgeProcess]) -> ForgeProcess:
    return make_forge(env=FAST)


@pytest.fixture
def fleet(forge: ForgeProcess, tmp_path: Path) -> Iterator[Fleet]:
    yield from _fleet(forge, tmp_path)


def _fleet(forge: ForgeProcess, tmp_path: Path, *extra: str) -> Iterator[Fleet]:
    running = Fleet(forge, tmp_path, FLEET_SIZE, *extra)
    try:
        assert len(running.pids()) == FLEET_SIZE  # 20 client processes, none of them this one
        assert eventually(
            lambda: len(running.texts()) == FLEET_SIZE and set(running.texts().values()) == {V1}, timeout=40
        ), running.texts()
        assert eventually(lambda: eligible(forge) == FLEET_SIZE, timeout=30)
        yield running
    finally:
        running.stop()


def on(fleet: Fleet, text: str) -> set[str]:
    return {instance_id for instance_id, served in fleet.texts().items() if served == text}


def test_a_canary_reaches_exactly_the_chosen_instances_grows_without_moving_anyone_back_and_completes(
    forge: ForgeProcess, fleet: Fleet
):
    out = shell(
        forge,
        "r = rollouts.rollout_start(actor=editor, version=core.versions.get(number=2), "
        "environment=production, stages='25:3600,50:3600,100'); print(json.dumps(r.chosen))",
    )
    chosen = json.loads(out.strip().splitlines()[-1])
    assert len(chosen) == 5
    assert eventually(lambda: on(fleet, V2) == set(chosen), timeout=10), on(fleet, V2)
    time.sleep(1.5)  # and no one else follows (check-ins, polls, the evaluator)
    assert on(fleet, V2) == set(chosen)
    assert on(fleet, V1) == set(fleet.texts()) - set(chosen)

    out = shell(
        forge,
        "r = Rollout.objects.get(state='running'); "
        "r = rollouts.rollout_promote(actor=editor, rollout=r); print(json.dumps(r.chosen))",
    )
    grown = json.loads(out.strip().splitlines()[-1])
    assert len(grown) == 10 and grown[:5] == chosen
    back: set[str] = set()

    def reached() -> bool:
        now_on = on(fleet, V2)
        back.update(set(chosen) - now_on)  # an instance of the first stage seen on V1 again
        return now_on == set(grown)

    assert eventually(reached, timeout=10), on(fleet, V2)
    assert back == set(), f"moved back to the previous version: {back}"

    shell(forge, "r = Rollout.objects.get(state='running'); rollouts.rollout_promote(actor=editor, rollout=r)")
    assert eventually(lambda: on(fleet, V2) == set(fleet.texts()), timeout=10)


FAILING_VERSION = """
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt
reviewer = get_user_model().objects.get(username="reviewer")
core.refresh_from_db()
if core.status == "LOCKED":
    services.prompt_set_reopen(actor=editor, prompt_set=core)
prompt = Prompt.objects.get(prompt_set=core, key="greeting.welcome")
services.prompt_update(actor=editor, prompt=prompt, base_revision=prompt.revision,
                       template="Hello {{ customer_name }}, your order {{ order_id }} is on its way.")
version = services.prompt_set_submit(actor=editor, prompt_set=core)
version = services.version_approve(actor=reviewer, version=version)
print(version.number)
"""


ROLLOUT_PAGE = """
from django.test import Client
r = Rollout.objects.get()
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(editor)
print(client.get(f"/o/acme/p/support-bot/s/core/rollouts/{r.pk}/").content.decode())
"""


@pytest.fixture
def unguarded_fleet(forge: ForgeProcess, tmp_path: Path) -> Iterator[Fleet]:
    yield from _fleet(forge, tmp_path, "--no-guard")


def test_a_canary_whose_template_fails_for_the_hosts_variables_halts_by_itself(
    forge: ForgeProcess, unguarded_fleet: Fleet
):
    fleet = unguarded_fleet
    number = int(shell(forge, FAILING_VERSION).strip().splitlines()[-1])
    out = shell(
        forge,
        f"r = rollouts.rollout_start(actor=editor, version=core.versions.get(number={number}), "
        "environment=production, stages='25:3600,100', min_renders=5, threshold=5); print(json.dumps(r.chosen))",
    )
    chosen = set(json.loads(out.strip().splitlines()[-1]))
    assert len(chosen) == 5

    def failed_on_canary() -> list[float]:
        states = fleet.state().get("instances", {})
        return [states[i]["first_error_at"] for i in chosen if states.get(i, {}).get("first_error_at")]

    assert eventually(failed_on_canary, timeout=10)

    def back_on_v1() -> bool:
        states = fleet.state().get("instances", {})
        return all(states[i]["text"] == V1 and states[i]["error"] is None for i in chosen)

    assert eventually(back_on_v1, timeout=10), fleet.state()
    back_at = time.time()
    first_failure = min(failed_on_canary())
    out = shell(
        forge,
        "r = Rollout.objects.get(); print(json.dumps([r.state, r.reason, "
        "r.finished_at.timestamp(), r.halt_release.version.number]))",
    )
    state, reason, finished, rollback = json.loads(out.strip().splitlines()[-1])
    assert state == "halted" and "threshold" in reason
    assert rollback == number + 1
    # Halted within one check-in interval (1 s during a rollout) and the evaluator's period of the first failure.
    assert finished - first_failure < 1.0 + 0.25 + 0.75, finished - first_failure
    assert back_at - first_failure < 5.0
    # The instances not chosen never saw the failing version.
    assert all(state["error"] is None for i, state in fleet.state()["instances"].items() if i not in chosen)
    # The rollout page says what the canary instances reported (from the FORGE's one record of the signals).
    page = shell(forge, ROLLOUT_PAGE)
    assert f"Canary instances report problems with version {number}" in page
    assert "failed to render greeting.welcome: missing variable order_id" in page


def test_a_healthy_canary_is_promoted_through_its_stages_to_everyone_by_itself(forge: ForgeProcess, fleet: Fleet):
    out = shell(
        forge,
        "r = rollouts.rollout_start(actor=editor, version=core.versions.get(number=2), environment=production, "
        "stages='25:1,50:1,100', min_renders=5, threshold=5); print(json.dumps(r.chosen))",
    )
    chosen = set(json.loads(out.strip().splitlines()[-1]))
    seen_on_v2: set[str] = set()
    back: set[str] = set()

    def everyone() -> bool:
        now_on = on(fleet, V2)
        back.update(seen_on_v2 - now_on)
        seen_on_v2.update(now_on)
        return len(now_on) == 20

    assert eventually(everyone, timeout=30), on(fleet, V2)
    assert chosen <= seen_on_v2 and back == set()
    out = shell(
        forge,
        "r = Rollout.objects.get(); from anvil_forge.audit.models import AuditEvent; "
        "print(json.dumps([r.state, sorted(AuditEvent.objects.filter(action__startswith='rollout.')"
        ".values_list('action', flat=True))]))",
    )
    state, actions = json.loads(out.strip().splitlines()[-1])
    assert state == "completed"
    assert actions == ["rollout.complete", "rollout.promote", "rollout.start"]


@pytest.fixture
def reporting_fleet(forge: ForgeProcess, tmp_path: Path) -> Iterator[Fleet]:
    # Each host reports the outcome of every render: failed when it served version 2's text.
    yield from _fleet(forge, tmp_path, "--outcomes-fail-on", V2)


def test_a_canary_whose_outcomes_the_hosts_report_as_failed_halts_by_itself(
    forge: ForgeProcess, reporting_fleet: Fleet
):
    fleet = reporting_fleet
    out = shell(
        forge,
        "r = rollouts.rollout_start(actor=editor, version=core.versions.get(number=2), "
        "environment=production, stages='25:3600,100', min_renders=5, threshold=5); print(json.dumps(r.chosen))",
    )
    chosen = set(json.loads(out.strip().splitlines()[-1]))
    assert len(chosen) == 5
    assert eventually(lambda: on(fleet, V2) & chosen, timeout=10)  # the canary renders fine...
    assert eventually(lambda: not on(fleet, V2), timeout=15), on(fleet, V2)  # ...but its outcomes fail: back
    assert on(fleet, V1) == set(fleet.texts())
    out = shell(
        forge,
        "r = Rollout.objects.get(); print(json.dumps([r.state, r.reason, r.halt_release.version.number, "
        "r.evaluation['canary'], r.evaluation['baseline']]))",
    )
    state, reason, rollback, canary, baseline = json.loads(out.strip().splitlines()[-1])
    assert state == "halted" and reason.startswith("canary failed outcomes"), reason
    assert rollback == 3
    assert canary["errors"] == 0 and canary["outcomes_failed"] >= 5 and canary["failure_rate"] == 100.0
    assert baseline["outcomes_ok"] > 0 and baseline["outcomes_failed"] == 0


@pytest.mark.skipif(postgres_url() is None, reason="needs PostgreSQL: two FORGE processes share one database")
def test_two_forge_processes_halt_a_failing_canary_once(
    make_forge: Callable[..., ForgeProcess], forge: ForgeProcess, unguarded_fleet: Fleet
):
    second = make_forge(env=FAST, database_url=forge.database_url)  # evaluates too; one at a time (advisory lock)
    assert second.url != forge.url
    number = int(shell(forge, FAILING_VERSION).strip().splitlines()[-1])
    shell(
        forge,
        f"rollouts.rollout_start(actor=editor, version=core.versions.get(number={number}), "
        "environment=production, stages='25:3600,100', min_renders=5, threshold=5)",
    )
    state = "running"
    deadline = time.monotonic() + 15
    while state == "running" and time.monotonic() < deadline:
        state = shell(forge, "print(Rollout.objects.get().state)").strip().splitlines()[-1]
    assert state == "halted"
    time.sleep(1.0)  # both evaluators have had several turns since
    out = shell(
        forge,
        "from anvil_forge.audit.models import AuditEvent; "
        "print(json.dumps([AuditEvent.objects.filter(action='rollout.halt').count(), "
        "AuditEvent.objects.filter(action='version.rollback').count(), core.versions.count()]))",
    )
    halts, rollbacks, versions = json.loads(out.strip().splitlines()[-1])
    assert (halts, rollbacks, versions) == (1, 1, number + 1)
