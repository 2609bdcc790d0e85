"""Importing anvil_client is cheap (< 50 ms) and never pulls in Django (or Jinja2/http.client at import)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MEASURE = """
import sys, time
start = time.perf_counter()
import anvil_client
elapsed = time.perf_counter() - start
heavy = sorted(m for m in ("django", "jinja2", "http.client", "ssl") if m in sys.modules)
print(elapsed * 1000, ",".join(heavy))
"""

USE = """
import sys, json, anvil_client
from anvil_client import write_bootstrap
sys.path.insert(0, sys.argv[2])
from forge_stub import make_bundle
path = write_bootstrap(sys.argv[1] + "/b.json", [make_bundle("core", 1)])
client = anvil_client.Client(bootstrap=path, cache_dir=sys.argv[1] + "/cache")
assert client.prompt("welcome.message", name="A") == "Hello A (v1)"
assert "jinja2" not in sys.modules, "a substitution-only prompt needs no Jinja2"
client.status(); client.ids(); client.get("welcome.message")
print(json.dumps(sorted(m for m in sys.modules if m == "django" or m.startswith("django."))))
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as installed: with compiled bytecode
    env["PYTHONPYCACHEPREFIX"] = str(tmp_path / "pycache")
    return env


def test_import_takes_under_50_ms_and_loads_nothing_heavy(tmp_path: Path) -> None:
    env = _env(tmp_path)
    subprocess.run([sys.executable, "-c", "import anvil_client"], env=env, check=True, cwd=tmp_path)  # bytecode
    runs = []
    for _ in range(5):
        out = subprocess.run(
            [sys.executable, "-c", MEASURE], env=env, check=True, capture_output=True, text=True, cwd=tmp_path
        ).stdout.split()
        runs.append(float(out[0]))
        assert len(out) == 1, f"heavy modules imported by anvil_client: {out[1]}"
    assert min(runs) < 50, runs


def test_using_the_client_never_imports_django_nor_jinja2_for_simple_prompts(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", USE, str(tmp_path), str(Path(__file__).parent)],
        env=_env(tmp_path),
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    ).stdout
    assert out.strip() == "[]"


REFUSED = """
import socket, sys
from anvil_client._http import HTTPFailure, request
listener = socket.socket(); listener.bind(("127.0.0.1", 0)); port = listener.getsockname()[1]; listener.close()
try:
    request("GET", f"http://127.0.0.1:{port}/api/v1/live/releases", token="t", timeout=2)
except HTTPFailure as exc:
    assert "cannot reach the FORGE" in str(exc) and "refused" in str(exc).lower(), exc
print(",".join(m for m in ("http.client", "ssl", "email.parser") if m in sys.modules))
"""


def test_a_forge_that_refuses_the_connection_costs_no_http_client_import(tmp_path: Path) -> None:
    """Start-up with the FORGE down: the sync thread's failed attempt must not import http.client."""
    result = subprocess.run(
        [sys.executable, "-c", REFUSED], capture_output=True, text=True, env=_env(tmp_path), timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
