"""Signals and the render guard end to end (issue 16): a real FORGE process, a LIVE client in this process.

A new version of ``greeting.welcome`` needs a variable the host does not pass. The client serves the previous
version's text instead of failing, reports it with its check-ins (``signals``), and the release page of the new
version warns that instances served the previous text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import anvil_client
from tests.forge_process import ForgeProcess
from tests.integration.test_client_live import FAST, V1, eventually, greeting, live_token

pytestmark = pytest.mark.integration

NEEDS_ORDER_ID = """
from django.contrib.auth import get_user_model
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSet
editor = get_user_model().objects.get(username="editor")
reviewer = get_user_model().objects.get(username="reviewer")
core = PromptSet.objects.get(slug="core", project__slug="support-bot")
if core.status == "LOCKED":
    services.prompt_set_reopen(actor=editor, prompt_set=core)
prompt = Prompt.objects.get(prompt_set=core, key="greeting.welcome")
services.prompt_update(actor=editor, prompt=prompt, base_revision=prompt.revision,
                       template="Hello {{ customer_name }}, your order {{ order_id }} is on its way.")
version = services.prompt_set_submit(actor=editor, prompt_set=core)
version = services.version_approve(actor=reviewer, version=version)
print(version.number)
"""

RELEASE_PAGE = """
import json
from django.contrib.auth import get_user_model
from django.test import Client
from anvil_forge.distribution.models import Release
from anvil_forge.health.selectors import release_health
release = Release.objects.filter(prompt_set__slug="core", environment__slug="production").order_by("-id").first()
client = Client(HTTP_HOST="127.0.0.1")
client.force_login(get_user_model().objects.get(username="editor"))
page = client.get(f"/o/acme/p/support-bot/s/core/releases/{release.pk}/").content.decode()
health = release_health(release).canary
print(json.dumps({"version": release.version.number, "page": page, "renders": health.renders,
                  "guarded": health.guarded, "errors": health.errors}))
"""


def test_a_new_version_that_needs_a_variable_the_host_does_not_pass_is_guarded_and_shown_on_the_release_page(
    make_forge: Callable[..., ForgeProcess], tmp_path: Path
) -> None:
    forge = make_forge(env=FAST)
    client = anvil_client.Client(
        forge_url=forge.url,
        token=live_token(forge),
        cache_dir=tmp_path / "cache",
        heartbeat_interval=1,
        backoff_initial=0.1,
        backoff_max=0.5,
        state_check_interval=0.2,
        poll_interval=1,
        checkin_interval=1,
    )
    try:
        assert greeting(client) == V1
        number = int(forge.cli("manage", "shell", "-c", NEEDS_ORDER_ID).strip().splitlines()[-1])
        forge.cli("publish", "acme/support-bot/core", "--version", str(number), "--environment", "production",
                  "--as", "editor")
        assert eventually(lambda: client.status()["versions"] == {"core": number}, 15), client.status()
        for _ in range(5):
            assert greeting(client) == V1  # the render guard: version 1's text, no error
        # Callers that pass what the new version needs get its text.
        assert client.prompt("greeting.welcome", customer_name="Ada", order_id="7") == (
            "Hello Ada, your order 7 is on its way."
        )

        def shown() -> dict[str, Any] | None:
            out = json.loads(forge.cli("manage", "shell", "-c", RELEASE_PAGE).strip().splitlines()[-1])
            return out if out["guarded"] >= 5 else None

        seen = eventually(shown, 20)
        assert seen, "the FORGE never recorded the guarded renders"
        assert seen["version"] == number
        assert seen["renders"] >= 5 and seen["errors"] >= 5
        assert "1 instance served the previous text for greeting.welcome: missing variable order_id" in seen["page"]
    finally:
        client.close()
