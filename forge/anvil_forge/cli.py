"""The ``anvil-forge`` command: serve the FORGE, seed demo data, manage users, tokens and releases.

Each subcommand is a small function; domain work goes through the services, never around them.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anvil_forge.settings")

Handler = Callable[[argparse.Namespace], int]
Arguments = Callable[[argparse.ArgumentParser], None]


def _setup_django() -> None:
    import django

    django.setup()


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _setup_django()  # fail fast, with the settings error, before binding the port
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


# name -> (handler, arguments, help). Add a subcommand here.
COMMANDS: dict[str, tuple[Handler, Arguments, str]] = {
    "serve": (run_serve, add_serve_arguments, "serve the FORGE over ASGI (uvicorn)"),
    "manage": (run_manage, add_manage_arguments, "run one of Django's management commands (migrate, shell...)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="anvil-forge", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, add_arguments, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(handler=handler)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from django.core.exceptions import ImproperlyConfigured

    from anvil_forge.core.exceptions import ApplicationError

    try:
        return args.handler(args)
    except ImproperlyConfigured as exc:
        print(f"anvil-forge: configuration error: {exc}", file=sys.stderr)
        return 2
    except ApplicationError as exc:
        print(f"anvil-forge: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
