"""Test cases on prompts (``prompts.samples``): validation, running the checks, and the services around them."""

from __future__ import annotations

import json
import time

import pytest

from anvil_client.bundle import content_digest
from anvil_forge.audit.models import AuditEvent
from anvil_forge.core.exceptions import ApplicationError
from anvil_forge.distribution.bundles import bundle_cache, bundle_for
from anvil_forge.prompts import services
from anvil_forge.prompts.models import Prompt, SetStatus, VersionState
from anvil_forge.prompts.samples import (
    failing_samples,
    regex_search_many,
    results_for,
    run_tests,
    validate_tests,
)
from forge.tests import factories

PARAMS = [
    {"name": "name", "type": "string", "required": True},
    {"name": "count", "type": "number", "default": 1},
    {"name": "tags", "type": "list", "default": []},
]


def sample(name="ada", values=None, checks=None):
    return {"name": name, "values": {"name": "Ada"} if values is None else values, "checks": checks or []}


# Validation ------------------------------------------------------------------------------------------------


def test_valid_samples_are_normalised_with_every_check_kind():
    tests = [
        sample(checks=[
            {"kind": "contains", "value": "Ada"},
            {"kind": "not_contains", "value": "{{"},
            {"kind": "regex", "value": r"^Hello \w+"},
            {"kind": "max_chars", "value": 200},
            {"kind": "json", "value": True},
        ]),
        sample("numbers", {"name": "Bo", "count": 3, "tags": ["a"]}),
    ]

    out = validate_tests(key="welcome", tests=tests, parameters=PARAMS)

    assert out[0]["checks"][-1] == {"kind": "json"}
    assert out[1] == {"name": "numbers", "values": {"name": "Bo", "count": 3, "tags": ["a"]}, "checks": []}


@pytest.mark.parametrize(
    ("tests", "words"),
    [
        ([sample(name="")], "welcome, test case 1: give it a name"),
        ([sample(name="bad/name")], "welcome, test case 'bad/name': a name is at most"),
        ([sample(), sample()], "welcome, test case 'ada': two test cases have this name"),
        ([sample(values={"name": "A", "nope": 1})], "nope is not a parameter of the prompt"),
        ([sample(values={"name": 5})], "the value of name must be a string, not 5"),
        ([sample(values={"name": "A", "count": True})], "the value of count must be a number"),
        ([sample(values={})], "give a value for the required parameter name"),
        ([sample(checks=[{"kind": "shouts"}])], "check 1: unknown kind 'shouts'"),
        ([sample(checks=[{"kind": "contains", "value": ""}])], "check 1: contains needs the text"),
        ([sample(checks=[{"kind": "regex", "value": "(unclosed"}])], "check 1: the regular expression does not"),
        ([sample(checks=[{"kind": "regex", "value": "a" * 501}])], "longer than 500 characters"),
        ([sample(checks=[{"kind": "max_chars", "value": 0}])], "max_chars needs a whole number from 1"),
        ([sample(checks=[{"kind": "max_chars", "value": "10"}])], "max_chars needs a whole number"),
        ([sample(checks=[{"kind": "max_chars", "value": True}])], "max_chars needs a whole number"),
        ([sample(checks=[{"kind": "json", "value": "x"}])], "json takes no value"),
        ([sample(checks=[{"kind": "contains", "value": "a", "extra": 1}])], "unknown key 'extra'"),
        ([{"name": "x", "values": {"name": "A"}, "expect": 1}], "unknown key 'expect'"),
        ("not a list", "must be a list"),
        ([sample(name=f"s{i}") for i in range(21)], "at most 20 test cases"),
    ],
)
def test_bad_samples_are_refused_naming_the_prompt_sample_and_check(tests, words):
    with pytest.raises(ApplicationError) as caught:
        validate_tests(key="welcome", tests=tests, parameters=PARAMS)

    assert words in caught.value.message
    assert caught.value.message.startswith("welcome")


# Running ---------------------------------------------------------------------------------------------------


def test_each_check_kind_passes_and_fails_on_the_rendered_text():
    template = "Hello {{ name }}!"
    checks_pass = [
        {"kind": "contains", "value": "Ada"},
        {"kind": "not_contains", "value": "Bob"},
        {"kind": "regex", "value": r"^Hello \w+!$"},
        {"kind": "max_chars", "value": 10},
    ]
    checks_fail = [
        {"kind": "contains", "value": "Bob"},
        {"kind": "not_contains", "value": "Ada"},
        {"kind": "regex", "value": r"^Bye"},
        {"kind": "max_chars", "value": 5},
        {"kind": "json"},
    ]

    good, bad = run_tests(template=template, parameters=PARAMS,
                          tests=[sample("good", checks=checks_pass), sample("bad", checks=checks_fail)])

    assert good.ok and [c.ok for c in good.checks] == [True] * 4
    assert not bad.ok and [c.ok for c in bad.checks] == [False] * 5
    assert bad.checks[3].detail == "10 characters"
    assert bad.checks[4].detail.startswith("not JSON")


def test_a_json_template_passes_the_json_check_and_defaults_fill_left_out_values():
    (result,) = run_tests(
        template='{"name": {{ name|tojson }}, "count": {{ count }}}', parameters=PARAMS,
        tests=[sample(checks=[{"kind": "json"}, {"kind": "contains", "value": '"count": 1'}])],
    )

    assert result.ok, result.to_json()


def test_a_sample_that_does_not_render_fails_with_the_previews_message():
    (result,) = run_tests(template="{{ 1 // 0 }}", parameters=PARAMS, tests=[sample(checks=[{"kind": "json"}])])

    assert not result.ok
    assert "failed to render" in result.error
    assert result.checks[0].detail == "not run: the sample did not render"


def test_a_runaway_regular_expression_times_out_without_blocking_the_process():
    started = time.monotonic()

    outcomes = regex_search_many([("a", "a"), (r"(a+)+$", "a" * 40 + "!"), ("b", "b")], seconds=1.0)

    assert outcomes[0] is True
    assert outcomes[1].startswith("timed out after 1 s")
    assert outcomes[2].startswith("not run")
    assert time.monotonic() - started < 5


def test_results_for_counts_passed_and_failed_samples_and_names_the_failures():
    prompts = [{"id": "a", "template": "Hi {{ name }}", "parameters": PARAMS},
               {"id": "b", "template": "Bye", "parameters": []}]
    tests = {"a": [sample("ok", checks=[{"kind": "contains", "value": "Ada"}]),
                   sample("ko", checks=[{"kind": "contains", "value": "Bob"}])],
             "b": [sample("short", values={}, checks=[{"kind": "max_chars", "value": 2}])]}

    results = results_for(prompts, tests)

    assert (results["passed"], results["failed"]) == (1, 2)
    assert failing_samples(results) == ["a: ko", "b: short"]
    json.dumps(results)  # stored in a JSONField


# Services --------------------------------------------------------------------------------------------------

FAILING = [{"name": "ada", "values": {"name": "Ada"}, "checks": [{"kind": "contains", "value": "Goodbye"}]}]
PASSING = [{"name": "ada", "values": {"name": "Ada"}, "checks": [{"kind": "contains", "value": "Hello Ada"}]}]


def _welcome(prompt_set):
    return Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")


def test_saving_samples_stores_them_normalised_and_refuses_bad_ones(team, prompt_set):
    prompt = _welcome(prompt_set)

    saved = services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=PASSING)

    assert saved.tests == PASSING
    with pytest.raises(ApplicationError, match=r"welcome\.message, test case 'ada', check 1: unknown kind"):
        services.prompt_update(actor=team.editor, prompt=saved, base_revision=saved.revision,
                               tests=[{**PASSING[0], "checks": [{"kind": "nope"}]}])


def test_removing_a_parameter_a_kept_sample_sets_is_refused(team, prompt_set):
    prompt = _welcome(prompt_set)
    tests = [{"name": "pro", "values": {"name": "Ada", "plan": "pro"}, "checks": []}]
    prompt = services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=tests)

    with pytest.raises(ApplicationError, match="plan is not a parameter"):
        services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision,
                               template="Hello {{ name }}!", parameters=[{"name": "name", "required": True}])


def test_submit_records_samples_and_results_beside_the_prompts_and_keeps_the_digest(team, prompt_set):
    prompt = _welcome(prompt_set)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=FAILING)

    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    assert version.snapshot["tests"] == {"welcome.message": FAILING}
    assert version.snapshot["test_results"]["failed"] == 1
    assert version.snapshot["test_results"]["prompts"]["welcome.message"][0]["checks"][0]["ok"] is False
    assert all(set(p) == {"id", "template", "description", "parameters", "metadata"}
               for p in version.snapshot["prompts"])
    assert version.digest == content_digest(version.snapshot["prompts"])
    event = AuditEvent.objects.get(action="prompt_set.submit", object_id=str(version.pk))
    assert event.data["tests"] == {"passed": 0, "failed": 1, "failing": ["welcome.message: ada"]}


def test_a_set_without_samples_snapshots_as_before(team, prompt_set):
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    assert set(version.snapshot) == {"prompts"}


def test_approving_a_version_with_failing_checks_needs_the_override_and_a_comment(team, prompt_set):
    prompt = _welcome(prompt_set)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=FAILING)
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    with pytest.raises(ApplicationError, match=r"failing test cases \(welcome.message: ada\)"):
        services.version_approve(actor=team.reviewer, version=version, comment="fine")
    with pytest.raises(ApplicationError, match="needs a comment"):
        services.version_approve(actor=team.reviewer, version=version, override=True)
    approved = services.version_approve(actor=team.reviewer, version=version, override=True,
                                        comment="The check is out of date")

    assert approved.state == VersionState.APPROVED
    event = AuditEvent.objects.get(action="prompt_set.approve_override", object_id=str(version.pk))
    assert event.data["failing"] == ["welcome.message: ada"]
    assert event.data["comment"] == "The check is out of date"
    assert AuditEvent.objects.get(action="version.approve", object_id=str(version.pk)).data["override"] is True
    prompt_set.refresh_from_db()
    assert prompt_set.status == SetStatus.LOCKED


def test_approving_a_version_whose_checks_pass_needs_no_override(team, prompt_set):
    prompt = _welcome(prompt_set)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=PASSING)
    version = services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)

    assert services.version_approve(actor=team.reviewer, version=version).state == VersionState.APPROVED
    assert not AuditEvent.objects.filter(action="prompt_set.approve_override").exists()


def test_the_bundle_carries_no_samples_and_its_digest_does_not_depend_on_them(team, project):
    plain = factories.make_prompt_set_with_prompts(project, actor=team.editor, slug="plain")
    tested = factories.make_prompt_set_with_prompts(project, actor=team.editor, slug="tested")
    prompt = _welcome(tested)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=PASSING)
    bundle_cache.clear()
    bodies = []
    for prompt_set in (plain, tested):
        version = factories.make_approved_version(prompt_set, author=team.editor, reviewer=team.reviewer)
        release = factories.make_release(version, actor=team.editor)
        built = bundle_for(version=version, environment=release.environment, release=release)
        bodies.append(json.loads(built.body))
        assert built.content_digest == version.digest

    plain_bundle, tested_bundle = bodies
    assert "tests" not in json.dumps(tested_bundle)
    assert "Hello Ada" not in json.dumps(tested_bundle)
    assert tested_bundle["prompts"] == plain_bundle["prompts"]
    assert tested_bundle["content_digest"] == plain_bundle["content_digest"]
