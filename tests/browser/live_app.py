"""A tiny production application for the journey test: a LIVE client that prints its prompt when it changes.

    python live_app.py FORGE_URL TOKEN CACHE_DIR PROMPT_ID

Each line on stdout is JSON: {"at": unix time, "text": the rendered prompt, "versions": {...}}.
"""

from __future__ import annotations

import json
import sys
import time

from anvil_client import Client


def main() -> None:
    forge_url, token, cache_dir, prompt_id = sys.argv[1:5]
    client = Client(
        forge_url=forge_url, token=token, cache_dir=cache_dir, instance_name="journey-app", checkin_interval=1.0
    )
    client.start()
    last = None
    try:
        while True:
            text = client.prompt(prompt_id, customer_name="Ada", fallback="")
            if text != last:
                last = text
                line = {"at": time.time(), "text": text, "versions": client.status().get("versions", {})}
                print(json.dumps(line), flush=True)
            time.sleep(0.01)
    finally:
        client.close()


if __name__ == "__main__":
    main()
