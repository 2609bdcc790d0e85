"""Runaway templates in the editor's preview: stopped quickly with a clear message, the worker free again.

The limits themselves (what counts, which constructs) are the client's and tested there
(``client/tests/test_limits.py``); here the FORGE's own preview path: the service and the page.
"""

from __future__ import annotations

import time

import pytest
from django.test import Client

from anvil_client import RenderLimitExceeded
from anvil_client.templates import compile_template
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.prompts.analysis import PREVIEW_LIMITS, prompt_preview
from forge.tests.security.test_access_matrix import _fill

pytestmark = pytest.mark.django_db

RUNAWAYS = [
    "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "{{ 'a' * 10**10 }}",
    "{{ 9 ** (9 ** 9) }}",
    "{% set a = 'xxxxxxxxxx' %}" + "{% set a = a ~ a %}" * 40 + "{{ a }}",
    "{{ '{:>9999999999}'.format('a') }}",
    "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
    "{% set big = 'x' * 10**7 %}{% for i in range(100000) %}{{ 'y' in big }}{% endfor %}",
]


@pytest.mark.parametrize("template", RUNAWAYS)
def test_preview_stops_a_runaway_template_with_a_clear_message(template):
    started = time.process_time()
    with pytest.raises(ApplicationError, match=r"The template was stopped: .*(steps|characters|bits|s to render)"):
        prompt_preview(template, [], {})
    assert time.process_time() - started < 3.0


def test_preview_limits_are_the_clients_with_a_shorter_time_limit():
    from anvil_client.templates import DEFAULT_LIMITS

    assert PREVIEW_LIMITS.max_steps == DEFAULT_LIMITS.max_steps
    assert PREVIEW_LIMITS.max_chars == DEFAULT_LIMITS.max_chars
    assert PREVIEW_LIMITS.max_seconds < DEFAULT_LIMITS.max_seconds
    # What the preview stops for steps or size, a LIVE instance stops too, whatever the machine.
    for template in RUNAWAYS[:-1]:
        with pytest.raises(RenderLimitExceeded):
            compile_template(template).render({})


def test_the_editor_preview_reports_a_runaway_and_answers_the_next_request(world):
    client = Client()
    client.force_login(world.team.editor)
    page = _fill("/o/{org}/p/{project}/s/core/prompts/welcome.message/", world.values)
    started = time.monotonic()
    response = client.post(page + "preview/", {"template": RUNAWAYS[0]}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "The template was stopped" in response.content.decode()
    assert "100,000 steps" in response.content.decode()
    assert time.monotonic() - started < 10.0
    response = client.post(page + "preview/", {
        "template": "Hi {{ name }}", "param-0-name": "name", "param-0-type": "string", "sample-name": "Ada",
    }, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "Hi Ada" in response.content.decode()
