"""The module-level API: a default client made from the environment on first use, never at import."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from forge_stub import make_bundle

import anvil_client


@pytest.fixture
def fresh_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in ("ANVIL_FORGE_URL", "ANVIL_TOKEN", "ANVIL_MODE", "ANVIL_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(anvil_client, "_default", None)
    yield
    if anvil_client._default is not None:
        anvil_client._default.close()


def test_importing_creates_no_client_and_no_thread() -> None:
    code = (
        "import threading, anvil_client\n"
        "assert anvil_client._default is None\n"
        "assert [t.name for t in threading.enumerate()] == ['MainThread']\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_module_functions_use_a_default_client_from_the_environment(
    fresh_default: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = anvil_client.write_bootstrap(tmp_path / "prompts.json", [make_bundle("core", 3)])
    monkeypatch.setenv("ANVIL_BOOTSTRAP", str(path))
    monkeypatch.setenv("ANVIL_CACHE_DIR", str(tmp_path / "cache"))
    assert anvil_client.prompt("welcome.message", name="Ada") == "Hello Ada (v3)"
    assert anvil_client.default_client() is anvil_client.default_client()
    assert anvil_client.ids() == ["welcome.message"]
    assert anvil_client.template("welcome.message") == "Hello {{ name }} (v3)"
    assert anvil_client.get("welcome.message")["version"] == 3
    assert anvil_client.status()["source"] == "bootstrap"
    assert anvil_client.on_update(print) is print


def test_configure_replaces_the_default_client_and_closes_the_old_one(
    fresh_default: None, tmp_path: Path
) -> None:
    bootstrap = anvil_client.write_bootstrap(tmp_path / "a.json", [make_bundle("core", 1)])
    first = anvil_client.configure(bootstrap=bootstrap, cache_dir=tmp_path / "a")
    assert anvil_client.prompt("welcome.message", name="A") == "Hello A (v1)"
    second = anvil_client.configure(anvil_client.Config(
        bootstrap=anvil_client.write_bootstrap(tmp_path / "b.json", [make_bundle("core", 2)]), cache_dir=tmp_path / "b"
    ))
    assert anvil_client.default_client() is second is not first
    assert first._closed
    assert anvil_client.prompt("welcome.message", name="A") == "Hello A (v2)"


def test_the_module_function_has_the_client_methods_hot_path_body() -> None:
    """``anvil_client.prompt`` repeats ``Client.prompt``'s body on the default client (one frame less on the
    README's form): the two must stay the same, statement for statement."""
    import ast
    import inspect
    import textwrap

    from anvil_client._client import Client

    class Rename(ast.NodeTransformer):
        names = {"client": "self", "_last": "last", "_remember": "remember"}

        def visit_Name(self, node: ast.Name) -> ast.Name:
            return ast.copy_location(ast.Name(id=self.names.get(node.id, node.id), ctx=node.ctx), node)

    def body(function: object, skip: int) -> list[str]:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))  # type: ignore[arg-type]
        statements = tree.body[0].body[1 + skip:]  # type: ignore[attr-defined]  # after the docstring
        return [ast.dump(Rename().visit(statement)) for statement in statements]

    module = body(anvil_client.prompt, skip=1)  # after ``client = _default or _make_default()``
    assert len(module) >= 8
    method = body(Client.prompt, skip=0)
    assert module == method
    assert inspect.signature(anvil_client.prompt).parameters.keys() == (
        inspect.signature(Client.prompt).parameters.keys() - {"self"}
    )
