"""A developer's first hour, for real: a Django project in git, `anvil install`, `anvil connect` to a running
FORGE, and the application serving a prompt from it; the token is in no file git would commit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def run(cwd: Path, *command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, f"{command}: {result.stderr}{result.stdout}"
    return result


def test_install_connect_and_serve_a_prompt_from_the_forge_without_committing_the_token(forge, tmp_path):
    project = tmp_path / "shop"
    (project / "shop").mkdir(parents=True)
    (project / "shop" / "__init__.py").write_text("")
    (project / "manage.py").write_text('import os\nos.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")\n')
    settings = 'SECRET_KEY = "x"\nINSTALLED_APPS = [\n    "django.contrib.contenttypes",\n]\n'
    (project / "shop" / "settings.py").write_text(settings)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANVIL_", "DJANGO_"))}
    run(project, "git", "init", "-q")
    anvil = [sys.executable, "-m", "anvil_client._cli"]

    run(project, *anvil, "install", "--yes", env=env)
    token = forge.cli("token", "create", "acme/support-bot", "--environment", "production", "--kind", "live",
                      "--name", "shop").split()[0]
    run(project, *anvil, "connect", forge.url, "--token", token, env=env)

    app = run(
        project,
        sys.executable,
        "-c",
        textwrap.dedent(
            """
            import json, django
            django.setup()  # AnvilConfig.ready() starts the client
            import anvil_client
            print(json.dumps({"text": anvil_client.prompt("greeting.welcome", customer_name="Ada"),
                              "versions": anvil_client.status()["versions"]}))
            """
        ),
        env={**env, "DJANGO_SETTINGS_MODULE": "shop.settings", "PYTHONPATH": str(project)},
    )
    served = json.loads(app.stdout.strip().splitlines()[-1])
    assert served["versions"] == {"core": 1}
    assert served["text"].startswith("Hi Ada!")

    run(project, "git", "add", "--all")
    staged = run(project, "git", "diff", "--cached", "--name-only").stdout.split()
    assert "anvil.credentials" not in staged and not any(name.startswith(".anvil/") for name in staged)
    assert sorted(staged) == [".gitignore", "anvil.toml", "manage.py", "shop/__init__.py", "shop/settings.py"]
    for name in staged:
        assert token not in (project / name).read_text(), name
