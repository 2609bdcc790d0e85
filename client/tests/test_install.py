"""`anvil install` on small fake projects: detection, the planned edits, applying them, and running twice."""

from __future__ import annotations

import ast
import io
import textwrap
import tomllib
from pathlib import Path

import pytest

from anvil_client._cli import main
from anvil_client._install import DJANGO_ENTRY, InstallError, apply_plan, detect, plan_install


def write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


@pytest.fixture
def django_project(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "manage.py",
        """
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
            from django.core.management import execute_from_command_line
            execute_from_command_line(sys.argv)
        """,
    )
    write(
        tmp_path,
        "shop/settings.py",
        """
        SECRET_KEY = "not-secret"
        INSTALLED_APPS = [
            "django.contrib.contenttypes",
            "django.contrib.auth"  # no trailing comma here
            # a comment before the bracket
        ]
        """,
    )
    write(tmp_path, "shop/__init__.py", "")
    return tmp_path


@pytest.fixture
def flask_project(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "web/app.py",
        '''
        """The shop's web front."""
        from __future__ import annotations

        from flask import Flask

        app = Flask(__name__)


        @app.get("/")
        def index():
            return "hello"
        ''',
    )
    return tmp_path


@pytest.fixture
def fastapi_project(tmp_path: Path) -> Path:
    write(
        tmp_path,
        "main.py",
        """
        from fastapi import FastAPI

        app = FastAPI(title="shop")
        """,
    )
    return tmp_path


def test_django_project_gets_the_app_config_appended_to_installed_apps(django_project):
    plan = plan_install(django_project)

    assert plan.detected.framework == "django"
    assert plan.detected.target == django_project / "shop" / "settings.py"
    apply_plan(plan)
    settings = (django_project / "shop" / "settings.py").read_text()
    namespace: dict = {}
    exec(compile(settings, "settings.py", "exec"), namespace)
    assert namespace["INSTALLED_APPS"] == ["django.contrib.contenttypes", "django.contrib.auth", DJANGO_ENTRY]
    assert "# no trailing comma here" in settings and "# a comment before the bracket" in settings


def test_django_settings_without_a_plain_list_get_an_extension_statement(tmp_path):
    write(tmp_path, "manage.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_cfg.settings")\n')
    write(tmp_path, "site_cfg/settings.py", 'BASE = ["a"]\nINSTALLED_APPS = BASE + ["b"]\n')

    apply_plan(plan_install(tmp_path))

    namespace: dict = {}
    exec((tmp_path / "site_cfg" / "settings.py").read_text(), namespace)
    assert namespace["INSTALLED_APPS"] == ["a", "b", DJANGO_ENTRY]


def test_manage_py_that_assigns_the_settings_module_is_understood(tmp_path):
    write(tmp_path, "manage.py", 'import os\nos.environ["DJANGO_SETTINGS_MODULE"] = "conf.prod"\n')
    write(tmp_path, "conf/prod.py", "INSTALLED_APPS = []\n")
    write(tmp_path, "other/settings.py", "INSTALLED_APPS = []\n")

    assert detect(tmp_path).target == tmp_path / "conf" / "prod.py"


def test_one_line_installed_apps_stays_on_one_line(tmp_path):
    write(tmp_path, "manage.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")\n')
    settings = write(tmp_path, "proj/settings.py", 'INSTALLED_APPS = ("a", "b")\n')

    apply_plan(plan_install(tmp_path))

    assert settings.read_text() == f'INSTALLED_APPS = ("a", "b", "{DJANGO_ENTRY}")\n'


def test_flask_app_gets_the_extension_after_it_is_made_and_the_import_after_the_others(flask_project):
    plan = plan_install(flask_project)

    assert (plan.detected.framework, plan.detected.variable) == ("flask", "app")
    apply_plan(plan)
    source = (flask_project / "web" / "app.py").read_text()
    lines = source.splitlines()
    anvil_import = lines.index("from anvil_client.integrations.flask import Anvil")
    assert anvil_import == lines.index("from flask import Flask") + 1
    assert lines[lines.index("app = Flask(__name__)") + 1] == "Anvil(app)"
    assert lines[0] == '"""The shop\'s web front."""'
    ast.parse(source)


def test_flask_application_factory_gets_the_extension_inside_the_factory(tmp_path):
    write(
        tmp_path,
        "shop/__init__.py",
        """
        import flask


        def create_app():
            application = flask.Flask(
                __name__,
            )
            return application
        """,
    )

    apply_plan(plan_install(tmp_path))

    source = (tmp_path / "shop" / "__init__.py").read_text()
    assert "    )\n    Anvil(application)\n    return application\n" in source


def test_fastapi_app_gets_the_lifespan_argument(fastapi_project):
    apply_plan(plan_install(fastapi_project))

    source = (fastapi_project / "main.py").read_text()
    assert 'app = FastAPI(title="shop", lifespan=anvil_lifespan)' in source
    assert "from anvil_client.integrations.fastapi import anvil_lifespan\n" in source


def test_fastapi_app_with_its_own_lifespan_gets_it_wrapped(tmp_path):
    write(
        tmp_path,
        "main.py",
        """
        from fastapi import FastAPI
        from app.lifespan import lifespan

        app = FastAPI(
            title="shop",
            lifespan=lifespan,
        )
        """,
    )

    apply_plan(plan_install(tmp_path))

    source = (tmp_path / "main.py").read_text()
    assert "    lifespan=wrap_lifespan(lifespan),\n" in source
    assert "from anvil_client.integrations.fastapi import wrap_lifespan\n" in source
    assert source.count("lifespan=") == 1


def test_multiline_fastapi_call_without_lifespan_gets_it_on_its_own_line(tmp_path):
    write(tmp_path, "main.py", 'from fastapi import FastAPI\n\napp = FastAPI(\n    title="shop",\n    debug=True\n)\n')

    apply_plan(plan_install(tmp_path))

    source = (tmp_path / "main.py").read_text()
    assert '    debug=True,\n    lifespan=anvil_lifespan,\n)\n' in source


def test_fastapi_call_without_arguments_gets_the_lifespan(tmp_path):
    write(tmp_path, "main.py", "import fastapi\n\napi: fastapi.FastAPI = fastapi.FastAPI()\n")

    apply_plan(plan_install(tmp_path))

    assert "api: fastapi.FastAPI = fastapi.FastAPI(lifespan=anvil_lifespan)\n" in (tmp_path / "main.py").read_text()


def test_django_settings_package_edits_the_module_that_defines_installed_apps(tmp_path):
    write(tmp_path, "manage.py", 'os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings.dev")\n')
    write(tmp_path, "proj/settings/__init__.py", "")
    write(tmp_path, "proj/settings/base.py", 'INSTALLED_APPS = [\n    "a",\n]\n')
    dev = write(tmp_path, "proj/settings/dev.py", "from .base import *  # noqa\nDEBUG = True\n")

    plan = plan_install(tmp_path)

    assert plan.detected.target == tmp_path / "proj" / "settings" / "base.py"
    apply_plan(plan)
    assert DJANGO_ENTRY in (tmp_path / "proj" / "settings" / "base.py").read_text()
    assert DJANGO_ENTRY not in dev.read_text()


def test_plain_project_gets_only_the_settings_and_gitignore(tmp_path):
    write(tmp_path, "worker.py", "print('hello')\n")

    plan = plan_install(tmp_path)

    assert plan.detected.framework == "plain"
    assert sorted(c.path.name for c in plan.changes) == [".gitignore", "anvil.toml"]
    assert any("first anvil_client.prompt()" in note for note in plan.notes)


@pytest.mark.parametrize("fixture", ["django_project", "flask_project", "fastapi_project"])
def test_second_run_changes_nothing(fixture, request):
    root = request.getfixturevalue(fixture)
    apply_plan(plan_install(root))
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}

    second = plan_install(root)

    assert second.changes == ()
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_settings_file_holds_no_token_and_credentials_are_ignored(flask_project):
    apply_plan(plan_install(flask_project))

    config = tomllib.loads((flask_project / "anvil.toml").read_text())
    assert config == {"anvil": {"cache_dir": ".anvil"}}
    ignored = (flask_project / ".gitignore").read_text().splitlines()
    assert "anvil.credentials" in ignored and ".anvil/" in ignored


def test_existing_gitignore_is_extended_not_replaced(flask_project):
    (flask_project / ".gitignore").write_text("*.pyc\nanvil.credentials")

    apply_plan(plan_install(flask_project))

    assert (flask_project / ".gitignore").read_text().splitlines() == [
        "*.pyc",
        "anvil.credentials",
        "# Anvil: the token (anvil connect) and the local cache of prompts, never committed",
        ".anvil/",
    ]


def test_virtualenvs_and_hidden_directories_are_not_searched(tmp_path):
    write(tmp_path, "worker.py", "print('hello')\n")
    write(tmp_path, ".venv/lib/site.py", "from flask import Flask\napp = Flask(__name__)\n")
    write(tmp_path, "node_modules/x/app.py", "from flask import Flask\napp = Flask(__name__)\n")

    assert detect(tmp_path).framework == "plain"


def test_a_directory_with_only_virtualenvs_and_hidden_directories_holds_no_application(tmp_path):
    write(tmp_path, ".venv/lib/site.py", "from flask import Flask\napp = Flask(__name__)\n")

    with pytest.raises(InstallError, match="found no Python application"):
        detect(tmp_path)
    assert detect(tmp_path, "plain").framework == "plain"


def test_forcing_a_framework_that_is_not_there_is_an_error(tmp_path):
    write(tmp_path, "worker.py", "print('hello')\n")

    with pytest.raises(InstallError, match="FastAPI"):
        detect(tmp_path, "fastapi")


def test_a_file_with_a_syntax_error_is_refused_not_edited(tmp_path):
    write(tmp_path, "app.py", "from flask import Flask\napp = Flask(__name__)\ndef broken(:\n")

    with pytest.raises(InstallError, match="not valid Python"):
        plan_install(tmp_path)


def test_plan_refuses_to_apply_when_a_file_changed_meanwhile(flask_project):
    plan = plan_install(flask_project)
    app = flask_project / "web" / "app.py"
    app.write_text(app.read_text() + "\n# edited meanwhile\n")

    with pytest.raises(InstallError, match="changed while"):
        apply_plan(plan)
    assert not (flask_project / "anvil.toml").exists()


def test_crlf_files_keep_their_line_endings(tmp_path):
    (tmp_path / "app.py").write_bytes(b"from flask import Flask\r\napp = Flask(__name__)\r\n")

    apply_plan(plan_install(tmp_path))

    data = (tmp_path / "app.py").read_bytes()
    assert b"\nAnvil(app)\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")


# -- the command ---------------------------------------------------------------------------------------------


def test_cli_shows_the_diff_and_writes_nothing_when_declined(flask_project, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))

    code = main(["install", "--path", str(flask_project)])

    out = capsys.readouterr().out
    assert code == 1
    assert "+++ b/web/app.py" in out and "+Anvil(app)" in out and "--- /dev/null" in out
    assert "Nothing was written" in out
    assert not (flask_project / "anvil.toml").exists()
    assert "Anvil" not in (flask_project / "web" / "app.py").read_text()


def test_cli_applies_after_yes_and_then_reports_nothing_to_do(flask_project, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    assert main(["install", "--path", str(flask_project)]) == 0
    assert (flask_project / "anvil.toml").exists()
    capsys.readouterr()

    assert main(["install", "--path", str(flask_project), "--yes"]) == 0

    assert "Nothing to change" in capsys.readouterr().out


def test_cli_without_a_terminal_answer_writes_nothing(flask_project, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(""))

    assert main(["install", "--path", str(flask_project)]) == 1
    assert not (flask_project / "anvil.toml").exists()


def test_cli_dry_run_writes_nothing(django_project, capsys):
    assert main(["install", "--path", str(django_project), "--dry-run", "--yes"]) == 0

    assert f'+    "{DJANGO_ENTRY}",' in capsys.readouterr().out
    assert not (django_project / "anvil.toml").exists()


def test_cli_reports_a_missing_directory_as_a_failure(tmp_path, capsys):
    assert main(["install", "--path", str(tmp_path / "nope"), "--yes"]) == 1
    assert "is not a directory" in capsys.readouterr().err
