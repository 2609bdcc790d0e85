"""``anvil-forge rollback ORG/PROJECT/SET --to N --environment ENV --as USER``: the rollback pages' action.

Makes a new version with version N's content and publishes it to ENV, as the named user (their role is
checked, both steps are audited), exactly as "Roll back ENV to version N" does on the release and versions pages.
"""

from __future__ import annotations

import argparse


def run_rollback(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from django.contrib.auth import get_user_model

    from anvil_forge.core.exceptions import ApplicationError, NotFound
    from anvil_forge.prompts import selectors
    from anvil_forge.prompts.rollback import approval_of, rollback_environment

    parts = args.target.split("/")
    if len(parts) != 3 or not all(parts):
        raise ApplicationError(f"{args.target!r} is not ORG/PROJECT/SET (for example acme/support-bot/core)")
    actor = get_user_model().objects.filter(username=args.as_user, is_active=True).first()
    if actor is None:
        raise NotFound(f"no active user named {args.as_user}")
    project = selectors.project_get(actor=actor, organisation_slug=parts[0], project_slug=parts[1])
    prompt_set = selectors.prompt_set_get(actor=actor, project=project, slug=parts[2])
    environment = selectors.environment_get(actor=actor, project=project, slug=args.environment)
    release = rollback_environment(actor=actor, prompt_set=prompt_set, number=args.to, environment=environment)
    made = release.version
    approval = approval_of(made)
    approved = ""
    if approval is not None and approval.reviewed_by is not None:
        approved = f", approved as version {approval.version.number} by {approval.reviewed_by.get_username()}"
    print(
        f"Rolled {project}/{prompt_set.slug} in {environment.slug} back to version {args.to}'s content{approved}: "
        f"made version {made.number} and published it (release {release.pk}, digest {made.digest})."
    )
    return 0


def add_rollback_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ORG/PROJECT/SET")
    parser.add_argument("--to", type=int, required=True, metavar="N", help="the version that was live there before")
    parser.add_argument("--environment", required=True, help="the environment slug (production, staging...)")
    parser.add_argument("--as", dest="as_user", required=True, metavar="USERNAME", help="who rolls back (audited)")
