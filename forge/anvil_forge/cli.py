"""The ``anvil-forge`` command: serve the FORGE, seed demo data, manage users, tokens and releases.

Each subcommand is a small function; domain work goes through the services, never around them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from anvil_client._console import parse_arguments, quiet_closed_pipes
from anvil_forge.api.cli import add_apikey_arguments, run_apikey
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.cli import add_token_arguments, run_token
from anvil_forge.peering.cli import add_peer_arguments, run_peer
from anvil_forge.prompts.cli import add_export_arguments, add_import_arguments, run_export, run_import
from anvil_forge.prompts.rollback_cli import add_rollback_arguments, run_rollback

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


def _setup_django() -> None:
    import django

    django.setup()


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _setup_django()  # fail fast, with the settings error, before binding the port
    from anvil_forge.accounts.services import setup_link_announcement

    announcement = setup_link_announcement(f"http://{args.host}:{args.port}")
    if announcement:
        print(announcement, flush=True)
    uvicorn.run(
        "anvil_forge.asgi:application",
        host=args.host,
        port=args.port,
        proxy_headers=True,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
        timeout_graceful_shutdown=3,  # open streams never end by themselves
        log_level=os.environ.get("ANVIL_LOG_LEVEL", "info").lower(),
        access_log=False,
    )
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)


def run_manage(args: argparse.Namespace) -> int:
    from django.core.management import execute_from_command_line

    execute_from_command_line(["anvil-forge manage", *args.arguments])
    return 0


def add_manage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("arguments", nargs=argparse.REMAINDER)


def run_demo(args: argparse.Namespace) -> int:
    _setup_django()
    from django.conf import settings

    from anvil_forge.prompts import demo

    result = demo.demo_seed(password=args.password)
    if result.created:
        print("Created: " + "; ".join(result.created) + ".")
    else:
        print("The demo data is already in place; nothing was changed.")
    print(
        f"\nOrganisation {demo.ORGANISATION}, project {demo.PROJECT} (environments production and staging), "
        f"prompt set {demo.PROMPT_SET}.\nSign in at {settings.ANVIL_PUBLIC_URL}/ as one of:"
    )
    roles = {
        "owner": "everything",
        "admin": "everything, tokens, members",
        "editor": "writes prompts, submits, publishes",
        "reviewer": "approves or requests changes",
        "viewer": "reads",
    }
    for username, password in result.users.items():
        shown = password if password is not None else "(unchanged)"
        print(f"  {username:<9} {shown:<14}  {roles[username]}")
    print(
        "\nNext: sign in as editor and publish version 2 of core to production, or from here:\n"
        f"  anvil-forge publish {demo.ORGANISATION}/{demo.PROJECT}/{demo.PROMPT_SET} --version 2 "
        "--environment production --as editor"
    )
    return 0


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password", default="anvil-demo", help="password of the demo users (default: anvil-demo)")


def run_createuser(args: argparse.Namespace) -> int:
    _setup_django()
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from anvil_forge.accounts.models import Organisation, Role
    from anvil_forge.accounts.permissions import SystemActor
    from anvil_forge.accounts.services import membership_add, organisation_create, user_create
    from anvil_forge.core.exceptions import ApplicationError, NotFound

    if bool(args.org) != bool(args.role):
        raise ApplicationError("give --org and --role together (for example --org acme --role editor)")
    system = SystemActor("anvil-forge createuser")
    with transaction.atomic():
        user = get_user_model().objects.filter(username=args.username).first()
        if user is not None and (args.password is not None or not args.org):
            raise ApplicationError(f"a user named {args.username} already exists")
        if user is None:
            password = args.password if args.password is not None else _ask_password(args.username)
            user = user_create(actor=system, username=args.username, password=password, email=args.email)
            print(f"Created user {user.get_username()}.")
        if args.org:
            organisation = Organisation.objects.filter(slug=args.org).first()
            if organisation is None:
                if args.role != Role.OWNER:
                    raise NotFound(
                        f"no organisation {args.org}; create it by making its first owner: "
                        f"--org {args.org} --role owner"
                    )
                organisation = organisation_create(actor=system, slug=args.org, name=args.org)
                print(f"Created organisation {organisation.slug}.")
            membership_add(actor=system, organisation=organisation, user=user, role=args.role)
            print(f"{user.get_username()} is now {args.role} of {organisation.slug}.")
    return 0


def _ask_password(username: str) -> str:
    import getpass

    from anvil_forge.core.exceptions import ApplicationError

    if not sys.stdin.isatty():
        raise ApplicationError("no --password given and no terminal to ask for one")
    first = getpass.getpass(f"Password for {username}: ")
    if first != getpass.getpass("Again: "):
        raise ApplicationError("the two passwords differ; nothing was created")
    return first


def add_createuser_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("username")
    parser.add_argument("--password", help="the password (asked for when omitted and run in a terminal)")
    parser.add_argument("--email", default="")
    parser.add_argument("--org", help="also make the user a member of this organisation (slug)")
    parser.add_argument("--role", choices=["owner", "admin", "editor", "reviewer", "viewer"])


def run_publish(args: argparse.Namespace) -> int:
    _setup_django()
    from django.contrib.auth import get_user_model

    from anvil_forge.core.exceptions import ApplicationError, NotFound
    from anvil_forge.prompts import selectors
    from anvil_forge.prompts.services import version_publish

    parts = args.target.split("/")
    if len(parts) != 3 or not all(parts):
        raise ApplicationError(f"{args.target!r} is not ORG/PROJECT/SET (for example acme/support-bot/core)")
    actor = get_user_model().objects.filter(username=args.as_user, is_active=True).first()
    if actor is None:
        raise NotFound(f"no active user named {args.as_user}")
    project = selectors.project_get(actor=actor, organisation_slug=parts[0], project_slug=parts[1])
    prompt_set = selectors.prompt_set_get(actor=actor, project=project, slug=parts[2])
    version = selectors.version_get(actor=actor, prompt_set=prompt_set, number=args.version)
    environment = selectors.environment_get(actor=actor, project=project, slug=args.environment)
    if args.at is not None:
        from anvil_forge.distribution.scheduling import release_schedule

        scheduled = release_schedule(actor=actor, version=version, environment=environment, at=_utc_time(args.at))
        print(
            f"Scheduled {project}/{prompt_set.slug} version {version.number} for {environment.slug} at "
            f"{scheduled.at:%Y-%m-%d %H:%M:%S} UTC (scheduled release {scheduled.pk}); a running FORGE publishes it."
        )
        return 0
    release = version_publish(actor=actor, version=version, environment=environment)
    print(
        f"Published {project}/{prompt_set.slug} version {version.number} to {environment.slug} "
        f"(release {release.pk}, digest {version.digest})."
    )
    return 0


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ORG/PROJECT/SET")
    parser.add_argument("--version", type=int, required=True, help="the version number to publish")
    parser.add_argument("--environment", required=True, help="the environment slug (production, staging...)")
    parser.add_argument("--as", dest="as_user", required=True, metavar="USERNAME", help="who publishes (audited)")
    parser.add_argument("--at", metavar="ISO8601", help="publish at this time instead of now (no offset given: UTC)")


def _utc_time(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ApplicationError(f"--at {text!r} is not an ISO 8601 time (for example 2027-03-01T09:00Z)") from None
    return when.replace(tzinfo=datetime.UTC) if when.tzinfo is None else when


# name -> (handler, arguments, help). Add a subcommand here.
COMMANDS: dict[str, tuple[Handler, Arguments, str]] = {
    "serve": (run_serve, add_serve_arguments, "serve the FORGE over ASGI (uvicorn)"),
    "manage": (run_manage, add_manage_arguments, "run one of Django's management commands (migrate, shell...)"),
    "demo": (run_demo, add_demo_arguments, "seed the demo organisation, project, prompts and users (idempotent)"),
    "createuser": (run_createuser, add_createuser_arguments, "create a user, optionally a member of an organisation"),
    "publish": (run_publish, add_publish_arguments, "publish a prompt set version to an environment"),
    "rollback": (run_rollback, add_rollback_arguments, "roll an environment back to a version live there before"),
    "token": (run_token, add_token_arguments, "create, list or revoke ACCESS_TOKENs (LIVE instances, peer FORGEs)"),
    "apikey": (run_apikey, add_apikey_arguments, "create, list or revoke personal API keys (the management API)"),
    "peer": (run_peer, add_peer_arguments, "add, list, check or remove peer FORGEs (the Forges menu)"),
    "import": (run_import, add_import_arguments, "import prompt files, a .zip, a bundle or Langfuse JSON into a set"),
    "export": (run_export, add_export_arguments, "export a set (or one of its versions) as prompt files"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anvil-forge", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, add_arguments, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


# Commands that run before the database is set up (`manage migrate` is what sets it up).
WITHOUT_DATABASE = frozenset({"manage"})
# Commands that answer requests: SECRET_KEY and ALLOWED_HOSTS come from the environment, never a console default.
SERVERS = frozenset({"serve"})
CONSOLE_VARIABLE = "ANVIL_CONSOLE_COMMAND"  # read by settings.py


def main(argv: Sequence[str] | None = None) -> int:
    with quiet_closed_pipes():
        args = parse_arguments(build_parser(), argv)
        from django.core.exceptions import ImproperlyConfigured

        try:
            _prepare(args.command)
            return args.handler(args)
        except ImproperlyConfigured as exc:
            print(f"anvil-forge: configuration error: {exc}", file=sys.stderr)
            return 2
        except ApplicationError as exc:
            print(f"anvil-forge: {exc.message}", file=sys.stderr)
            return 1


def _prepare(command: str) -> None:
    """Read the settings and check the database before a command runs, so that what is missing is said in one line.

    Console commands run where `make run` set the FORGE up without DEBUG or SECRET_KEY (settings.py uses the key
    generated there). A FORGE that is not set up is said to be so, and nothing is created on the way (no ./var/).
    """
    from django.conf import settings

    if not settings.configured:  # not when called in-process, with the settings read already (tests)
        if command not in WITHOUT_DATABASE:
            _require_database_file()
        if command in SERVERS:
            os.environ.pop(CONSOLE_VARIABLE, None)
        else:
            os.environ[CONSOLE_VARIABLE] = "1"
        if command in WITHOUT_DATABASE:
            return  # Django's own commands read the settings themselves
        _setup_django()
    if command not in WITHOUT_DATABASE | SERVERS:
        _require_migrated()


def _require_database_file() -> None:
    path = _sqlite_path()
    if path is not None and not path.exists():
        raise ApplicationError(_not_set_up(f"there is no database at {path}"))


def _sqlite_path() -> Path | None:
    """The SQLite file the settings will open (None for PostgreSQL), found as settings.py does, creating nothing."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        return Path(os.environ.get("ANVIL_DATA_DIR") or Path.cwd() / "var").resolve() / "forge.sqlite3"
    if url.startswith("sqlite:"):
        import dj_database_url

        name = str(dj_database_url.parse(url).get("NAME") or "")
        return Path(name).resolve() if name and name != ":memory:" else None
    return None


def _require_migrated() -> None:
    from django.db import DatabaseError, connection
    from django.db.migrations.executor import MigrationExecutor

    where = _database_name()
    try:
        executor = MigrationExecutor(connection)
        missing = executor.migration_plan(executor.loader.graph.leaf_nodes())
        applied = len(executor.loader.applied_migrations)
    except DatabaseError as exc:
        raise ApplicationError(f"cannot read the database {where}: {exc}") from exc
    if missing and not applied:
        raise ApplicationError(_not_set_up(f"the database {where} is empty (never migrated)"))
    if missing:
        raise ApplicationError(
            f"The database {where} is not set up for this version of Anvil: {len(missing)} migrations are not "
            "applied. Run `anvil-forge manage migrate` (after an upgrade, before starting the FORGE)."
        )


def _database_name() -> str:
    from django.db import connection

    database = connection.settings_dict
    if database["ENGINE"].endswith("sqlite3"):
        return str(database["NAME"])
    return f"{database['NAME']} on {database.get('HOST') or 'localhost'}:{database.get('PORT') or 5432}"


def _not_set_up(reason: str) -> str:
    return (
        f"The FORGE is not set up here: {reason}. `make run` sets one up in the repository's var/: run the command "
        "in that directory, or point at a FORGE's data with ANVIL_DATA_DIR=/path/to/var or DATABASE_URL "
        "(sqlite:////path/to/forge.sqlite3 or postgresql://user@host:5432/db). A new FORGE starts with "
        "`anvil-forge manage migrate`."
    )


if __name__ == "__main__":
    sys.exit(main())
