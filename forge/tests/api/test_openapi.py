"""The OpenAPI document describes every route and method of the management API, with the key's security."""

from __future__ import annotations

import json
import re
from pathlib import Path

from django.urls import get_resolver

import anvil_forge.distribution
from anvil_forge.api import urls

DOCUMENT = json.loads((Path(anvil_forge.distribution.__file__).parent / "openapi.json").read_text())


def _openapi_form(route: str) -> str:
    return "/api/v1/manage/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + m.group(1) + "}", route)


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def test_every_management_route_and_method_is_in_the_openapi_document():
    documented = {_shape(path): methods for path, methods in DOCUMENT["paths"].items()}
    missing = []
    for pattern in urls.urlpatterns:
        methods = {m.lower() for m in pattern.callback.manage_methods}
        shape = _shape(_openapi_form(str(pattern.pattern)))
        if shape not in documented or not methods <= set(documented[shape]):
            missing.append(f"{sorted(methods)} {shape}")
    assert missing == []
    assert get_resolver()  # the document's paths resolve through the same URLconf


def test_management_operations_use_the_api_key_scheme():
    operations = [op for path, ops in DOCUMENT["paths"].items() if path.startswith("/api/v1/manage/")
                  for op in ops.values()]
    assert operations and all(op["security"] == [{"apiKey": []}] for op in operations)
    assert DOCUMENT["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
