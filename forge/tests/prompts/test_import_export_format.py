"""The prompt file format (``prompts.fileformat``): parsing, writing, sources, and every refusal with file and line."""

from __future__ import annotations

import contextlib
import io
import json
import string
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anvil_client.bundle import build_bundle
from anvil_forge.prompts import fileformat
from anvil_forge.prompts.fileformat import ImportFormatError

FULL = """---
description: First words to a new customer.
parameters:
  name: string
  plan:
    type: string
    default: free
    description: The customer's plan
  vip:
    type: boolean
    required: true
metadata:
  model: gpt-4o-mini
  temperature: 0.2
---
Hello {{ name }}!{% if plan == 'pro' %} Thanks.{% endif %}
"""


def make_zip(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def refused(call, *args, **kwargs) -> ImportFormatError:
    with pytest.raises(ImportFormatError) as info:
        call(*args, **kwargs)
    return info.value


# One prompt file ---------------------------------------------------------------------------------------------


def test_a_prompt_file_with_front_matter_gives_id_template_description_parameters_and_metadata():
    prompt = fileformat.parse_prompt_file("greeting.welcome.j2", FULL.encode())

    assert prompt["id"] == "greeting.welcome"
    assert prompt["template"] == "Hello {{ name }}!{% if plan == 'pro' %} Thanks.{% endif %}"
    assert prompt["description"] == "First words to a new customer."
    assert prompt["parameters"] == [
        {"name": "name", "type": "string", "required": False, "default": None, "description": ""},
        {"name": "plan", "type": "string", "required": False, "default": "free", "description": "The customer's plan"},
        {"name": "vip", "type": "boolean", "required": True, "default": None, "description": ""},
    ]
    assert prompt["metadata"] == {"model": "gpt-4o-mini", "temperature": 0.2}


@pytest.mark.parametrize("extension", [".j2", ".txt", ".md"])
def test_a_file_without_front_matter_is_all_template_and_each_extension_is_read(extension):
    prompt = fileformat.parse_prompt_file("errors.not_found" + extension, b"Sorry, no {{ thing }}.\n")

    assert prompt == {"id": "errors.not_found", "template": "Sorry, no {{ thing }}.", "description": "",
                      "parameters": [], "metadata": {}}


def test_only_the_last_newline_of_a_file_is_dropped():
    assert fileformat.parse_prompt_file("a.j2", b"x\n\n")["template"] == "x\n"
    assert fileformat.parse_prompt_file("a.j2", b"x")["template"] == "x"


def test_writing_then_reading_a_prompt_gives_it_back_exactly():
    prompt = fileformat.parse_prompt_file("greeting.welcome.j2", FULL.encode())

    text = fileformat.serialise_prompt(prompt)

    assert text == FULL
    assert fileformat.parse_prompt_file("greeting.welcome.j2", text.encode()) == prompt


def test_a_template_that_starts_with_dashes_is_written_behind_empty_front_matter():
    prompt = {"id": "a", "template": "---\nnot front matter\n---\nbody"}

    text = fileformat.serialise_prompt(prompt)

    assert text.startswith("---\n---\n")
    assert fileformat.parse_prompt_file("a.j2", text.encode())["template"] == prompt["template"]


@pytest.mark.parametrize(
    ("name", "data", "line", "words"),
    [
        ("a.j2", b"---\nparameters:\n  x: str\n---\n{{ x }}", 3, "unknown type 'str'"),
        ("a.j2", b"---\ndescription: [unclosed\n---\nx", 3, "invalid YAML"),
        ("a.j2", b"---\ndescription: x\n", 1, "never closed"),
        ("a.j2", b"---\nmodel: gpt\n---\nx", 2, "unknown front matter key 'model'"),
        ("a.j2", b"---\ndescription: a\ndescription: b\n---\nx", 3, "given twice"),
        ("a.j2", b"---\na: &x [1]\nmetadata: *x\n---\nx", 3, "aliases"),
        ("a.j2", b"---\ndescription: x\n---\nline one\n{% if %}\n", 5, "template syntax error"),
        ("a.j2", b"first\nsecond \xff\n", 2, "not UTF-8"),
        ("a.j2", b"---\nmetadata: [1, 2]\n---\nx", 2, "metadata must be a mapping"),
        ("a.j2", b"---\nparameters:\n  x:\n    type: number\n    default: ten\n---\n{{ x }}", 2, "default"),
        ("a.j2", b"---\nparameters:\n  x:\n    kind: string\n---\n{{ x }}", 3, "unknown key 'kind'"),
        ("a.j2", b"---\nmetadata:\n  when: 2024-01-01\n---\nx", 2, "not plain JSON"),
    ],
)
def test_a_bad_prompt_file_is_refused_with_its_file_and_line(name, data, line, words):
    error = refused(fileformat.parse_prompt_file, name, data)

    assert error.file == name
    assert error.line == line
    assert words in error.message
    assert error.message.startswith(f"{name}, line {line}: ")


@pytest.mark.parametrize("name", ["Greeting.j2", "greeting-welcome.j2", "1st.j2", "a..b.j2", "welcome.yaml"])
def test_a_file_not_named_by_a_valid_prompt_id_is_refused(name):
    error = refused(fileformat.parse_prompt_file, name, b"x")

    assert error.file == name


def test_a_file_over_the_size_limit_is_refused_naming_the_limit():
    error = refused(fileformat.parse_prompt_file, "a.j2", b"x" * (fileformat.MAX_FILE_BYTES + 1))

    assert "164 KB" in error.message


# Directories, zips, uploads ----------------------------------------------------------------------------------


def write(directory: Path, files: dict[str, str | bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return directory


def test_a_directory_gives_its_prompts_by_id_and_the_set_name(tmp_path):
    source = write(tmp_path / "p", {"b.two.txt": "B", "a.one.j2": "A {{ x }}", "set.yaml": "name: Core\n",
                                    ".DS_Store": b"\x00\xff"})

    collection = fileformat.load_path(source)

    assert collection.ids == ["a.one", "b.two"]
    assert collection.set_name == "Core"
    assert collection.set_description is None


def test_two_files_with_the_same_id_are_refused_naming_both(tmp_path):
    source = write(tmp_path / "p", {"a.one.j2": "A", "a.one.txt": "B"})

    error = refused(fileformat.load_path, source)

    assert "duplicate prompt id a.one" in error.message
    assert "a.one.j2" in error.message and "a.one.txt" in error.message


def test_a_directory_with_an_unknown_file_or_a_subdirectory_is_refused(tmp_path):
    assert "not a prompt file" in refused(fileformat.load_path, write(tmp_path / "x", {"notes.json": "{}"})).message
    (tmp_path / "y" / "sub").mkdir(parents=True)
    assert "subdirectories" in refused(fileformat.load_path, tmp_path / "y").message


def test_a_bad_set_yaml_is_refused_with_its_line(tmp_path):
    error = refused(fileformat.load_path, write(tmp_path / "p", {"set.yaml": "name: Core\nslug: core\n"}))

    assert (error.file, error.line) == ("set.yaml", 2)


def test_an_export_zip_reads_back_as_the_same_prompts():
    prompts = [fileformat.parse_prompt_file("greeting.welcome.j2", FULL.encode()),
               {"id": "b", "template": "B", "description": "", "parameters": [], "metadata": {}}]
    files = fileformat.export_files(name="Core", description="Main prompts", prompts=prompts)

    collection = fileformat.load_upload([("core.zip", fileformat.build_zip(files))])

    assert collection.prompts == sorted(prompts, key=lambda p: p["id"])
    assert (collection.set_name, collection.set_description) == ("Core", "Main prompts")
    assert fileformat.build_zip(files) == fileformat.build_zip(files)  # same content, same bytes


def test_a_zip_with_its_files_inside_one_folder_is_read():
    data = make_zip({"prompts/a.j2": b"A", "prompts/set.yaml": b"name: X\n", "__MACOSX/._a.j2": b"junk"})

    assert fileformat.read_zip(data).ids == ["a"]


@pytest.mark.parametrize(
    ("entry", "words"),
    [("../evil.j2", "climbs out"), ("/etc/evil.j2", "absolute path"), ("a/../../b.j2", "climbs out"),
     ("C:/evil.j2", "absolute path"), ("..\\evil.j2", "climbs out")],
)
def test_a_zip_entry_with_dot_dot_or_an_absolute_path_is_refused(entry, words):
    error = refused(fileformat.read_zip, make_zip({entry: b"x", "ok.j2": b"y"}), name="bad.zip")

    assert words in error.message
    assert error.file == "bad.zip"


def test_a_zip_bomb_is_refused_naming_the_limit_before_it_is_expanded():
    bomb = make_zip({f"p{i}.j2": b"\0" * (fileformat.MAX_FILE_BYTES - 1) for i in range(210)})
    assert len(bomb) < 1024 * 1024

    error = refused(fileformat.read_zip, bomb)

    assert "32 MB" in error.message


def test_a_zip_entry_that_expands_past_the_file_limit_is_refused():
    error = refused(fileformat.read_zip, make_zip({"a.j2": b" " * (fileformat.MAX_FILE_BYTES + 10)}))

    assert "164 KB" in error.message


def test_an_oversized_upload_is_refused_naming_the_limit():
    error = refused(fileformat.load_upload, [("a.j2", b"x" * 10), ("b.j2", b"x" * fileformat.MAX_UPLOAD_BYTES)])

    assert "16 MB" in error.message


def test_a_file_that_is_not_a_zip_is_refused_as_such():
    assert "not a readable zip" in refused(fileformat.load_upload, [("x.zip", b"PK\x03\x04garbage")]).message


# Bundles and Langfuse ----------------------------------------------------------------------------------------


def test_an_anvil_bundle_gives_its_prompts():
    bundle = build_bundle(
        forge="http://f", organisation="acme", project="bot", environment="production", set_slug="core", version=3,
        approval="approved", created_at="2024-01-01T00:00:00Z",
        prompts=[{"id": "a.b", "template": "Hi {{ n }}", "parameters": [{"name": "n", "type": "string"}]}],
    )

    collection = fileformat.load_upload([("bundle.json", json.dumps(bundle).encode())])

    assert collection.ids == ["a.b"]
    assert collection.prompts[0]["parameters"][0]["name"] == "n"


def test_a_bundle_whose_digest_does_not_match_is_refused():
    bundle = build_bundle(
        forge="http://f", organisation="acme", project="bot", environment="production", set_slug="core", version=3,
        approval="approved", created_at="2024-01-01T00:00:00Z", prompts=[{"id": "a", "template": "x"}],
    )
    bundle["prompts"][0]["template"] = "tampered"

    assert "digest" in refused(fileformat.load_upload, [("b.json", json.dumps(bundle).encode())]).message


LANGFUSE = {
    "data": [
        {"name": "movie-critic", "type": "text", "version": 1, "labels": ["latest"],
         "prompt": "As a {{criticLevel}} critic, do you like {{movie}}?", "config": {"model": "gpt-4o"}},
        {"name": "movie-critic", "type": "text", "version": 2, "labels": ["production"],
         "prompt": "As a {{criticLevel}} movie critic, do you like {{movie}}?", "config": {"temperature": 0.5}},
        {"name": "support/Greeting", "type": "text", "version": 7, "labels": [], "prompt": "Hello!", "config": {}},
    ]
}


def test_langfuse_text_prompts_become_templates_with_their_variables_kept():
    collection = fileformat.load_upload([("langfuse.json", json.dumps(LANGFUSE).encode())])

    assert collection.ids == ["movie_critic", "support.greeting"]
    critic = collection.prompts[0]
    assert critic["template"] == "As a {{criticLevel}} movie critic, do you like {{movie}}?"
    assert [(p["name"], p["type"], p["required"]) for p in critic["parameters"]] == [
        ("criticLevel", "string", True), ("movie", "string", True)]
    assert critic["metadata"] == {"temperature": 0.5}
    assert "version 2" in critic["description"]


def test_langfuse_chat_prompts_are_refused_by_name():
    document = [
        {"name": "ok", "type": "text", "prompt": "x", "version": 1},
        {"name": "chat-bot", "type": "chat", "prompt": [{"role": "system", "content": "hi"}], "version": 1},
        {"name": "other-chat", "prompt": [{"role": "user", "content": "{{q}}"}], "version": 3},
    ]

    error = refused(fileformat.load_upload, [("lf.json", json.dumps(document).encode())])

    assert "chat prompts cannot be imported" in error.message
    assert "chat-bot, other-chat" in error.message


def test_langfuse_prompt_list_without_texts_is_refused_saying_what_to_export():
    document = {"data": [{"name": "a", "versions": [1, 2], "labels": [], "tags": [], "type": "text"}], "meta": {}}

    assert "GET /api/public/v2/prompts/{name}" in refused(
        fileformat.load_upload, [("lf.json", json.dumps(document).encode())]).message


def test_json_that_is_neither_is_refused_with_its_line():
    error = refused(fileformat.load_upload, [("x.json", b'{\n "a": 1,\n}')])

    assert error.line == 3


# Fuzzing -----------------------------------------------------------------------------------------------------

_TEXT = st.text(alphabet=string.printable + "é€{}%#-:\u2028", max_size=80)
_FRONT_LINES = st.lists(
    st.one_of(
        st.sampled_from(["description: hi", "parameters:", "  name: string", "  n: {type: number, default: 1}",
                         "metadata:", "  model: x", "  - 1", "---", "...", "? [a]", "description: |", "  &a b",
                         "  *a", "!!python/object:os.system ls", "[[[[[", "parameters: [1, 2]", "  x: str"]),
        _TEXT,
    ),
    max_size=8,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=_FRONT_LINES, body=_TEXT, name=st.sampled_from(["a.j2", "a.b.txt", "A.md", "set.yaml", "x.zip", "x.json"]),
       raw=st.binary(max_size=64))
def test_the_importer_only_ever_accepts_or_raises_its_own_error(lines, body, name, raw):
    for data in ("\n".join(["---", *lines, "---", body]).encode(), raw, body.encode()):
        with contextlib.suppress(ImportFormatError):
            fileformat.load_upload([(name, data)])


@settings(max_examples=100, deadline=None)
@given(entries=st.dictionaries(st.sampled_from(["a.j2", "../a.j2", "d/a.j2", "/x.j2", "set.yaml", "b.txt"]),
                               st.binary(max_size=40), max_size=4),
       cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=400))
def test_the_zip_reader_only_ever_accepts_or_raises_its_own_error(entries, cut, flip):
    data = bytearray(make_zip(entries))
    if data and flip < len(data):
        data[flip] ^= 0x55
    for candidate in (bytes(data), bytes(data[:cut])):
        with contextlib.suppress(ImportFormatError):
            fileformat.read_zip(candidate)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["name", "prompt", "type", "version", "labels", "config", "data", "format"]), children,
        max_size=5),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(document=_JSON)
def test_the_json_reader_only_ever_accepts_or_raises_its_own_error(document):
    with contextlib.suppress(ImportFormatError):
        fileformat.load_upload([("x.json", json.dumps(document).encode())])


_PARAMETER = st.fixed_dictionaries(
    {"name": st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), "type": st.just("string"),
     "required": st.booleans(), "default": st.none() | _TEXT, "description": _TEXT}
)


@settings(max_examples=200, deadline=None)
@given(
    template=st.text(alphabet=string.printable.replace("{", "").replace("%", "").replace("#", "") + "é\u2028",
                     max_size=100),
    description=_TEXT,
    parameters=st.lists(_PARAMETER, max_size=3, unique_by=lambda p: p["name"]),
    metadata=st.dictionaries(_TEXT, st.none() | st.booleans() | st.integers() | _TEXT, max_size=3),
)
def test_any_prompt_written_reads_back_the_same(template, description, parameters, metadata):
    prompt = {"id": "fuzz.prompt", "template": template, "description": description, "parameters": parameters,
              "metadata": metadata}
    prompt = fileformat._checked_prompt(prompt, file="fuzz.prompt.j2")

    assert fileformat.parse_prompt_file("fuzz.prompt.j2", fileformat.serialise_prompt(prompt).encode()) == prompt
