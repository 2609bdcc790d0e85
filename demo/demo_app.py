"""A small LIVE application: the Acme support bot's prompts, rendered by anvil_client, updated without a restart.

    python demo/demo_app.py --port 8001        # configured by anvil.toml / ANVIL_CONFIG, like any application

``make run`` starts it beside the FORGE, connected to acme/support-bot (production). It shows every prompt
rendered with sample values, the client's mode, versions and connection, and refreshes itself every second,
so a version published in the FORGE appears here as soon as it arrives. The client's admin page is mounted
at ``/anvil/`` (secret: ``ANVIL_ADMIN_SECRET``). Standard library WSGI server plus anvil_client: nothing else.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import jinja2

import anvil_client
from anvil_client.integrations.admin import AdminPage, mount_wsgi

logger = logging.getLogger("demo")

# Values a support bot would pass; anything else gets a value of its declared type.
SAMPLES: dict[str, Any] = {
    "company": "Acme Corp",
    "assistant_name": "Ada",
    "customer_name": "Grace",
    "plan": "pro",
    "order_id": "A-1042",
    "shipped": True,
    "eta_hours": 36,
    "tracking_url": "https://track.example/A-1042",
    "items": [{"name": "USB-C cable", "quantity": 2}, {"name": "Laptop stand", "quantity": 1}],
    "days_since_purchase": 12,
    "ticket_id": "T-5531",
    "priority": "high",
    "queue_position": 3,
    "agent_name": "Linus",
    "thing": "that order",
    "field": "order number",
    "name": "Ada",
}
_BY_TYPE: dict[str, Any] = {"string": "sample", "number": 3, "boolean": True, "list": ["one", "two"], "object": {}}

_last_update: dict[str, Any] = {}


def sample_values(details: dict[str, Any]) -> dict[str, Any]:
    """Values for a prompt's parameters (and any variable it reads without declaring)."""
    values = {}
    for parameter in details["parameters"]:
        name = parameter["name"]
        if name in SAMPLES:
            values[name] = SAMPLES[name]
        elif parameter["required"]:
            values[name] = _BY_TYPE.get(parameter["type"], "sample")
    declared = {parameter["name"] for parameter in details["parameters"]}
    for name in details.get("variables", []):
        if name not in declared:  # read by the template without a declaration: it still needs a value
            values.setdefault(name, SAMPLES.get(name, "sample"))
    return values


def view_model() -> dict[str, Any]:
    """Everything the page shows, read from the default client."""
    status = anvil_client.status()
    prompts = []
    problem = None
    try:
        ids = anvil_client.ids()
    except anvil_client.AnvilError as exc:
        ids, problem = [], str(exc)
    for prompt_id in ids:
        details = anvil_client.get(prompt_id)
        values = sample_values(details)
        try:
            text, error = anvil_client.prompt(prompt_id, values), None
        except anvil_client.AnvilError as exc:
            text, error = "", str(exc)
        prompts.append(
            {
                "id": prompt_id,
                "set": details["set"],
                "version": details["version"],
                "description": details["description"],
                "values": values,
                "text": text,
                "error": error,
            }
        )
    if not prompts and problem is None:
        problem = "No prompt yet: waiting for the FORGE, the disk cache or a bootstrap file."
    return {"status": status, "prompts": prompts, "problem": problem, "update": dict(_last_update)}


def remember_update(change: dict[str, Any]) -> None:
    _last_update.clear()
    _last_update.update(change, at=time.strftime("%H:%M:%S", time.localtime()))


_FRAGMENT = """\
<section class="bar" aria-label="LIVE client status">
<span class="badge {{ status.mode }}">{{ status.mode|upper }}</span>
{% for set, version in status.versions|dictsort %}<span class="pill">set <b>{{ set }}</b> v{{ version }}\
{% if set in status.pins %} (pinned){% endif %}</span>{% endfor %}
<span>source: {{ status.source or "none" }}</span>
<span>FORGE: {{ "connected" if status.connected else "not connected" }}</span>
<span>last sync: {{ status.last_sync or "never" }}</span>
</section>
{% if update %}<p class="update" role="status">Set {{ update.set }} version {{ update.version }} arrived at \
{{ update.at }}{% if update.previous %} (was version {{ update.previous }}){% endif %}, without a restart.</p>
{% endif %}
{% if status.last_error %}<p class="warn">Client note: {{ status.last_error }}</p>{% endif %}
{% if problem %}<p class="warn">{{ problem }}</p>{% endif %}
{% for p in prompts %}
<article id="{{ p.id }}">
<h2><code>{{ p.id }}</code> <small>{{ p.set }} v{{ p.version }}</small></h2>
{% if p.description %}<p class="desc">{{ p.description }}</p>{% endif %}
{% if p.error %}<p class="warn">{{ p.error }}</p>{% else %}<pre class="rendered">{{ p.text }}</pre>{% endif %}
<details><summary>sample values</summary><pre>{{ p["values"]|tojson(indent=1) }}</pre></details>
</article>
{% endfor %}
"""
_PAGE = """\
<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Acme support bot (Anvil LIVE demo)</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7fa}
header{background:#1d2330;color:#fff;padding:1rem 2rem}header h1{margin:0;font-size:1.3rem}
header p{margin:.2rem 0 0;color:#c9d0dc}header a{color:#9cc3ff}
main{max-width:60rem;margin:1.5rem auto;padding:0 1rem}
.bar{display:flex;gap:.8rem;flex-wrap:wrap;align-items:center;margin-bottom:1rem}
.badge{padding:.15rem .7rem;border-radius:1rem;font-weight:700;font-size:.85rem}
.accepting{background:#dff3e4;color:#14532d}.frozen{background:#e0ecff;color:#1e3a8a}
.pill{background:#fff;border:1px solid #d8dce4;border-radius:1rem;padding:.1rem .6rem}
.update{background:#fff7d6;border:1px solid #f0d264;padding:.6rem 1rem;border-radius:.4rem}
.warn{background:#fde2e2;color:#7f1d1d;padding:.6rem 1rem;border-radius:.4rem}
article{background:#fff;border:1px solid #d8dce4;border-radius:.5rem;padding:.8rem 1.2rem;margin:.8rem 0}
article h2{font-size:1rem;margin:.2rem 0}article small{color:#5b6475;font-weight:400}
.desc{color:#5b6475;margin:.2rem 0}pre{white-space:pre-wrap;margin:.4rem 0}
.rendered{background:#f4f5f8;padding:.7rem;border-radius:.3rem;font:14px/1.5 ui-monospace,monospace}
</style></head><body>
<header><h1>Acme support bot</h1>
<p>A LIVE application: its prompts come from <code>anvil_client.prompt()</code>, rendered with sample values.
Publish a version in the FORGE{% if forge %} (<a href="{{ forge }}">{{ forge }}</a>){% endif %} and watch it arrive
here. Admin page: <a href="anvil/">/anvil/</a>.</p></header>
<main id="live" aria-live="polite">{% include "fragment" %}</main>
<script>
let last = null;
setInterval(async () => {
  try {
    const response = await fetch("fragment", {cache: "no-store"});
    if (!response.ok) return;
    const html = await response.text();
    if (html !== last) { document.getElementById("live").innerHTML = html; last = html; }
  } catch (error) { /* the demo app restarting: try again next second */ }
}, 1000);
</script>
</body></html>
"""
_ENV = jinja2.Environment(
    loader=jinja2.DictLoader({"fragment": _FRAGMENT, "page": _PAGE}),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def demo_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The demo's own pages: ``/`` (refreshing itself), ``/fragment``, ``/api/prompts``, ``/healthz``."""
    path = environ.get("PATH_INFO", "/")
    if path == "/healthz":
        return _respond(start_response, "200 OK", "application/json", b'{"status": "ok"}')
    if path not in ("/", "/fragment", "/api/prompts"):
        return _respond(start_response, "404 Not Found", "text/plain", b"not found\n")
    model = view_model()
    if path == "/api/prompts":
        body = json.dumps(model, default=str, indent=1).encode()
        return _respond(start_response, "200 OK", "application/json", body)
    if path == "/fragment":
        fragment = _ENV.get_template("fragment").render(**model)
        return _respond(start_response, "200 OK", "text/html; charset=utf-8", fragment.encode())
    page = _ENV.get_template("page").render(**model, forge=model["status"].get("forge_url"))
    return _respond(start_response, "200 OK", "text/html; charset=utf-8", page.encode())


def _respond(start_response: Callable[..., Any], status: str, content_type: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
    return [body]


def make_app() -> Callable[..., Iterable[bytes]]:
    """The demo with the LIVE client's admin page mounted at /anvil/."""
    anvil_client.on_update(remember_update)
    return mount_wsgi(demo_app, "/anvil", AdminPage().wsgi)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if "/fragment" not in self.path:  # the page polls it every second
            super().log_request(code, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = make_app()
    anvil_client.default_client().start()  # bounded wait for the FORGE; serves from disk if it is away
    server = make_server(args.host, args.port, app, server_class=_Server, handler_class=_QuietHandler)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"demo LIVE application on http://{args.host}:{args.port}/ (admin page: /anvil/)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        anvil_client.default_client().close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
