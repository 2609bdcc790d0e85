"""A host application in its own process: serves one prompt in a loop and reports every change on stdout.

Run as ``python -m tests.reliability.host_app OPTIONS_JSON``. The LIVE client is configured from the
environment (``ANVIL_FORGE_URL``, ``ANVIL_TOKEN``, ``ANVIL_CACHE_DIR``, ``ANVIL_BOOTSTRAP``) plus the
``client`` options in OPTIONS_JSON (fast timings). Other options:

    prompt, variables    what to render (default: the demo's ``greeting.welcome`` for Ada)
    clients              how many Client objects to run in this process (burst tests; default 1)
    interval             seconds between two renders (default 0.02)
    max_seconds          the process ends by itself after this long (default 60): tests stay bounded
    clock_skew           seconds added to this process's wall clock (time.time, datetime.now)
    max_file_bytes       RLIMIT_FSIZE for this process: writes beyond it fail (a full disk)

Each line on stdout is JSON: ``{"event": "started"|"render"|"error"|"status"|"stopped", "t": monotonic, ...}``.
A render line is printed when the text changes; an error line for every exception ``prompt()`` raised (the
tests assert there are none: the host application must keep serving).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def _skew_clock(seconds: float) -> None:
    """Make this process's wall clock wrong by ``seconds``, as on a host whose clock drifted."""
    import datetime as datetime_module

    real_time = time.time
    time.time = lambda: real_time() + seconds  # type: ignore[assignment]

    class SkewedDatetime(datetime_module.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> Any:  # type: ignore[override]
            return super().now(tz) + datetime_module.timedelta(seconds=seconds)

        @classmethod
        def utcnow(cls) -> Any:  # type: ignore[override]
            return super().now(datetime_module.UTC).replace(tzinfo=None) + datetime_module.timedelta(seconds=seconds)

    datetime_module.datetime = SkewedDatetime  # type: ignore[misc]


def _limit_file_size(limit: int) -> None:
    import resource
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes beyond the limit fail with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, "t": time.monotonic(), **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    options: dict[str, Any] = json.loads(argv[1]) if len(argv) > 1 else {}
    if options.get("clock_skew"):
        _skew_clock(float(options["clock_skew"]))
    if options.get("max_file_bytes") is not None:
        _limit_file_size(int(options["max_file_bytes"]))

    import logging

    import anvil_client

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    prompt_id = options.get("prompt", "greeting.welcome")
    variables = options.get("variables", {"customer_name": "Ada"})
    interval = float(options.get("interval", 0.02))
    deadline = time.monotonic() + float(options.get("max_seconds", 60))
    count = int(options.get("clients", 1))
    base = anvil_client.Config.from_env(**options.get("client", {}))
    clients = []
    for index in range(count):
        cache_dir = base.cache_dir if count == 1 else base.cache_dir / f"c{index}"  # type: ignore[operator]
        clients.append(anvil_client.Client(base.replace(cache_dir=cache_dir, instance_name=f"host-{index}")))

    started = time.monotonic()
    for client in clients:
        client.start()
    emit("started", seconds=time.monotonic() - started, status=_status(clients[0]))

    last: list[str | None] = [None] * count
    last_connected: list[bool | None] = [None] * count
    stop_file = options.get("stop_file")
    while time.monotonic() < deadline and not (stop_file and os.path.exists(stop_file)):
        for index, client in enumerate(clients):
            try:
                text = client.prompt(prompt_id, variables)
            except Exception as exc:  # the promise under test: this never happens once a bundle is loaded
                emit("error", client=index, error=f"{type(exc).__name__}: {exc}")
                text = None
            if text != last[index]:
                last[index] = text
                emit("render", client=index, text=text, status=_status(client) if count == 1 else None)
            connected = client._connected
            if connected != last_connected[index]:
                last_connected[index] = connected
                emit("connected" if connected else "disconnected", client=index)
        time.sleep(interval)
    emit("stopped", status=_status(clients[0]))
    for client in clients:
        client.close()
    return 0


def _status(client: Any) -> dict[str, Any]:
    status = client.status()
    return {key: status[key] for key in ("mode", "source", "versions", "connected", "last_error")}


if __name__ == "__main__":
    sys.exit(main(sys.argv))
