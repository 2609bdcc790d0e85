"""Token guessing against a real FORGE is slowed down and logged, and no token ever reaches a log.

A real FORGE process with its log at INFO, a real host application, a guesser, a revocation: then every
log (the FORGE's, the host application's, the ``anvil-forge`` command's output) is searched for the secret
part of every token used.
"""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request

import pytest

from tests.reliability.conftest import V1_GREETING, make_token

pytestmark = pytest.mark.integration

PREFIX = len("anvil_live_") + 6  # what lists and logs may show


def _status(url: str, token: str) -> tuple[int, str | None]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Retry-After")


def test_guessing_is_slowed_and_logged_with_prefixes_and_no_token_reaches_any_log(make_forge, host_app):
    forge = make_forge(env={"ANVIL_LOG_LEVEL": "INFO"})
    token = make_token(forge)
    app = host_app(forge_url=forge.url, token=token).start()
    app.wait_text(V1_GREETING)

    guesses = ["anvil_live_" + secrets.token_urlsafe(32) for _ in range(12)]
    answers = [_status(forge.url + "/api/v1/live/releases", guess) for guess in guesses]
    assert [status for status, _ in answers[:10]] == [401] * 10
    assert all(status == 429 and int(retry) >= 1 for status, retry in answers[10:]), answers[10:]
    assert _status(forge.url + "/api/v1/live/stream", guesses[0])[0] == 429, "the stream is limited too"

    listing = forge.cli("token", "list", "acme/support-bot")
    forge.cli("token", "revoke", token[:PREFIX])
    app.stop()
    forge.stop()

    secrets_used = [token, *guesses]
    forge_log, app_log = forge.log(), app.log()
    assert "refused token anvil_live_" in forge_log, "failed attempts are logged"
    for raw in secrets_used:
        secret_part = raw[PREFIX:]
        for name, text in (("FORGE log", forge_log), ("host application log", app_log), ("token list", listing)):
            assert secret_part not in text, f"a token's secret part is in the {name}"
    assert token[:PREFIX] in listing, "the readable prefix is what lists show"
