"""Propagation as a user meets it: from the publish action to the moment every LIVE client returns the new text.

``bench.propagation`` and ``bench.propagation_clients`` start their clock just before the publisher's COMMIT.
A person starts it earlier: with the click on the confirm button, or with the ``anvil-forge publish`` command.
This benchmark measures from there, on the embedded default (SQLite, one FORGE process, the command in another
process) and on PostgreSQL:

* ``web``: the editor, signed in, POSTs the publish confirmation form (``/o/.../versions/N/publish/production/``);
  the clock starts just before the request is sent;
* ``cli``: ``anvil-forge publish acme/support-bot/core --version N --environment production --as editor`` in a
  new process; the clock starts just before the process is started.

Each path's ``p99_ms`` is from the action's start to every client's new text; it splits in ``until_published_ms``
(the action's own time up to the release row: for the command, Python's and Django's start-up and the publish)
and ``after_published_ms`` / ``delivery_p99_ms`` (from the release row's ``published_at``, written just before the
commit, to the clients' new text). The command's goal is start-up + at most 100 ms: ``delivery_p99_ms`` <= 100.

Clients: ``CLIENTS`` processes, each one ``anvil_client.Client`` following the FORGE over its stream and a thread
calling ``prompt()`` every 2 ms (``bench.propagation_clients``); latency = the first ``prompt()`` that returns the
new round's text - the start of the user's action. The FORGE runs with its defaults (the periodic check at 1 s).

    .venv/bin/python -m bench.propagation_users

Results: ``bench/results/propagation_users.json``: ``web`` and ``cli``, each ``{"sqlite": {"p99_ms", ...},
"postgresql": {"p99_ms", ...}}``. Goals (issue 15): web p99 150 ms; cli at most the command's start-up + 100 ms.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from bench.api import postgres_available, signed_in_cookie
from bench.common import ROOT, log, percentile, query_one, running_forge, summarize, write_result
from bench.idle_streams import create_token
from bench.propagation_clients import Child

CLIENTS = 4
ROUNDS = 6  # per path and database
ROUND_WAIT_S = 1.2
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/anvil_bench"
SET_PATH = "/o/acme/p/support-bot/s/core"
FORGE_ENV = {"ANVIL_LOG_LEVEL": "WARNING"}


# -- preparing the versions (a child process with the FORGE's database settings) ---------------------------


def prepare_main(rounds: int) -> int:
    """Make ``rounds`` approved versions of acme/support-bot/core, version ``i`` ending with ``round i``."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")
    django.setup()
    from anvil_forge.accounts.permissions import SystemActor
    from anvil_forge.prompts import services
    from anvil_forge.prompts.models import Prompt, PromptSet, SetStatus

    actor = SystemActor("bench.propagation_users")
    prompt_set = PromptSet.objects.get(project__organisation__slug="acme", project__slug="support-bot", slug="core")
    numbers = []
    for index in range(rounds):
        prompt_set.refresh_from_db()
        if prompt_set.status == SetStatus.LOCKED:
            services.prompt_set_reopen(actor=actor, prompt_set=prompt_set)
        prompt = Prompt.objects.filter(prompt_set=prompt_set).order_by("key").first()
        services.prompt_update(
            actor=actor, prompt=prompt, base_revision=prompt.revision, template=f"{prompt.template}\nround {index}"
        )
        prompt_set.refresh_from_db()
        version = services.prompt_set_submit(actor=actor, prompt_set=prompt_set)
        numbers.append(services.version_approve(actor=actor, version=version).number)
    sys.stdout.write(json.dumps({"numbers": numbers}) + "\n")
    return 0


# -- the two ways a person publishes ---------------------------------------------------------------------------


def publish_web(forge: Any, cookie: str, number: int) -> tuple[float, float]:
    """POST the confirm form of version ``number``; (started, answered) wall-clock times."""
    url = f"{forge.url}{SET_PATH}/versions/{number}/publish/production/"
    page = urllib.request.urlopen(urllib.request.Request(url, headers={"Cookie": cookie}), timeout=30).read().decode()
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if csrf is None:
        raise RuntimeError(f"no publish form on {url}")
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf.group(1)}).encode()
    request = urllib.request.Request(url, data=form, headers={"Cookie": cookie, "Referer": url})
    opener = urllib.request.build_opener(_NoRedirect)
    started = time.time()
    try:
        opener.open(request, timeout=30).read()
    except urllib.error.HTTPError as exc:
        if exc.code not in (302, 303):
            raise RuntimeError(f"publishing version {number} from the web answered {exc.code}") from exc
    return started, time.time()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def publish_cli(forge: Any, number: int) -> tuple[float, float]:
    """``anvil-forge publish`` in a new process; (started, exited) wall-clock times."""
    command = [
        sys.executable, "-m", "anvil_forge.cli", "publish", "acme/support-bot/core",
        "--version", str(number), "--environment", "production", "--as", "editor",
    ]
    started = time.time()
    result = subprocess.run(command, env=command_env(forge), capture_output=True, text=True, timeout=60)
    exited = time.time()
    if result.returncode != 0:
        raise RuntimeError(f"anvil-forge publish failed ({result.returncode}): {result.stderr[-500:]}")
    return started, exited


def command_env(forge: Any) -> dict[str, str]:
    """The FORGE's environment for the command, with bytecode as installed: any PYTHONDONTWRITEBYTECODE (even "0")
    stops .pyc writes, and every run would then compile the FORGE's modules from source (~0.3 s a start)."""
    return {k: v for k, v in forge.env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def newest_release_published_at(database_url: str) -> float:
    """``published_at`` of the newest release, in epoch seconds (set in the publish's transaction, just before
    its commit): splits the user's wait into the action's own time and the delivery after it."""
    import datetime as dt

    value = query_one(database_url, "SELECT published_at FROM distribution_release ORDER BY id DESC LIMIT 1")
    if isinstance(value, str):  # SQLite keeps the text
        value = dt.datetime.fromisoformat(value)
    moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return moment.timestamp()


# -- the benchmark ---------------------------------------------------------------------------------------------


def _figures(reports: list[dict[str, Any]], rounds: list[tuple[int, float, float, float]]) -> dict[str, Any]:
    latencies: list[float] = []
    after_end: list[float] = []
    after_publish: list[float] = []
    missing = 0
    for report in reports:
        for index, started, ended, published in rounds:
            seen = report["seen"].get(f"round {index}")
            if seen is None:
                missing += 1
                continue
            latencies.append((seen - started) * 1000)
            after_end.append((seen - ended) * 1000)
            after_publish.append((seen - published) * 1000)
    action_ms = [(ended - started) * 1000 for _, started, ended, _ in rounds]
    until_publish_ms = [(published - started) * 1000 for _, started, _, published in rounds]
    return {
        "clients": len(reports),
        "rounds": len(rounds),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
        "latency_ms": summarize(latencies, 1),
        # The web request's answer, or the command's whole run (start-up, publish, exit).
        "action_ms": summarize(action_ms, 1),
        # From the answer (or the command's exit) to the client's new text: negative when the clients had it first.
        "after_action_ms": summarize(after_end, 1),
        # From the action's start to the release row (the command's start-up and the publish itself) ...
        "until_published_ms": summarize(until_publish_ms, 1),
        # ... and from the release row (just before COMMIT) to every client's new text: the delivery.
        "after_published_ms": summarize(after_publish, 1),
        "delivery_p99_ms": round(percentile(after_publish, 99), 1) if after_publish else None,
        "missing": missing,
    }


def measure_database(label: str, postgres_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with running_forge(env=FORGE_ENV, postgres_url=postgres_url) as forge:
        token = create_token(forge)
        child_env = {**forge.env, "PYTHONPATH": str(ROOT)}
        prepared = subprocess.run(
            [sys.executable, "-m", "bench.propagation_users", "prepare", str(2 * ROUNDS)],
            cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=120,
        )
        if prepared.returncode != 0:
            raise RuntimeError(f"preparing versions failed: {prepared.stderr[-800:]}")
        numbers = json.loads(prepared.stdout.strip().splitlines()[-1])["numbers"]
        client_env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
        client_env["PYTHONPATH"] = str(ROOT)
        clients = [
            Child(["bench.propagation_clients", "client", forge.url, token], client_env) for _ in range(CLIENTS)
        ]
        try:
            for client in clients:
                client.ask(None)
            cookie = signed_in_cookie(forge.url)
            # Once, unmeasured: the bytecode an installed FORGE has (pip compiles it when installing).
            packages = [str(ROOT / "forge" / "anvil_forge"), str(ROOT / "client" / "anvil_client")]
            subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], env=command_env(forge), timeout=120)
            time.sleep(1.0)
            for path in ("web", "cli"):
                offset = 0 if path == "web" else ROUNDS
                rounds = []
                for index in range(offset, offset + ROUNDS):
                    if path == "web":
                        started, ended = publish_web(forge, cookie, numbers[index])
                    else:
                        started, ended = publish_cli(forge, numbers[index])
                    rounds.append((index, started, ended, newest_release_published_at(forge.database_url)))
                    time.sleep(ROUND_WAIT_S)
                results[path] = _figures([client.ask("times") for client in clients], rounds)
                log(f"propagation_users[{label}] {path}: {results[path]}")
        finally:
            for client in clients:
                client.close()
    return results


def main() -> int:
    per_database: dict[str, dict[str, Any]] = {"sqlite": measure_database("sqlite", None)}
    pg = os.environ.get("ANVIL_BENCH_DATABASE_URL", DEFAULT_PG)
    if postgres_available(pg):
        per_database["postgresql"] = measure_database("postgresql", pg)
    else:
        log(f"propagation_users: PostgreSQL does not answer at {pg}; SQLite only")
        skipped = {"skipped": f"PostgreSQL did not answer at {pg}"}
        per_database["postgresql"] = {"web": skipped, "cli": skipped}
    figures = {
        "method": f"{CLIENTS} processes with one anvil_client.Client each (prompt() every 2 ms); {ROUNDS} publishes "
        f"per path and database, {ROUND_WAIT_S} s apart; one FORGE process with its defaults; latency = first "
        "prompt() returning the new text - the start of the user's action (web: the confirm POST is sent; cli: "
        "the anvil-forge publish process is started)",
        "goals": {"web_p99_ms": 150, "cli": "the command's start-up + at most 100 ms"},
        "web": {label: result["web"] for label, result in per_database.items()},
        "cli": {label: result["cli"] for label, result in per_database.items()},
    }
    path = write_result("propagation_users", figures)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "prepare":
        sys.exit(prepare_main(int(sys.argv[2])))
    sys.exit(main())
