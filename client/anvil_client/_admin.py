"""An admin page the host application mounts: status, the mode toggle, pins and a manual sync.

One request handler, :meth:`AdminPage.handle`, behind two thin adapters: :meth:`AdminPage.wsgi` and
:meth:`AdminPage.asgi`. Mount it under a prefix of your own (``mount_wsgi`` / ``mount_asgi`` do it for a
plain WSGI or ASGI application; with Starlette or FastAPI, ``app.mount("/anvil", page.asgi)``).

Access needs the secret in ``ANVIL_ADMIN_SECRET`` (or ``secret=``), at least 16 characters: without one the
page answers 503 and says so, never serves. Signing in with the secret sets a session cookie (HMAC-signed,
``HttpOnly``, ``SameSite=Strict``, 12 hours); scripts may send ``Authorization: Bearer <secret>`` instead.
Every form carries a CSRF token derived from the secret and the session; secrets are compared in constant
time. Changing the secret ends every session.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote

from anvil_client._exceptions import AnvilError

logger = logging.getLogger("anvil_client.admin")

SECRET_ENV = "ANVIL_ADMIN_SECRET"
MIN_SECRET_LENGTH = 16
COOKIE = "anvil_admin"
SESSION_SECONDS = 12 * 3600
MAX_BODY_BYTES = 16 * 1024
_FAILURE_WINDOW = 60.0
_MAX_FAILURES = 20
_REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_DONE = {
    "mode-accepting": "Mode set to ACCEPTING: new releases are applied as they arrive.",
    "mode-frozen": "Mode set to FROZEN: new releases are recorded but not applied.",
    "pin": "Pinned.",
    "unpin": "Unpinned: the set follows its releases again.",
    "sync": "Synchronised with the FORGE.",
}
_SECURITY_HEADERS = [
    ("Cache-Control", "no-store"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
     "frame-ancestors 'none'; base-uri 'none'"),
]


@dataclass(frozen=True, slots=True)
class Request:
    """What the handler needs from a request, whatever the server interface. ``path`` is below the mount."""

    method: str
    path: str
    base: str
    headers: Mapping[str, str]
    body: bytes = b""
    query: str = ""
    secure: bool = False


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def all_headers(self) -> list[tuple[str, str]]:
        return [
            ("Content-Type", self.content_type),
            ("Content-Length", str(len(self.body))),
            *_SECURITY_HEADERS,
            *self.headers,
        ]


class AdminPage:
    """The admin page of one LIVE client (the module-level default client unless ``client`` is given).

    ``secret`` defaults to the ``ANVIL_ADMIN_SECRET`` environment variable, read when the page is made.
    """

    def __init__(self, client: Any = None, *, secret: str | None = None, title: str = "Anvil LIVE") -> None:
        self._client = client
        self._secret = (os.environ.get(SECRET_ENV, "") if secret is None else secret).strip()
        self._key = self._secret.encode("utf-8")
        self.title = title
        self._failures: list[float] = []
        self._lock = threading.Lock()
        if not self._secret:
            self.problem: str | None = (
                f"The Anvil admin page is disabled: no secret is configured. Set {SECRET_ENV} "
                f"(at least {MIN_SECRET_LENGTH} characters) in the application's environment."
            )
        elif len(self._secret) < MIN_SECRET_LENGTH:
            self.problem = (
                f"The Anvil admin page is disabled: {SECRET_ENV} must be at least {MIN_SECRET_LENGTH} "
                "characters long."
            )
        else:
            self.problem = None
        if self.problem:
            logger.warning("%s", self.problem)

    @property
    def client(self) -> Any:
        if self._client is None:
            from anvil_client import default_client

            self._client = default_client()
        return self._client

    # -- the one handler ---------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        """Answer one request. Blocking (a sync or a pin may call the FORGE): the ASGI adapter runs it in a thread."""
        if self.problem:
            return _text(503, self.problem)
        path = request.path.rstrip("/") or "/"
        routes: dict[str, tuple[str, Callable[[Request, str], Response]]] = {
            "/": ("GET", self._page),
            "/status.json": ("GET", self._status_json),
            "/login": ("POST", self._login),
            "/logout": ("POST", self._logout),
            "/mode": ("POST", self._mode),
            "/pin": ("POST", self._pin),
            "/unpin": ("POST", self._unpin),
            "/sync": ("POST", self._sync),
        }
        if path not in routes:
            return _text(404, "Not found.")
        method, view = routes[path]
        if request.method == "HEAD" and method == "GET":
            response = self.handle(Request("GET", request.path, request.base, request.headers, b"", request.query))
            response.body = b""
            return response
        if request.method != method:
            return Response(405, b"Method not allowed.\n", "text/plain; charset=utf-8", [("Allow", method)])
        if len(request.body) > MAX_BODY_BYTES:
            return _text(413, "Request body too large.")
        if path == "/login":
            return self._login(request, "")
        bearer = request.headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            if self._throttled():
                return _text(429, "Too many wrong secrets: wait a minute and try again.")
            if not self._matches_secret(bearer[7:].strip()):
                return self._refuse(request, "Wrong secret.")
            return view(request, "")
        session = self._session(request)
        if session is None:
            if method == "GET" and path == "/":
                return self._login_page(request, 401, None)
            return _text(403, "Sign in first: this action needs an admin session.")
        if method == "POST":
            form = _form(request.body)
            if not hmac.compare_digest(form.get("csrf", ""), self._csrf(session)):
                logger.warning("admin page: refused a %s to %s with a wrong CSRF token", method, path)
                return _text(403, "The form expired or did not come from this page (CSRF check failed). Reload it.")
        return view(request, session)

    # -- views -------------------------------------------------------------------------------------------

    def _page(self, request: Request, session: str, *, error: str | None = None, status: int = 200) -> Response:
        query = parse_qs(request.query)
        done = _DONE.get((query.get("done") or [""])[0])
        try:
            state = self.client.status()
        except Exception as exc:  # the page must show something even if the client is broken
            logger.exception("admin page: status() failed")
            state = {"last_error": f"status() failed: {exc}"}
        versions = dict(state.get("versions") or {})
        pins = dict(state.get("pins") or {})
        available = dict(state.get("available") or {})
        sets = sorted(set(versions) | set(pins) | set(available))
        html = _render(
            "page",
            title=self.title,
            base=request.base,
            csrf=self._csrf(session) if session else "",
            state=state,
            mode=str(state.get("mode") or "?"),
            sets=[(s, versions.get(s), pins.get(s), available.get(s)) for s in sets],
            done=done,
            error=error,
            details=json.dumps(state, indent=2, sort_keys=True, default=str),
            bearer=not session,
        )
        return Response(status, html)

    def _status_json(self, request: Request, session: str) -> Response:
        body = json.dumps(self.client.status(), sort_keys=True, default=str).encode()
        return Response(200, body, "application/json")

    def _login(self, request: Request, session: str) -> Response:
        if self._throttled():
            return _text(429, "Too many wrong secrets: wait a minute and try again.")
        if not self._matches_secret(_form(request.body).get("secret", "")):
            return self._refuse(request, "Wrong secret.")
        nonce = secrets.token_urlsafe(18)
        expires = int(time.time()) + SESSION_SECONDS
        value = f"{nonce}.{expires}.{self._sign(f'session:{nonce}:{expires}')}"
        logger.info("admin page: signed in")
        return _redirect(request, "", cookie=_cookie(request, value, SESSION_SECONDS))

    def _logout(self, request: Request, session: str) -> Response:
        return _redirect(request, "", cookie=_cookie(request, "", 0))

    def _mode(self, request: Request, session: str) -> Response:
        mode = _form(request.body).get("mode", "")
        if mode not in ("accepting", "frozen"):
            return self._page(request, session, error=f"Unknown mode {mode!r}: choose accepting or frozen.", status=400)
        return self._act(request, session, f"mode-{mode}", lambda: self.client.set_mode(mode), f"mode {mode}")

    def _pin(self, request: Request, session: str) -> Response:
        form = _form(request.body)
        set_slug, raw = form.get("set", "").strip(), form.get("version", "").strip()
        if not set_slug or not raw.isdigit() or int(raw) < 1:
            error = "To pin, give a set and a version number (1 or more)."
            return self._page(request, session, error=error, status=400)
        version = int(raw)
        what = f"pin {set_slug} {version}"
        return self._act(request, session, "pin", lambda: self.client.pin(set_slug, version), what)

    def _unpin(self, request: Request, session: str) -> Response:
        set_slug = _form(request.body).get("set", "").strip()
        if not set_slug:
            return self._page(request, session, error="To unpin, give a set.", status=400)
        return self._act(request, session, "unpin", lambda: self.client.unpin(set_slug), f"unpin {set_slug}")

    def _sync(self, request: Request, session: str) -> Response:
        return self._act(request, session, "sync", lambda: self.client.sync(host=True), "sync")

    def _act(self, request: Request, session: str, done: str, action: Callable[[], Any], what: str) -> Response:
        try:
            action()
        except AnvilError as exc:
            logger.warning("admin page: %s failed: %s", what, exc)
            return self._page(request, session, error=str(exc), status=400)
        logger.info("admin page: %s", what)
        if not session:  # a script with the bearer secret: no redirect dance
            return Response(200, json.dumps({"ok": True, "done": done}).encode(), "application/json")
        return _redirect(request, f"?done={done}")

    # -- secret, session, CSRF ---------------------------------------------------------------------------

    def _throttled(self) -> bool:
        """Whether too many wrong secrets arrived lately (a brake on guessing; secrets are long anyway)."""
        with self._lock:
            now = time.monotonic()
            self._failures = [t for t in self._failures if now - t < _FAILURE_WINDOW]
            return len(self._failures) >= _MAX_FAILURES

    def _refuse(self, request: Request, message: str) -> Response:
        with self._lock:
            self._failures.append(time.monotonic())
        logger.warning("admin page: refused a wrong secret")
        if request.path.rstrip("/") == "/login":
            return self._login_page(request, 403, message)
        return _text(403, message)

    def _login_page(self, request: Request, status: int, error: str | None) -> Response:
        return Response(status, _render("login", title=self.title, base=request.base, error=error))

    def _matches_secret(self, candidate: str) -> bool:
        return hmac.compare_digest(
            hashlib.sha256(candidate.encode("utf-8")).digest(), hashlib.sha256(self._key).digest()
        )

    def _sign(self, message: str) -> str:
        return hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).hexdigest()

    def _csrf(self, session: str) -> str:
        return self._sign(f"csrf:{session}")

    def _session(self, request: Request) -> str | None:
        """The session nonce from a valid, unexpired cookie, else None."""
        cookie = SimpleCookie()
        try:
            cookie.load(request.headers.get("cookie", ""))
        except Exception:  # a malformed Cookie header is the browser's problem, not ours
            return None
        morsel = cookie.get(COOKIE)
        if morsel is None:
            return None
        parts = morsel.value.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        nonce, expires, mac = parts
        if not hmac.compare_digest(mac, self._sign(f"session:{nonce}:{expires}")) or int(expires) < time.time():
            return None
        return nonce

    # -- adapters ----------------------------------------------------------------------------------------

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The page as a WSGI application (mounted where ``SCRIPT_NAME`` says)."""
        headers = {
            key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(min(length, MAX_BODY_BYTES + 1)) if length > 0 else b""
        request = Request(
            method=environ.get("REQUEST_METHOD", "GET").upper(),
            path=environ.get("PATH_INFO", "") or "/",
            base=environ.get("SCRIPT_NAME", "").rstrip("/"),
            headers=headers,
            body=body,
            query=environ.get("QUERY_STRING", ""),
            secure=environ.get("wsgi.url_scheme") == "https",
        )
        response = self._safely(request)
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", response.all_headers())
        return [response.body]

    async def asgi(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        """The page as an ASGI application (mounted where ``root_path`` says)."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > MAX_BODY_BYTES or not message.get("more_body"):
                break
        root = scope.get("root_path", "") or ""
        path = scope.get("path", "") or "/"
        if root and path.startswith(root):  # Starlette >= 0.33 keeps the full path and sets root_path
            path = path[len(root) :] or "/"
        request = Request(
            method=scope.get("method", "GET").upper(),
            path=path,
            base=root.rstrip("/"),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])},
            body=bytes(body),
            query=scope.get("query_string", b"").decode("latin-1"),
            secure=scope.get("scheme") == "https",
        )
        response = await asyncio.to_thread(self._safely, request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.all_headers()],
            }
        )
        await send({"type": "http.response.body", "body": response.body})

    def _safely(self, request: Request) -> Response:
        try:
            return self.handle(request)
        except Exception:
            logger.exception("admin page: error answering %s %s", request.method, request.path)
            return _text(500, "The Anvil admin page failed; the application's log says why.")


def admin_wsgi_app(client: Any = None, *, secret: str | None = None) -> Callable[..., Iterable[bytes]]:
    """A WSGI application serving the admin page of ``client`` (default: the module-level client)."""
    return AdminPage(client, secret=secret).wsgi


def admin_asgi_app(client: Any = None, *, secret: str | None = None) -> Callable[..., Any]:
    """An ASGI application serving the admin page of ``client`` (default: the module-level client)."""
    return AdminPage(client, secret=secret).asgi


def mount_wsgi(app: Callable[..., Any], prefix: str, admin: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` with ``admin`` answering every path under ``prefix`` (e.g. ``"/anvil"``)."""
    prefix = "/" + prefix.strip("/")

    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "")
        if path == prefix or path.startswith(prefix + "/"):
            environ = {**environ, "SCRIPT_NAME": environ.get("SCRIPT_NAME", "") + prefix}
            environ["PATH_INFO"] = path[len(prefix) :] or "/"
            if path == prefix:  # /anvil -> /anvil/ so relative links resolve
                start_response("308 Permanent Redirect", [("Location", quote(environ["SCRIPT_NAME"]) + "/")])
                return [b""]
            return admin(environ, start_response)
        return app(environ, start_response)

    return dispatch


def mount_asgi(app: Callable[..., Any], prefix: str, admin: Callable[..., Any]) -> Callable[..., Any]:
    """``app`` with ``admin`` answering every HTTP path under ``prefix``; lifespan goes to ``app``."""
    prefix = "/" + prefix.strip("/")

    async def dispatch(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == prefix or path.startswith(prefix + "/")):
            root = scope.get("root_path", "") + prefix
            await admin({**scope, "root_path": root, "path": path[len(prefix) :] or "/"}, receive, send)
            return
        await app(scope, receive, send)

    return dispatch


# -- helpers -----------------------------------------------------------------------------------------------


def _form(body: bytes) -> dict[str, str]:
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {key: values[0] for key, values in parsed.items()}


def _text(status: int, message: str) -> Response:
    return Response(status, (message + "\n").encode("utf-8"), "text/plain; charset=utf-8")


def _redirect(request: Request, suffix: str, *, cookie: str | None = None) -> Response:
    headers = [("Location", quote(request.base + "/", safe="/") + suffix)]
    if cookie:
        headers.append(("Set-Cookie", cookie))
    return Response(303, b"", "text/plain; charset=utf-8", headers)


def _cookie(request: Request, value: str, max_age: int) -> str:
    path = quote(request.base + "/", safe="/")
    secure = "; Secure" if request.secure else ""
    return f"{COOKIE}={value}; Max-Age={max_age}; Path={path}; HttpOnly; SameSite=Strict{secure}"


_ENV: Any = None


def _render(name: str, **context: Any) -> bytes:
    global _ENV
    if _ENV is None:
        import jinja2

        _ENV = jinja2.Environment(
            loader=jinja2.DictLoader({"page": _PAGE, "login": _LOGIN, "base": _BASE}),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
    html: str = _ENV.get_template(name).render(**context)
    return html.encode("utf-8")


_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }} admin</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:52rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.4rem .6rem;border-bottom:1px solid #d8dce4}th{font-weight:600}
.badge{display:inline-block;padding:.1rem .6rem;border-radius:1rem;font-weight:600;font-size:.85rem}
.accepting{background:#dff3e4;color:#14532d}.frozen{background:#e0ecff;color:#1e3a8a}
.ok{background:#dff3e4;padding:.6rem 1rem;border-radius:.4rem}
.error{background:#fde2e2;color:#7f1d1d;padding:.6rem 1rem;border-radius:.4rem}
form.inline{display:inline}button{font:inherit;padding:.3rem .9rem;cursor:pointer}
input{font:inherit;padding:.25rem .4rem}input[type=number]{width:5rem}pre{background:#f4f5f8;padding:1rem;overflow:auto}
:focus-visible{outline:3px solid #2563eb;outline-offset:2px}
</style></head><body><main>{% block main %}{% endblock %}</main></body></html>
"""

_LOGIN = """{% extends "base" %}{% block main %}
<h1>{{ title }} admin</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ base }}/login">
<label for="secret">Admin secret</label>
<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
<p>The secret is the application's <code>ANVIL_ADMIN_SECRET</code>.</p>
{% endblock %}"""

_PAGE = """{% extends "base" %}{% block main %}
<h1>{{ title }} admin</h1>
{% if done %}<p class="ok" role="status">{{ done }}</p>{% endif %}
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<table>
<tr><th scope="row">Mode</th><td><span class="badge {{ mode }}">{{ mode|upper }}</span></td></tr>
<tr><th scope="row">Source</th><td>{{ state.get("source") or "none yet" }}</td></tr>
<tr><th scope="row">Connected to the FORGE</th><td>{{ "yes" if state.get("connected") else "no" }}</td></tr>
<tr><th scope="row">Last sync</th><td>{{ state.get("last_sync") or "never" }}</td></tr>
{% if state.get("last_error") %}
<tr><th scope="row">Last error</th><td>{{ state.get("last_error") }}</td></tr>{% endif %}
</table>
{% if not bearer %}
<h2>Mode</h2>
<form method="post" action="{{ base }}/mode" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
{% if mode == "frozen" %}<input type="hidden" name="mode" value="accepting">
<button type="submit">Accept new releases (ACCEPTING)</button>
{% else %}<input type="hidden" name="mode" value="frozen">
<button type="submit">Freeze: keep the current versions (FROZEN)</button>{% endif %}
</form>
<form method="post" action="{{ base }}/sync" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">Sync now</button>
</form>
<p>ACCEPTING applies each release as it arrives; FROZEN keeps the versions running now (Sync now, or
<code>anvil sync</code>, still takes the newest, in every process of this host). The mode and pins are this
host's, shared by all its processes and kept across restarts.</p>
<h2>Prompt sets</h2>
<table>
<tr><th scope="col">Set</th><th scope="col">Running</th><th scope="col">Newer on the FORGE</th>
<th scope="col">Pinned to</th><th scope="col">Pin</th></tr>
{% for set, version, pin, newer in sets %}
<tr><td>{{ set }}</td><td>{{ version if version is not none else "-" }}</td>
<td>{{ newer if newer is not none else "-" }}</td><td>{{ pin if pin is not none else "-" }}</td>
<td>
<form method="post" action="{{ base }}/pin" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="set" value="{{ set }}">
<label for="pin-{{ loop.index }}">Version</label>
<input id="pin-{{ loop.index }}" name="version" type="number" min="1" required value="{{ pin or version or "" }}">
<button type="submit">Pin</button>
</form>
{% if pin is not none %}<form method="post" action="{{ base }}/unpin" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="set" value="{{ set }}">
<button type="submit">Unpin</button>
</form>{% endif %}
</td></tr>
{% else %}<tr><td colspan="5">No prompt set yet.</td></tr>{% endfor %}
</table>
<form method="post" action="{{ base }}/logout"><input type="hidden" name="csrf" value="{{ csrf }}">
<p><button type="submit">Sign out</button></p></form>
{% endif %}
<h2>Status</h2>
<pre>{{ details }}</pre>
{% endblock %}"""


__all__ = ["AdminPage", "admin_asgi_app", "admin_wsgi_app", "mount_asgi", "mount_wsgi"]
