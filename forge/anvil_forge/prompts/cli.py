"""``anvil-forge import`` and ``anvil-forge export``: prompts in and out as files (``prompts.fileformat``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_export_arguments", "add_import_arguments", "run_export", "run_import"]


class _DryRun(Exception):
    """Raised inside the import's transaction to roll it back after a dry run."""


def _target(value: str) -> tuple[str, str, str]:
    from anvil_forge.core.exceptions import ApplicationError

    parts = value.split("/")
    if len(parts) != 3 or not all(parts):
        raise ApplicationError(f"{value!r} is not ORG/PROJECT/SET (for example acme/support-bot/core)")
    return parts[0], parts[1], parts[2]


def _user(username: str):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    from anvil_forge.core.exceptions import NotFound

    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"no active user named {username}")
    return user


def run_import(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.db import transaction

    from anvil_forge.prompts import selectors
    from anvil_forge.prompts.fileformat import load_path
    from anvil_forge.prompts.transfer import prompt_set_import

    org, project_slug, set_slug = _target(args.target)
    actor = _user(args.as_user)
    project = selectors.project_get(actor=actor, organisation_slug=org, project_slug=project_slug)
    path = Path(args.path)
    collection = load_path(path)
    plan = None
    try:
        with transaction.atomic():
            plan = prompt_set_import(
                actor=actor, project=project, set_slug=set_slug, collection=collection, prune=args.prune,
                source=f"anvil-forge import {path.name}",
            )
            if args.dry_run:
                raise _DryRun
    except _DryRun:
        pass
    assert plan is not None
    print(plan.summary)
    for label, ids in (("added", plan.added), ("changed", plan.changed), ("removed", plan.removed),
                       ("unchanged", plan.unchanged)):
        if ids:
            print(f"{label}:")
            for key in ids:
                print(f"  {key}")
    if plan.kept:
        print(f"{len(plan.kept)} prompts of {set_slug} are not in {path.name} and were kept (--prune removes them)",
              file=sys.stderr)
    for key, value in plan.set_changes.items():
        print(f"set {key}: {value}", file=sys.stderr)
    if args.dry_run:
        print("Dry run: nothing was written.", file=sys.stderr)
    return 0


def add_import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ORG/PROJECT/SET", help="the set to import into (created if missing)")
    parser.add_argument("path", metavar="PATH",
                        help="a directory of prompt files, a .zip of one, an anvil.bundle/1 file or a Langfuse export")
    parser.add_argument("--as", dest="as_user", required=True, metavar="USERNAME",
                        help="who imports (needs the editor's role; audited)")
    parser.add_argument("--dry-run", action="store_true", help="print what would change and write nothing")
    parser.add_argument("--prune", action="store_true", help="also remove the set's prompts that are not in PATH")


def run_export(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from anvil_forge.accounts.permissions import SystemActor
    from anvil_forge.prompts import selectors
    from anvil_forge.prompts.fileformat import export_files, write_directory
    from anvil_forge.prompts.transfer import prompt_set_export

    org, project_slug, set_slug = _target(args.target)
    actor = _user(args.as_user) if args.as_user else SystemActor("anvil-forge export")
    project = selectors.project_get(actor=actor, organisation_slug=org, project_slug=project_slug)
    prompt_set = selectors.prompt_set_get(actor=actor, project=project, slug=set_slug)
    export = prompt_set_export(actor=actor, prompt_set=prompt_set, version=args.version)
    out = Path(args.out)
    write_directory(export_files(name=export.name, description=export.description, prompts=export.prompts), out)
    what = f"version {export.version}" if export.version is not None else "the current editing content"
    print(f"Exported {len(export.prompts)} prompts of {args.target} ({what}) to {out}.")
    return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ORG/PROJECT/SET")
    parser.add_argument("--version", type=int, help="the version to export (default: the current editing content)")
    parser.add_argument("--out", required=True, metavar="DIR", help="a new or empty directory to write into")
    parser.add_argument("--as", dest="as_user", metavar="USERNAME", help="read as this user (default: the console)")
