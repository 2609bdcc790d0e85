"""The FORGE starts as a real process and answers over HTTP."""

import json
import urllib.request


def test_forge_serves_health_over_uvicorn(make_forge):
    forge = make_forge(seed_demo=False)
    with urllib.request.urlopen(forge.url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert json.load(response) == {"status": "ok"}
