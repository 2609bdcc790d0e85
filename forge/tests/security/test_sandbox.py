"""Sandbox escapes in templates at save, preview and render time, in the FORGE and in the LIVE client.

A template may be saved (it is only text), but whenever it is rendered (the editor's preview, the LIVE
client's ``prompt()``) the sandbox refuses to reach Python internals, and nothing of them leaks out.
"""

from __future__ import annotations

import contextlib

import pytest
from django.test import Client

from anvil_client import AnvilError
from anvil_client import Client as LiveClient
from anvil_client.bundle import build_bundle
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts import services
from anvil_forge.prompts.analysis import prompt_preview
from anvil_forge.prompts.models import Prompt
from forge.tests.security.test_access_matrix import _fill

pytestmark = pytest.mark.django_db

ESCAPES = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ name.__class__.__base__.__subclasses__() }}",
    "{{ (1).__class__.__subclasses__() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c.__name__ }}{% endfor %}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__ }}",
    "{{ name|attr('__class__') }}",
    "{{ '{0.__class__.__mro__}'.format(name) }}",
    "{{ '{x.__class__}'.format_map({'x': name}) }}",
    "{{ items.append(1) }}{{ items }}",
    "{{ options.update({'admin': true}) }}{{ options }}",
    "{{ options.pop('k') }}",
]
# What must never appear in a rendered result or an error: the representation of a Python internal.
LEAKS = ("<class", "<module", "uid=", "<built-in", "<function", "<bound method", "<attribute", "'os'")
PARAMETERS = [
    {"name": "name", "type": "string", "default": "Ada"},
    {"name": "items", "type": "list", "default": ["a"]},
    {"name": "options", "type": "object", "default": {"k": "v"}},
]


def _leaked(text: str) -> list[str]:
    return [marker for marker in LEAKS if marker in text]


@pytest.mark.parametrize("template", ESCAPES)
def test_preview_refuses_sandbox_escapes_and_leaks_nothing(template):
    try:
        rendered = prompt_preview(template, PARAMETERS, {})
    except ApplicationError as exc:
        assert not _leaked(exc.message), exc.message
        return
    assert not _leaked(rendered), rendered
    assert rendered in ("", "['a']", "{'k': 'v'}", "v"), f"a harmless render only, got {rendered!r}"


@pytest.mark.parametrize("template", ESCAPES)
def test_live_client_refuses_sandbox_escapes_at_render_and_keeps_serving(tmp_path, template):
    bundle = build_bundle(
        forge="http://127.0.0.1:1", organisation="acme", project="p", environment="production", set_slug="core",
        version=1, approval="approved", created_at="2026-11-25T10:00:00Z",
        prompts=[{"id": "evil", "template": template, "parameters": PARAMETERS},
                 {"id": "good", "template": "Hello {{ name }}", "parameters": PARAMETERS}],
    )
    from anvil_client._cache import write_disk_bundle
    from anvil_client.bundle import load_bundle

    write_disk_bundle(tmp_path, load_bundle(bundle))
    client = LiveClient(cache_dir=tmp_path, sync=False)
    try:
        try:
            rendered = client.prompt("evil", {"items": ["a"], "options": {"k": "v"}})
        except AnvilError as exc:
            assert not _leaked(str(exc)), str(exc)
        else:
            assert not _leaked(rendered), rendered
        assert client.prompt("good") == "Hello Ada"
        assert client.prompt("evil", fallback="safe") in ("safe", "", "['a']", "{'k': 'v'}", "v")
    finally:
        client.close()


def test_escapes_saved_in_the_editor_are_refused_by_the_preview_on_the_page(world):
    client = Client()
    client.force_login(world.team.editor)
    page = _fill("/o/{org}/p/{project}/s/core/prompts/welcome.message/", world.values)
    prompt = Prompt.objects.get(prompt_set__slug="core", prompt_set__project__slug=world.values["project"],
                                key="welcome.message")
    for template in ESCAPES[:6]:
        with contextlib.suppress(ApplicationError):  # saving is allowed or refused; either way nothing runs
            prompt = services.prompt_update(
                actor=world.team.editor, prompt=prompt, base_revision=prompt.revision, template=template,
                parameters=PARAMETERS,
            )
        response = client.post(page + "preview/", {
            "template": template, "param-0-name": "name", "param-0-type": "string", "sample-name": "Ada",
        }, HTTP_HX_REQUEST="true")
        assert response.status_code < 500
        assert not _leaked(response.content.decode()), template
        response = client.get(page)
        assert response.status_code == 200
