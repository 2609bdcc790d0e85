"""Test cases in the prompt file format (front matter ``tests``), in exports and imports."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from anvil_forge.prompts import fileformat, services
from anvil_forge.prompts.fileformat import ImportFormatError
from anvil_forge.prompts.models import Prompt
from anvil_forge.prompts.transfer import prompt_set_export, prompt_set_import

FILE = b"""---
parameters:
  name: {type: string, required: true}
  count: {type: number, default: 1}
tests:
  ada:
    values:
      name: Ada
    checks:
      - contains: Hello Ada
      - not_contains: "{{"
      - regex: ^Hello
      - max_chars: 100
  "2":
    values: {name: "{}", count: 2}
    checks:
      - json: true
---
Hello {{ name }} x{{ count }}
"""


def test_front_matter_tests_become_samples_with_checks():
    prompt = fileformat.parse_prompt_file("greeting.welcome.j2", FILE)

    assert prompt["tests"] == [
        {"name": "ada", "values": {"name": "Ada"}, "checks": [
            {"kind": "contains", "value": "Hello Ada"}, {"kind": "not_contains", "value": "{{"},
            {"kind": "regex", "value": "^Hello"}, {"kind": "max_chars", "value": 100}]},
        {"name": "2", "values": {"name": "{}", "count": 2}, "checks": [{"kind": "json"}]},
    ]


def test_a_prompt_with_tests_is_written_and_read_back_the_same():
    prompt = fileformat.parse_prompt_file("greeting.welcome.j2", FILE)

    text = fileformat.serialise_prompt(prompt)

    assert "tests:" in text
    assert fileformat.parse_prompt_file("greeting.welcome.j2", text.encode()) == prompt


@pytest.mark.parametrize(
    ("front", "line", "words"),
    [
        ("tests: [1]", 2, "tests must map each test case's name"),
        ("tests:\n  a: [1]", 3, "test case a: give a mapping"),
        ("tests:\n  a:\n    expect: 1", 3, "test case a: unknown key 'expect'"),
        ("tests:\n  a:\n    checks:\n      - contains: x\n        regex: y", 3, "write each check as one kind"),
        ("tests:\n  a:\n    checks: [{shouts: x}]", 3, "test case 'a', check 1: unknown kind 'shouts'"),
        ("tests:\n  a:\n    checks: [{regex: '('}]", 3, "does not compile"),
        ("tests:\n  a: {}\n  b:\n    values: {nope: 1}", 4, "test case 'b': nope is not a parameter"),
        ("tests:\n  1: {}", 3, "test case name 1 must be text"),
    ],
)
def test_bad_tests_are_refused_with_the_file_and_the_line_of_the_sample(front, line, words):
    with pytest.raises(ImportFormatError) as caught:
        fileformat.parse_prompt_file("a.j2", f"---\n{front}\n---\nHi\n".encode())

    assert words in caught.value.message
    assert caught.value.file == "a.j2"
    assert caught.value.line == line


_NAME = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,10}", fullmatch=True)
_TEXT = st.text(alphabet=string.printable + "é€\u2028", min_size=1, max_size=30)
_CHECK = st.one_of(
    st.fixed_dictionaries({"kind": st.sampled_from(["contains", "not_contains"]), "value": _TEXT}),
    st.fixed_dictionaries({"kind": st.just("regex"), "value": st.sampled_from(["^a", r"\d+", "x|y", "(?i)hello"])}),
    st.fixed_dictionaries({"kind": st.just("max_chars"), "value": st.integers(min_value=1, max_value=10**6)}),
    st.just({"kind": "json"}),
)
_SAMPLE = st.fixed_dictionaries({
    "name": _NAME,
    "values": st.fixed_dictionaries({"name": st.text(alphabet=string.printable, max_size=20)},
                                    optional={"count": st.integers() | st.floats(allow_nan=False,
                                                                                 allow_infinity=False)}),
    "checks": st.lists(_CHECK, max_size=4),
})


@settings(max_examples=150, deadline=None)
@given(tests=st.lists(_SAMPLE, min_size=1, max_size=4, unique_by=lambda s: s["name"]))
def test_any_samples_written_read_back_the_same(tests):
    prompt = {"id": "fuzz.prompt", "template": "Hi {{ name }} {{ count }}", "description": "",
              "parameters": [{"name": "name", "required": True}, {"name": "count", "type": "number", "default": 1}],
              "metadata": {}, "tests": tests}
    prompt = fileformat._checked_prompt(prompt, file="fuzz.prompt.j2")

    assert fileformat.parse_prompt_file("fuzz.prompt.j2", fileformat.serialise_prompt(prompt).encode()) == prompt


SAMPLES = [{"name": "ada", "values": {"name": "Ada"}, "checks": [{"kind": "contains", "value": "Hello Ada"}]}]


def _reimport(prompt_set, actor, version=None):
    export = prompt_set_export(actor=actor, prompt_set=prompt_set, version=version)
    files = fileformat.export_files(name=export.name, description=export.description, prompts=export.prompts)
    collection = fileformat.load_upload([("export.zip", fileformat.build_zip(files))])
    return collection, prompt_set_import(actor=actor, project=prompt_set.project, set_slug=prompt_set.slug,
                                         collection=collection)


def test_export_then_import_of_a_set_with_samples_changes_nothing(team, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=SAMPLES)
    prompt_set.refresh_from_db()
    revision = prompt_set.revision

    collection, plan = _reimport(prompt_set, team.editor)

    assert next(p for p in collection.prompts if p["id"] == "welcome.message")["tests"] == SAMPLES
    assert not plan.has_changes
    prompt_set.refresh_from_db()
    assert prompt_set.revision == revision


def test_a_versions_export_carries_its_samples_and_an_import_brings_them_back(team, prompt_set):
    prompt = Prompt.objects.get(prompt_set=prompt_set, key="welcome.message")
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=SAMPLES)
    services.prompt_set_submit(actor=team.editor, prompt_set=prompt_set)
    services.version_request_changes(actor=team.reviewer, version=prompt_set.versions.get(), comment="again")
    prompt = Prompt.objects.get(pk=prompt.pk)
    services.prompt_update(actor=team.editor, prompt=prompt, base_revision=prompt.revision, tests=[])

    _, plan = _reimport(prompt_set, team.editor, version=1)

    assert plan.changed == ["welcome.message"]
    assert Prompt.objects.get(pk=prompt.pk).tests == SAMPLES


_TESTS_LINES = st.lists(
    st.one_of(
        st.sampled_from(["tests:", "  a:", "  1:", "  'b c':", "    values:", "      name: Ada", "      name: 3",
                         "      nope: x", "    checks:", "      - contains: x", "      - max_chars: 0",
                         "      - max_chars: 5", "      - json: true", "      - regex: '('", "      - regex: a+",
                         "      - {}", "      - [1]", "      - shouts: x", "    - 1", "  a: []", "tests: 3",
                         "      when: 2024-01-01", "      name: .nan", "parameters:", "  name: string"]),
        st.text(alphabet=string.printable, max_size=20),
    ),
    max_size=10,
)


@settings(max_examples=300, deadline=None)
@given(lines=_TESTS_LINES)
def test_the_importer_only_ever_accepts_or_raises_its_own_error_on_any_tests(lines):
    data = "\n".join(["---", *lines, "---", "Hi {{ name }}"]).encode()
    try:
        prompt = fileformat.parse_prompt_file("a.j2", data)
    except ImportFormatError:
        return
    assert fileformat.parse_prompt_file("a.j2", fileformat.serialise_prompt(prompt).encode()) == prompt
