"""``anvil-forge token create|list|revoke``: ACCESS_TOKENs from the server's console.

The console acts as a ``SystemActor`` (the operator); every token event is audited like one made in the
web interface. ``create`` prints the token once, alone on stdout (``TOKEN=$(anvil-forge token create ...)``
captures it), and what it is for on stderr.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from anvil_forge.core.exceptions import ApplicationError

if TYPE_CHECKING:
    from anvil_forge.prompts.models import Project


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="token_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a token and print it once")
    create.add_argument("project", metavar="ORG/PROJECT")
    create.add_argument("--environment", required=True, help="the environment the token reads (e.g. production)")
    create.add_argument("--kind", required=True, choices=["live", "peer"], help="live: a LIVE instance; peer: a FORGE")
    create.add_argument("--name", required=True, help="who uses it, e.g. 'web servers'")
    create.add_argument("--expires-in-days", type=int, default=None, metavar="N")
    listing = actions.add_parser("list", help="list tokens (never the secret)")
    listing.add_argument("project", metavar="ORG/PROJECT", nargs="?", help="only this project's tokens")
    revoke = actions.add_parser("revoke", help="revoke a token: its requests get 401, its streams close")
    revoke.add_argument("prefix", metavar="PREFIX", help="the token's prefix as `token list` shows it (or the token)")


def run_token(args: argparse.Namespace) -> int:
    import django

    django.setup()
    if args.token_action == "create":
        return _create(args)
    if args.token_action == "list":
        return _list(args)
    return _revoke(args)


def _project(value: str) -> Project:
    from anvil_forge.prompts.models import Project

    organisation, _, project = value.partition("/")
    if not organisation or not project or "/" in project:
        raise ApplicationError(f"{value!r} is not ORG/PROJECT (for example acme/support-bot).")
    found = Project.objects.select_related("organisation").filter(
        organisation__slug=organisation, slug=project
    ).first()
    if found is None:
        raise ApplicationError(f"No project {value} was found.")
    return found


def _create(args: argparse.Namespace) -> int:
    from django.utils import timezone

    from anvil_forge.accounts.permissions import SystemActor
    from anvil_forge.distribution.services import token_create
    from anvil_forge.distribution.tokens import MAX_EXPIRY_DAYS, expiry_after
    from anvil_forge.prompts.models import Environment

    project = _project(args.project)
    environment = Environment.objects.filter(project=project, slug=args.environment).first()
    if environment is None:
        names = ", ".join(Environment.objects.filter(project=project).values_list("slug", flat=True))
        raise ApplicationError(f"{project} has no environment {args.environment!r} (it has: {names}).")
    expires_at = None
    if args.expires_in_days is not None:
        try:
            expires_at = expiry_after(args.expires_in_days, now=timezone.now())
        except ValueError:
            raise ApplicationError(
                f"--expires-in-days must be a whole number of days from 1 to {MAX_EXPIRY_DAYS}."
            ) from None
    token, raw = token_create(
        actor=SystemActor("anvil-forge token create"),
        project=project,
        environment=environment,
        kind=args.kind,
        name=args.name,
        expires_at=expires_at,
    )
    print(raw)
    print(
        f"# {token.kind} token {token.prefix}… '{token.name}' for {project}/{environment.slug}"
        + (f", expires {token.expires_at:%Y-%m-%d %H:%M} UTC" if token.expires_at else "")
        + ". It is shown only now: store it in a secret store.",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace) -> int:
    from django.utils import timezone

    from anvil_forge.distribution.models import AccessToken

    tokens = AccessToken.objects.select_related("project__organisation", "environment").order_by("-created_at")
    if args.project:
        tokens = tokens.filter(project=_project(args.project))
    now = timezone.now()
    print(f"{'PREFIX':<18} {'KIND':<5} {'PROJECT/ENVIRONMENT':<40} {'STATUS':<8} {'LAST USED':<17} NAME")
    for token in tokens:
        if token.revoked_at:
            status = "revoked"
        elif token.expires_at and token.expires_at <= now:
            status = "expired"
        else:
            status = "active"
        last_used = f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never"
        where = f"{token.project}/{token.environment.slug}"
        print(f"{token.prefix:<18} {token.kind:<5} {where:<40} {status:<8} {last_used:<17} {token.name}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from anvil_forge.accounts.permissions import SystemActor
    from anvil_forge.distribution.models import AccessToken
    from anvil_forge.distribution.services import token_revoke
    from anvil_forge.distribution.tokens import PREFIX_RANDOM_CHARS, token_hash

    given = args.prefix.strip().rstrip("…")
    if not given.startswith(("anvil_live_", "anvil_peer_")):
        raise ApplicationError(f"{given!r} is not a token prefix (it starts with anvil_live_ or anvil_peer_).")
    exact = AccessToken.objects.filter(token_hash=token_hash(given)).first()
    if exact is not None:
        matches = [exact]
    else:
        # The stored prefix is the kind and six characters; a shorter or longer start of the token is fine.
        matches = list(
            AccessToken.objects.select_related("project__organisation").filter(
                prefix__startswith=given[: len("anvil_live_") + PREFIX_RANDOM_CHARS], revoked_at__isnull=True
            )
        )
    if not matches:
        raise ApplicationError(f"No active token starts with {given}.")
    if len(matches) > 1:
        listed = ", ".join(f"{t.prefix} ({t.name}, {t.project})" for t in matches)
        raise ApplicationError(f"{len(matches)} active tokens start with {given}: {listed}. Give the whole token.")
    token = token_revoke(actor=SystemActor("anvil-forge token revoke"), token=matches[0])
    print(f"revoked {token.prefix}… '{token.name}' ({token.project}/{token.environment.slug})")
    return 0
