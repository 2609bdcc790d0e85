"""Pages at real volumes (issue 19): every main page's p50 server time and size on a grown demo.

The demo is grown, in a child process with Django set up against a fresh copy of the demo database, to:

* a prompt set ``catalogue`` of 500 prompts with 1,000 versions (the first three made through the services:
  submit, approve, publish; the other 997 with ``bulk_create``, each changing one prompt of the one before,
  approved, and a release to staging for every one and to production for every tenth);
* 500 ACCESS_TOKENs, through ``token_create`` (the service; cheap);
* 10,000 LIVE instances (``bulk_create``: one process each, every tenth with three, some FROZEN, some pinned,
  some offline) in production and staging;
* 100,000 audit events (``bulk_create``; 5,000 of them acknowledgements of the newest production release).

``bulk_create`` is used where the services would take too long (each prompt, version and check-in through
the services costs a transaction and its audit row; the 1,000 versions alone would take many minutes).
Then one FORGE (``anvil-forge serve``, one uvicorn worker) serves the grown database and each page is
fetched by the signed-in owner, one request at a time on a kept connection: 2 warm-ups, then the median
of 5 (the time from sending the request to the last byte over loopback) and the body's size.
SQLite always; PostgreSQL when reachable (``ANVIL_BENCH_DATABASE_URL``), ANALYZEd after growing (as
autovacuum would be soon after such a load).

    python -m bench.pages            # both databases, writes bench/results/pages.json
    python -m bench.pages --sqlite   # SQLite only
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, log, write_result

INSTANCES = 10_000
VERSIONS = 1_000
PROMPTS = 500
AUDIT_EVENTS = 100_000
TOKENS = 500
ACKS = 5_000
SET = "catalogue"
GOAL_MS = 150
GOAL_KB = 200
REPEATS = 5
WARMUPS = 2


# --- growing (runs in the child process, Django set up) ---------------------------------------------------


def grow() -> dict[str, Any]:
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from anvil_forge.accounts.models import Organisation
    from anvil_forge.audit.models import AuditEvent
    from anvil_forge.distribution import services as distribution_services
    from anvil_forge.distribution.models import AccessToken, InstanceMode, LiveInstance, LiveProcess, Release
    from anvil_forge.prompts import services
    from anvil_forge.prompts.demo import ORGANISATION, PROJECT
    from anvil_forge.prompts.models import Environment, Project, Prompt, PromptSetVersion, VersionState

    rng = random.Random(19)
    started = time.monotonic()
    users = {u.username: u for u in get_user_model().objects.all()}
    editor, reviewer, owner = users["editor"], users["reviewer"], users["owner"]
    organisation = Organisation.objects.get(slug=ORGANISATION)
    project = Project.objects.get(organisation=organisation, slug=PROJECT)
    production = Environment.objects.get(project=project, slug="production")
    staging = Environment.objects.get(project=project, slug="staging")

    prompt_set = services.prompt_set_create(actor=editor, project=project, slug=SET, name="Catalogue")
    Prompt.objects.bulk_create(
        Prompt(
            prompt_set=prompt_set,
            key=f"catalogue.item{index:03d}",
            template=f"Describe item {index} for {{{{ name }}}} in a friendly tone. Keep it under 80 words.",
            description=f"Item {index}",
            parameters=[{"name": "name", "type": "string", "required": True}],
            metadata={"model": "gpt-4o-mini", "temperature": 0.3},
            updated_by=editor,
        )
        for index in range(PROMPTS)
    )
    # Three versions through the services (submit, approve, publish), each after one edit.
    for number in range(1, 4):
        if number > 1:
            services.prompt_set_reopen(actor=editor, prompt_set=prompt_set)
            prompt = Prompt.objects.get(prompt_set=prompt_set, key=f"catalogue.item{number:03d}")
            services.prompt_update(
                actor=editor, prompt=prompt, template=prompt.template + f" (v{number})", base_revision=prompt.revision
            )
        prompt_set.refresh_from_db()
        version = services.prompt_set_submit(actor=editor, prompt_set=prompt_set)
        version = services.version_approve(actor=reviewer, version=version)
        services.version_publish(actor=owner, version=version, environment=production)
    log(f"  3 versions of {PROMPTS} prompts through the services in {time.monotonic() - started:.1f} s")

    # The other versions in bulk, each changing one prompt of the one before.
    last = PromptSetVersion.objects.filter(prompt_set=prompt_set).order_by("-number").first()
    snapshot = last.snapshot
    batch: list[PromptSetVersion] = []
    now = timezone.now()
    for number in range(last.number + 1, VERSIONS + 1):
        prompts = [dict(p) for p in snapshot["prompts"]]
        changed = prompts[number % len(prompts)]
        changed["template"] = changed["template"] + f" (v{number})"
        snapshot = {**snapshot, "prompts": prompts}
        batch.append(
            PromptSetVersion(
                prompt_set=prompt_set,
                number=number,
                snapshot=snapshot,
                digest=f"sha256:{number:064x}",
                state=VersionState.APPROVED,
                created_by=editor,
                reviewed_by=reviewer,
                reviewed_at=now,
            )
        )
    with transaction.atomic():
        made = PromptSetVersion.objects.bulk_create(batch, batch_size=50)
        Release.objects.bulk_create(
            [Release(environment=staging, prompt_set=prompt_set, version=v, published_by=owner) for v in made]
            + [
                Release(environment=production, prompt_set=prompt_set, version=v, published_by=owner)
                for v in made
                if v.number % 10 == 0 and v.number < VERSIONS
            ],
            batch_size=500,
        )
    # The newest production release is left for the publish page: version VERSIONS is not live there yet.
    production_release = Release.objects.filter(environment=production, prompt_set=prompt_set).order_by("-id").first()
    log(f"  {VERSIONS} versions in {time.monotonic() - started:.1f} s")

    for index in range(TOKENS):
        distribution_services.token_create(
            actor=owner,
            project=project,
            environment=production if index % 2 else staging,
            kind="live",
            name=f"fleet {index}",
        )
    tokens = list(AccessToken.objects.filter(project=project).values_list("id", flat=True))
    log(f"  {TOKENS} tokens through token_create in {time.monotonic() - started:.1f} s")

    live_number = production_release.version.number
    instances = []
    for index in range(INSTANCES):
        environment = production if index % 4 else staging
        instances.append(
            LiveInstance(
                project=project,
                environment=environment,
                token_id=tokens[index % len(tokens)],
                instance_id=f"i-{index:06d}",
                name=f"web-{index:05d}",
                host=f"host-{index // 8:04d}.example.internal",
                last_seen_at=now,
            )
        )
    with transaction.atomic():
        made_instances = LiveInstance.objects.bulk_create(instances, batch_size=1000)
        processes = []
        for index, instance in enumerate(made_instances):
            for process_id in range(3 if index % 10 == 0 else 1):
                kind = rng.random()
                versions = {"core": 2, SET: live_number if kind < 0.8 else live_number - 10}
                offline = index % 50 == 7
                processes.append(
                    LiveProcess(
                        instance=instance,
                        process_id=process_id,
                        client_version="0.9.0",
                        mode=InstanceMode.FROZEN if kind > 0.97 else InstanceMode.ACCEPTING,
                        pins={SET: live_number - 20} if 0.95 < kind <= 0.97 else {},
                        versions=versions,
                        usage={},
                        first_seen_at=now,
                        last_seen_at=now,
                        expires_at=now - timedelta(minutes=5) if offline else now + timedelta(days=1),
                    )
                )
        LiveProcess.objects.bulk_create(processes, batch_size=1000)
    log(f"  {INSTANCES} instances ({len(processes)} processes) in {time.monotonic() - started:.1f} s")

    actions = ["prompt.update", "prompt_set.submit", "version.approve", "release.publish", "token.create"]
    events = []
    for index in range(AUDIT_EVENTS - ACKS):
        events.append(
            AuditEvent(
                organisation=organisation,
                project=project,
                actor=editor if index % 3 else None,
                actor_label="editor" if index % 3 else f"instance web-{index % INSTANCES:05d}",
                action=actions[index % len(actions)] if index % 3 else "instance.checkin",
                object_type="prompts.prompt",
                object_id=str(index),
                object_repr=f"catalogue.item{index % PROMPTS:03d}",
                data={"set": SET if index % 2 else "core"},
            )
        )
    for index in range(ACKS):
        instance = made_instances[index]
        events.append(
            AuditEvent(
                organisation=organisation,
                project=project,
                actor_label=f"instance {instance.name}",
                action="release.acknowledge",
                object_type=Release._meta.label_lower,
                object_id=str(production_release.pk),
                object_repr=str(production_release),
                data={
                    "instance_id": instance.instance_id,
                    "instance": instance.name,
                    "host": instance.host,
                    "set": SET,
                    "version": live_number,
                    "environment": "production",
                },
            )
        )
    with transaction.atomic():
        AuditEvent.objects.bulk_create(events, batch_size=2000)
    log(f"  {AUDIT_EVENTS} audit events in {time.monotonic() - started:.1f} s")
    from django.db import connection

    if connection.vendor == "postgresql":
        # What autovacuum does shortly after a bulk load: without statistics the planner guesses one row per
        # table and picks, for instance, a bitmap scan of every audit event for the set page's 25-row history.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        log(f"  ANALYZE in {time.monotonic() - started:.1f} s")
    return {
        "release": production_release.pk,
        "publish_number": VERSIONS,
        "seconds": round(time.monotonic() - started, 1),
    }


# --- measuring (the parent) -------------------------------------------------------------------------------


def pages(release: int, publish_number: int) -> dict[str, str]:
    s = f"/o/acme/p/support-bot/s/{SET}"
    return {
        "projects": "/o/acme/",
        "project": "/o/acme/p/support-bot/",
        "set": f"{s}/",
        "versions": f"{s}/versions/",
        "version": f"{s}/versions/{publish_number}/",
        "diff": f"{s}/diff/?a=1&b={publish_number}",
        "publish": f"{s}/versions/{publish_number}/publish/production/",
        "release": f"{s}/releases/{release}/",
        "release_acks": f"{s}/releases/{release}/acks/",
        "instances": "/o/acme/instances/",
        "audit": "/o/acme/audit/",
        "tokens": "/o/acme/tokens/",
    }


def measure(forge: Any, paths: dict[str, str]) -> dict[str, Any]:
    from bench.api import signed_in_cookie

    cookie = signed_in_cookie(forge.url, "owner")
    connection = http.client.HTTPConnection("127.0.0.1", forge.port, timeout=60)
    figures: dict[str, Any] = {}
    try:
        for name, path in paths.items():
            samples, size = [], 0
            for index in range(WARMUPS + REPEATS):
                began = time.perf_counter()
                connection.request("GET", path, headers={"Cookie": cookie})
                response = connection.getresponse()
                body = response.read()
                elapsed = (time.perf_counter() - began) * 1000
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status}")
                if index >= WARMUPS:
                    samples.append(elapsed)
                    size = len(body)
            samples.sort()
            figures[name] = {
                "p50_ms": round(samples[len(samples) // 2], 1),
                "kb": round(size / 1024, 1),
                "path": path,
            }
            log(f"  {name:13} {figures[name]['p50_ms']:8.1f} ms {figures[name]['kb']:8.1f} KB")
    finally:
        connection.close()
    return figures


def run(label: str, postgres_url: str | None) -> dict[str, Any]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests import forge_process

    saved = os.environ.get("DATABASE_URL")
    if postgres_url:
        os.environ["DATABASE_URL"] = postgres_url
    else:
        os.environ.pop("DATABASE_URL", None)
    try:
        with tempfile.TemporaryDirectory(prefix="anvil-bench-pages-") as tmp:
            data_dir = Path(tmp)
            database_url = forge_process.new_database(data_dir, seed_demo=True)
            forge = forge_process.ForgeProcess(data_dir=data_dir, database_url=database_url)
            try:
                log(f"{label}: growing the demo")
                child = subprocess.run(
                    [sys.executable, "-m", "bench.pages", "--grow"],
                    cwd=ROOT,
                    env={**os.environ, **forge.env, "PYTHONUNBUFFERED": "1"},
                    stdout=subprocess.PIPE,
                    text=True,
                    check=True,
                )
                grown = dict(line.split("=", 1) for line in child.stdout.split() if "=" in line)
                forge.start(timeout=60)
                log(f"{label}: measuring (grown in {grown['seconds']} s)")
                return measure(forge, pages(int(grown["release"]), int(grown["publish_number"])))
            finally:
                forge.stop()
                forge.drop_database()
    finally:
        forge_process.drop_templates()
        if saved is None:
            os.environ.pop("DATABASE_URL", None)
        else:
            os.environ["DATABASE_URL"] = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pages", description=__doc__.splitlines()[0])
    parser.add_argument("--grow", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--sqlite", action="store_true", help="SQLite only")
    args = parser.parse_args(argv)
    if args.grow:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")
        result = grow()
        print(" ".join(f"{key}={value}" for key, value in result.items()))
        return 0
    from bench.api import DEFAULT_PG, postgres_available

    results: dict[str, Any] = {"sqlite": run("sqlite", None)}
    pg = os.environ.get("ANVIL_BENCH_DATABASE_URL", DEFAULT_PG)
    if not args.sqlite and postgres_available(pg):
        results["postgresql"] = run("postgresql", pg)
    over = [
        f"{db}/{page}"
        for db, figures in results.items()
        for page, figure in figures.items()
        if figure["p50_ms"] > GOAL_MS or figure["kb"] > GOAL_KB
    ]
    results["goal"] = {"p50_ms": GOAL_MS, "kb": GOAL_KB, "over": over}
    results["size"] = {
        "instances": INSTANCES,
        "versions": VERSIONS,
        "prompts": PROMPTS,
        "audit_events": AUDIT_EVENTS,
        "tokens": TOKENS,
    }
    write_result("pages", results)
    log(f"over the goal: {', '.join(over) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
