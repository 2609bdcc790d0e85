"""``anvil-forge apikey create|list|revoke``: personal API keys from the server's console.

``create`` prints the key once, alone on stdout (``KEY=$(anvil-forge apikey create ada --name ci)`` captures it),
and what it is for on stderr. The console acts as a ``SystemActor``; key events are audited as made from it.
"""

from __future__ import annotations

import argparse
import sys


def add_apikey_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="apikey_action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a user's API key and print it once")
    create.add_argument("username", metavar="USERNAME", help="whose key: it acts with their role")
    create.add_argument("--name", required=True, help="what uses it, e.g. 'CI prompts push'")
    create.add_argument("--org", metavar="ORG", help="limit the key to this organisation (default: all of the user's)")
    create.add_argument("--read-only", action="store_true", help="refuse every change made with the key")
    create.add_argument("--expires-days", type=int, metavar="N", help="expire after N days (default: never)")
    listing = actions.add_parser("list", help="list API keys (never the secret)")
    listing.add_argument("username", metavar="USERNAME", nargs="?", help="only this user's keys")
    revoke = actions.add_parser("revoke", help="revoke an API key: it is refused from then on")
    revoke.add_argument("prefix", metavar="PREFIX", help="the key's prefix as `apikey list` shows it (or the key)")


def run_apikey(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from anvil_forge.accounts.permissions import SystemActor

    console = SystemActor(f"anvil-forge apikey {args.apikey_action}")
    if args.apikey_action == "create":
        return _create(args, console)
    if args.apikey_action == "list":
        return _list(args, console)
    return _revoke(args, console)


def _create(args: argparse.Namespace, console: object) -> int:
    from anvil_forge.accounts.models import Organisation
    from anvil_forge.api.keys import api_key_create, user_named
    from anvil_forge.core.exceptions import NotFound

    user = user_named(args.username)
    organisation = None
    if args.org:
        organisation = Organisation.objects.filter(slug=args.org).first()
        if organisation is None:
            raise NotFound(f"No organisation {args.org} was found.")
    made = api_key_create(
        actor=console, user=user, name=args.name, organisation=organisation, read_only=args.read_only,
        expires_in_days=args.expires_days,
    )
    print(made.raw, flush=True)
    scope = f"in {organisation.slug}" if organisation else "in every organisation of theirs"
    access = "read-only" if args.read_only else "read and write"
    until = f", until {made.key.expires_at:%Y-%m-%d}" if made.key.expires_at else ""
    print(
        f"API key {made.key.prefix}… ({made.key.name}) for {user.get_username()}, {access}, {scope}{until}. "
        "It is shown once: keep it now (for example as the CI secret ANVIL_API_KEY).",
        file=sys.stderr,
    )
    return 0


def _list(args: argparse.Namespace, console: object) -> int:
    from django.utils import timezone

    from anvil_forge.api.keys import api_keys_for, user_named

    keys = api_keys_for(actor=console)  # type: ignore[arg-type]
    if args.username:
        keys = keys.filter(user=user_named(args.username))
    now = timezone.now()
    rows = list(keys)
    if not rows:
        print("No API keys.")
    for key in rows:
        state = "revoked" if key.revoked_at else "expired" if key.expires_at and key.expires_at <= now else "active"
        used = f"{key.last_used_at:%Y-%m-%d %H:%M}" if key.last_used_at else "never used"
        print(
            f"{key.prefix}…  {key.user.get_username():<16} {key.name:<24} "
            f"{key.organisation.slug if key.organisation else '(all)':<16} "
            f"{'read-only' if key.read_only else 'read-write':<10} {state:<8} {used}"
        )
    return 0


def _revoke(args: argparse.Namespace, console: object) -> int:
    from anvil_forge.accounts.models import ApiKey
    from anvil_forge.api.keys import PREFIX_RANDOM_CHARS, api_key_revoke
    from anvil_forge.core.exceptions import ApplicationError, NotFound

    prefix = args.prefix.rstrip("…")[: len("anvil_key_") + PREFIX_RANDOM_CHARS]
    found = list(ApiKey.objects.filter(prefix=prefix, revoked_at__isnull=True)[:2])
    if not found:
        raise NotFound(f"No active API key with the prefix {prefix} was found.")
    if len(found) > 1:
        raise ApplicationError(f"Several active keys start with {prefix}; revoke it with the whole key.")
    key = api_key_revoke(actor=console, key=found[0])  # type: ignore[arg-type]
    print(f"Revoked {key.prefix}… ({key.name}) of {key.user.get_username()}.")
    return 0
