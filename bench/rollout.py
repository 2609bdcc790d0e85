"""A canary that fails halts by itself: ``halt_seconds`` from the first failing render on a canary instance to every
canary instance serving the previous text again (issue 16).

One FORGE process (SQLite), 20 real :class:`anvil_client.Client` objects in one other process
(``tests/integration/rollout_fleet.py``: each with its own cache directory and instance id, rendering
``greeting.welcome`` every 50 ms as a host would, render guard off so the failures reach the host), a check-in
interval of 1 s during the rollout (the FORGE asks for it: ``ANVIL_ROLLOUT_CHECKIN_INTERVAL=1``), the evaluator
every 0.25 s. Each round makes a version whose template needs a variable the hosts do not pass, starts a 25 %
rollout of it (5 of 20), and watches the fleet's status file: the first failing render on a chosen instance, then
the first snapshot in which every chosen instance serves the previous text without error. Both times come from
the fleet process's clock (one machine). Also recorded: when the rollout halted (the FORGE's ``finished_at``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, log, running_forge, summarize, write_result

ROUNDS = 5
V1 = "Hi Ada! How can I help you today?"
ENV = {
    "ANVIL_RELEASE_POLL_SECONDS": "0.2",
    "ANVIL_STREAM_HEARTBEAT_SECONDS": "1",
    "ANVIL_ROLLOUT_CHECKIN_INTERVAL": "1",
    "ANVIL_ROLLOUT_EVALUATE_SECONDS": "0.25",
}
HEAD = """
import json
from django.contrib.auth import get_user_model
from anvil_forge.distribution import rollouts
from anvil_forge.distribution.rollout_models import Rollout
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Environment, Prompt, PromptSet
editor = get_user_model().objects.get(username="editor")
reviewer = get_user_model().objects.get(username="reviewer")
core = PromptSet.objects.get(slug="core", project__slug="support-bot")
production = Environment.objects.get(project=core.project, slug="production")
"""
FAILING = """
core.refresh_from_db()
if core.status == "LOCKED":
    services.prompt_set_reopen(actor=editor, prompt_set=core)
prompt = Prompt.objects.get(prompt_set=core, key="greeting.welcome")
services.prompt_update(actor=editor, prompt=prompt, base_revision=prompt.revision,
                       template="Hello {{ customer_name }}, round %d: your order {{ order_id }} is on its way.")
version = services.version_approve(actor=reviewer, version=services.prompt_set_submit(actor=editor, prompt_set=core))
r = rollouts.rollout_start(actor=editor, version=version, environment=production, stages="25:3600,100",
                           min_renders=5, threshold=5)
print(json.dumps([r.pk, r.chosen]))
"""


def _shell(forge: Any, code: str) -> str:
    return forge.cli("manage", "shell", "-c", HEAD + code).strip().splitlines()[-1]


def _status(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _wait(predicate: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return None


def main() -> int:
    halts: list[float] = []
    decided: list[float] = []
    rounds: list[dict[str, Any]] = []
    with running_forge(env=ENV) as forge, tempfile.TemporaryDirectory(prefix="anvil-rollout-") as tmp:
        out = forge.cli(
            "token",
            "create",
            "acme/support-bot",
            "--environment",
            "production",
            "--kind",
            "live",
            "--name",
            "rollout-bench",
        )
        token = next(word for word in out.split() if word.startswith("anvil_live_"))
        status_path = Path(tmp) / "status.json"
        fleet = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests/integration/rollout_fleet.py"),
                "--forge",
                forge.url,
                "--token",
                token,
                "--dir",
                str(Path(tmp) / "clients"),
                "--status",
                str(status_path),
                "--count",
                "20",
                "--seconds",
                "600",
                "--no-guard",
            ],
            cwd=ROOT,
        )
        try:
            ready = _wait(
                lambda: [s["text"] for s in _status(status_path).get("instances", {}).values()] == [V1] * 20, 60
            )
            assert ready, "the fleet did not start"
            eligible = "print(len(rollouts.eligible_instances(environment_id=production.pk, set_slug='core')))"
            assert _wait(lambda: _shell(forge, eligible) == "20", 60), "the fleet did not check in"
            for round_number in range(1, ROUNDS + 1):
                rollout_id, chosen = json.loads(_shell(forge, FAILING % round_number))
                first: list[float] = []

                def failing(chosen: list[str] = chosen, first: list[float] = first) -> bool:
                    states = _status(status_path).get("instances", {})
                    starts = [states[i]["failing_since"] for i in chosen if states.get(i, {}).get("failing_since")]
                    if starts:
                        first.append(min(starts))
                    return bool(starts)

                assert _wait(failing, 20), "no canary instance failed"

                def back(chosen: list[str] = chosen, first: list[float] = first) -> float | None:
                    data = _status(status_path)
                    states = data.get("instances", {})
                    starts = [states[i]["failing_since"] for i in chosen if states.get(i, {}).get("failing_since")]
                    if starts:
                        first.append(min(starts))
                    ok = all(states.get(i, {}).get("text") == V1 and not states[i].get("error") for i in chosen)
                    return data["at"] if ok else None

                back_at = _wait(back, 30)
                assert back_at, "the canary instances did not come back"
                first_failure = min(first)
                state, finished = json.loads(
                    _shell(
                        forge,
                        f"r = Rollout.objects.get(pk={rollout_id}); "
                        "print(json.dumps([r.state, r.finished_at.timestamp() if r.finished_at else None]))",
                    )
                )
                halt = back_at - first_failure
                halts.append(halt)
                decided.append(finished - first_failure)
                rounds.append(
                    {
                        "round": round_number,
                        "chosen": len(chosen),
                        "state": state,
                        "halt_seconds": round(halt, 3),
                        "halted_after_seconds": round(finished - first_failure, 3),
                    }
                )
                log(
                    f"round {round_number}: {state}, halt_seconds {halt:.3f} "
                    f"(halted after {finished - first_failure:.3f} s)"
                )
                time.sleep(1.5)  # the failing runs end; the next round starts from a quiet fleet
        finally:
            (Path(str(status_path) + ".stop")).touch()
            try:
                fleet.wait(timeout=30)
            except subprocess.TimeoutExpired:
                fleet.kill()
    write_result(
        "rollout",
        {
            "halt_seconds": summarize(halts),
            "halted_after_seconds": summarize(decided),
            "clients": 20,
            "canary_instances": 5,
            "checkin_interval_seconds": 1,
            "evaluate_seconds": 0.25,
            "database": "sqlite",
            "rounds": rounds,
            "what": "first failing render on a canary instance -> every canary instance serving the previous text "
            "(halt_seconds); -> the FORGE halting the rollout (halted_after_seconds)",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
