"""A command that ends right after a review still sends the notification mail: the mail thread is a daemon, so
the process waits for it at exit (bounded). Through a real SMTP server (aiosmtpd) that answers slowly and a real
``anvil-forge manage shell`` process."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.forge_process import _forge_cli as forge_cli
from tests.forge_process import base_env, new_database

SUBMIT = """
from django.contrib.auth import get_user_model
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, PromptSet
users = get_user_model().objects
users.filter(username="reviewer").update(email="reviewer@example.com")
editor = users.get(username="editor")
core = PromptSet.objects.get(slug="core", project__slug="support-bot")
services.prompt_set_reopen(actor=editor, prompt_set=core)
prompt = Prompt.objects.get(prompt_set=core, key="greeting.welcome")
services.prompt_update(actor=editor, prompt=prompt, base_revision=prompt.revision, template="Hi {{ customer_name }}")
services.prompt_set_submit(actor=editor, prompt_set=core, note="From the console")
"""


def test_a_command_that_submits_sends_the_reviewers_mail_before_it_exits(tmp_path):
    aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
    received = []

    class SlowHandler:
        async def handle_DATA(self, server, session, envelope):  # the hook name aiosmtpd calls
            await asyncio.sleep(1)  # longer than the command takes to end after its commit
            received.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = aiosmtpd_controller.Controller(SlowHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        env = {**base_env(tmp_path, new_database(tmp_path, seed_demo=True), "https://forge.example.com"),
               "EMAIL_URL": f"smtp://127.0.0.1:{port}"}
        forge_cli(env, "manage", "shell", "-c", SUBMIT)
    finally:
        controller.stop()
    reviewer = [content for rcpt, content in received if rcpt == ["reviewer@example.com"]]
    assert len(reviewer) == 1
    assert "From the console" in reviewer[0]
    assert "https://forge.example.com/o/acme/p/support-bot/s/core/review/" in reviewer[0]
