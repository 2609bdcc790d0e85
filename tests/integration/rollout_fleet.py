"""A fleet of LIVE clients in one process, for the rollout tests and bench (run as a script).

The rollout tests run 20 of these processes with ``--count 1`` each (one real client process per instance); the
bench runs one with ``--count 20``. Runs ``--count`` :class:`anvil_client.Client` objects, each with its own
cache directory (so its own instance id), renders ``greeting.welcome`` on each every ``--every`` seconds as a
host would, and writes what each served to ``--status`` (JSON, replaced atomically): ``{"instances": {instance
id: {"text": ..., "error": ..., "first_error_at": epoch seconds or null}}, "at": epoch seconds}``, where
``first_error_at`` is the first error after the instance's first text (not the start-up's "serving nothing
yet" of a slow FORGE). Ends when ``--status`` + ".stop" exists or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forge", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--status", required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--first", type=int, default=0, help="the number of the first client (its instance name)")
    parser.add_argument("--every", type=float, default=0.05)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--checkin-interval", type=float, default=60.0)
    parser.add_argument("--no-guard", action="store_true", help="render errors reach the host (no render guard)")
    parser.add_argument(
        "--outcomes-fail-on",
        default=None,
        help="report an outcome after each render (anvil_client.report): failed (parse_error) when the text "
        "served is this one, else ok",
    )
    args = parser.parse_args()

    if os.environ.get("ANVIL_FLEET_LOG"):  # what each client did, to debug a test: <status>.log
        import logging

        logging.basicConfig(
            filename=args.status + ".log", level=logging.INFO, format="%(created).3f %(name)s %(message)s"
        )
    import anvil_client
    from anvil_client._state import host_instance_id

    clients = []
    ids = []
    for n in range(args.count):
        cache = Path(args.dir) / f"client-{n:02d}"
        cache.mkdir(parents=True, exist_ok=True)
        client = anvil_client.Client(
            forge_url=args.forge,
            token=args.token,
            cache_dir=cache,
            instance_name=f"fleet-{args.first + n:02d}",
            heartbeat_interval=1,
            backoff_initial=0.1,
            backoff_max=0.5,
            state_check_interval=0.2,
            poll_interval=1,
            checkin_interval=args.checkin_interval,
            render_guard=not args.no_guard,
        )
        clients.append(client)
    for n, client in enumerate(clients):
        ids.append(host_instance_id(Path(args.dir) / f"client-{n:02d}", socket.gethostname()))
    status_path = Path(args.status)
    stop_path = Path(args.status + ".stop")
    first_error: dict[str, float] = {}
    failing_since: dict[str, float] = {}
    served: set[str] = set()  # the instances that served a text once: their errors count from then on
    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline and not stop_path.exists():
            state = {}
            for instance_id, client in zip(ids, clients, strict=True):
                try:
                    text, error = client.prompt("greeting.welcome", customer_name="Ada"), None
                    failing_since.pop(instance_id, None)
                    served.add(instance_id)
                    if args.outcomes_fail_on is not None:  # what the host made of the model's answer
                        failed = text == args.outcomes_fail_on
                        client.report("greeting.welcome", not failed, kind="parse_error" if failed else "")
                except Exception as exc:  # what a host would see
                    text, error = None, f"{type(exc).__name__}: {exc}"
                    if instance_id in served:  # not the start-up's "serving nothing yet" (a slow FORGE)
                        first_error.setdefault(instance_id, time.time())
                        failing_since.setdefault(instance_id, time.time())
                state[instance_id] = {
                    "text": text,
                    "error": error,
                    "first_error_at": first_error.get(instance_id),
                    "failing_since": failing_since.get(instance_id),  # the start of the current run of errors
                }
            tmp = status_path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"instances": state, "at": time.time()}))
            os.replace(tmp, status_path)
            time.sleep(args.every)
    finally:
        for client in clients:
            client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
