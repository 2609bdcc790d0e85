"""``anvil-forge peer add|list|remove|check``: peer FORGEs from the server's console.

The console acts as a ``SystemActor`` and every change is audited as one made in the interface. A peer
belongs to an organisation: ``--organisation`` names it, and may be left out when the FORGE has only one.
The token is stored encrypted and never printed again.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from anvil_forge.core.exceptions import ApplicationError

if TYPE_CHECKING:
    from anvil_forge.accounts.models import Organisation


def add_peer_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="peer_action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a peer FORGE and test the connection")
    add.add_argument("name", metavar="NAME", help="a short name, e.g. eu-forge")
    add.add_argument("url", metavar="URL", help="the peer FORGE's base URL, e.g. https://forge.eu.example.com")
    token = add.add_mutually_exclusive_group(required=True)
    token.add_argument("--token", help="the peer token the other FORGE printed (anvil_peer_…)")
    token.add_argument("--token-env", metavar="VAR", help="read the token from this environment variable instead")
    add.add_argument("--organisation", "--org", dest="organisation", help="the organisation the peer belongs to")
    listing = actions.add_parser("list", help="list peers and their health (never the token)")
    listing.add_argument("--organisation", "--org", dest="organisation")
    remove = actions.add_parser("remove", help="remove a peer and its connected projects")
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("--organisation", "--org", dest="organisation")
    check = actions.add_parser("check", help="test the connection to a peer and print its health")
    check.add_argument("name", metavar="NAME")
    check.add_argument("--organisation", "--org", dest="organisation")


def run_peer(args: argparse.Namespace) -> int:
    import django

    django.setup()
    from anvil_forge.accounts.permissions import SystemActor

    actor = SystemActor(label=f"anvil-forge peer {args.peer_action}")
    return {"add": _add, "list": _list, "remove": _remove, "check": _check}[args.peer_action](args, actor)


def _organisation(slug: str | None) -> Organisation:
    from anvil_forge.accounts.models import Organisation

    if slug:
        found = Organisation.objects.filter(slug=slug).first()
        if found is None:
            raise ApplicationError(f"No organisation {slug} was found.")
        return found
    organisations = list(Organisation.objects.all()[:2])
    if len(organisations) == 1:
        return organisations[0]
    if not organisations:
        raise ApplicationError("This FORGE has no organisation yet; create one first (or run `anvil-forge demo`).")
    raise ApplicationError("This FORGE has several organisations: say which with --organisation ORG.")


def _add(args: argparse.Namespace, actor: object) -> int:
    from anvil_forge.peering.models import PeerSource
    from anvil_forge.peering.services import peer_check, peer_create

    token = args.token if args.token is not None else os.environ.get(args.token_env, "")
    if args.token_env and not token:
        raise ApplicationError(f"The environment variable {args.token_env} is not set.")
    organisation = _organisation(args.organisation)
    peer = peer_create(
        actor=actor, organisation=organisation, name=args.name, url=args.url, token=token, source=PeerSource.CLI
    )
    peer = peer_check(actor=actor, peer=peer, organisation=organisation)
    print(f"Added peer {peer.name} ({peer.url}) to {organisation.slug}; token {peer.token_prefix}… stored encrypted.")
    print(f"Connection test: {_health_words(peer)}")
    return 0


def _list(args: argparse.Namespace, actor: object) -> int:
    from anvil_forge.peering.models import Peer
    from anvil_forge.peering.selectors import peers_for

    if args.organisation:
        peers = list(peers_for(actor=actor, organisation=_organisation(args.organisation)))
    else:
        from anvil_forge.peering.selectors import settings_peers_sync

        names = settings_peers_sync()
        peers = [p for p in Peer.objects.select_related("organisation") if p.organisation_id or p.name in names]
    if not peers:
        print("No peers.")
        return 0
    print(f"{'ORGANISATION':<16} {'NAME':<20} {'HEALTH':<14} {'LAST CHECKED':<21} {'TOKEN':<20} URL")
    for peer in peers:
        where = peer.organisation.slug if peer.organisation else "(ANVIL_PEERS)"
        checked = peer.last_checked_at.strftime("%Y-%m-%d %H:%M:%S") if peer.last_checked_at else "never"
        token = f"{peer.token_prefix}…" if peer.token_prefix else f"${peer.token_env}"
        print(f"{where:<16} {peer.name:<20} {peer.health:<14} {checked:<21} {token:<20} {peer.url}")
    return 0


def _remove(args: argparse.Namespace, actor: object) -> int:
    from anvil_forge.peering.selectors import peer_get
    from anvil_forge.peering.services import peer_remove

    organisation = _organisation(args.organisation)
    peer = peer_get(actor=actor, organisation=organisation, name=args.name)
    peer_remove(actor=actor, peer=peer)
    print(f"Removed peer {peer.name} from {organisation.slug}.")
    return 0


def _check(args: argparse.Namespace, actor: object) -> int:
    from anvil_forge.peering.selectors import peer_get
    from anvil_forge.peering.services import peer_check

    organisation = _organisation(args.organisation)
    peer = peer_check(actor=actor, peer=peer_get(actor=actor, organisation=organisation, name=args.name),
                      organisation=organisation)
    print(f"{peer.name}: {_health_words(peer)}")
    return 0 if peer.health == "ok" else 1


def _health_words(peer: object) -> str:
    health = peer.health  # type: ignore[attr-defined]
    if health == "ok":
        return "reachable, token accepted."
    error = peer.last_error  # type: ignore[attr-defined]
    print(f"warning: {error}", file=sys.stderr)
    words = {"unreachable": "unreachable", "token_refused": "token refused", "error": "answers wrongly"}
    return words.get(health, health) + f" ({error})"
