"""Generated values posted to every form of every page, as every role: the FORGE never answers 5xx.

The forms are found, not listed: the owner's view of the world (``world.py``) is crawled from the home
page (``crawl.py``), and every ``<form>``, every ``hx-post``/``hx-get`` and every link with a query string
becomes a target, with the fields and values a browser would send. Every route of Django's URL resolver is
added too (a POST to each, and a GET to those the crawl did not reach), its address filled from the world
by the names of its parameters (as in ``test_access_matrix.py``; a parameter this file does not know gets
a value of its converter's kind: 1, "x"), so a new page or form is fuzzed without editing this file.

Two passes, each request in a savepoint rolled back afterwards (every request meets the same world):

* a sweep, as the owner (who may do everything, so gets deepest) and as a viewer (who may do nothing):
  each field of each route's forms in turn dropped or replaced by a value known to break careless parsing
  (not a number, negative, too large for the database or for a date, NUL), the other fields as the page
  offers them;
* Hypothesis, as every role: variations of the browser's submission, mostly the page's own values with one
  or two fields dropped, repeated or replaced by garbage (text, unicode, NUL, huge and negative numbers,
  JSON and template fragments), sometimes every field garbled, plus unknown fields.

``ANVIL_FUZZ_EXAMPLES`` sets Hypothesis's examples per target and member role (default 4; a stranger and an
anonymous visitor get half: they are turned away before any parsing). About 90 s of CPU; failures are
reported as found (not shrunk), so a failing run is no longer.
"""

from __future__ import annotations

import copy
import os
import traceback
import uuid
from collections.abc import Iterator
from http.cookies import SimpleCookie
from typing import Any

import pytest
from django.core.cache import cache
from django.db import transaction
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.converters import IntConverter, UUIDConverter
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from anvil_forge.distribution.tokens import failure_limiter
from forge.tests.security.crawl import Target, crawl
from forge.tests.security.world import World

pytestmark = pytest.mark.django_db

ROLES = ["owner", "admin", "editor", "reviewer", "viewer", "stranger", "anonymous"]
EXAMPLES = int(os.environ.get("ANVIL_FUZZ_EXAMPLES", "4"))
SWEEP_ROLES = ("owner", "viewer")
# Each is a classic: int() of a non-number, a negative id, a number past the database's bigint (and past a
# date when taken as days), a NUL (PostgreSQL refuses it in text), an empty and a missing field (None).
BREAKERS = ["x", "-1", "9" * 30, "a\x00b", "", None]
PER_ROUTE = 3  # crawled targets kept per route and method (different field sets or prompt sets first)

NASTY = [
    "", " ", "0", "-1", "-0", "1.5", "1e309", "NaN", "inf", "+1", "1_000", "0x10", "007",
    "2147483648", "9223372036854775808", "-9223372036854775809", "9" * 40, "99999999", "9" * 5000,
    "١٢٣", "²", "ﬁ", "İ", "e\u0301", "\u202e", "\ufeff", "😀" * 3, "a\x00b", "\x00",
    "null", "true", "[]", "{}", '{"a":', "[" * 500, '{"model": "x"}',
    "{{ x }}", "{% for x in y %}", "{{", "}}{%", "<script>alert(1)</script>", "'\"", "../../etc/passwd",
    "a" * 10_000, "\r\n", "a/b", "/", "//evil.example", "production", "approve", "changes", "live", "peer",
]
# Text Django's test client can encode (no lone surrogates).
TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
VALUE = st.one_of(
    st.sampled_from(NASTY),
    TEXT,
    st.integers(min_value=-(2**80), max_value=2**80).map(str),
    st.integers(min_value=-3, max_value=5).map(str),
)


# ---------------------------------------------------------------- every route of the resolver


def _patterns(
    resolver: URLResolver | None = None, namespace: str = "", params: dict[str, Any] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every named route with its parameters' converters, by name (its includes' first)."""
    for entry in (resolver or get_resolver()).url_patterns:
        own = {**(params or {}), **getattr(entry.pattern, "converters", {})}
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _patterns(entry, inner, own)
        elif isinstance(entry, URLPattern) and entry.name:
            yield namespace + entry.name, own


def _fill_values(world: World) -> dict[str, Any]:
    """What to put in each route parameter, by its name."""
    v = world.values
    return {
        "org": v["org"], "organisation": v["org"], "project": v["project"], "prompt_set": "core",
        "set_slug": "core", "key": "welcome.message", "token_id": v["token_id"], "release_id": v["release_id"],
        "reference": v["reference_id"], "set_id": v["set_id"], "number": 1, "environment": "production",
        "peer": "hidden-peer", "rorg": "racme", "rproject": "rproject", "rset": "core",
    }


def _any_value(converter: Any) -> Any:
    """A value of a converter's kind, for a parameter the world has nothing for (the page will likely 404)."""
    if isinstance(converter, IntConverter):
        return 1
    if isinstance(converter, UUIDConverter):
        return uuid.UUID(int=1)
    return "x"


def resolver_targets(world: World) -> list[Target]:
    """A POST and a GET target for every route of the resolver."""
    values = _fill_values(world)
    targets = []
    for name, converters in _patterns():
        kwargs = {param: values.get(param, _any_value(converter)) for param, converter in converters.items()}
        path = reverse(name, kwargs=kwargs)
        targets += [Target("POST", path, name, origin="resolver"), Target("GET", path, name, origin="resolver")]
    return targets


def choose(crawled: list[Target], from_resolver: list[Target]) -> list[Target]:
    """Up to PER_ROUTE crawled targets per (route, method), distinct field sets and prompt sets first; then
    each route's bare POST, and a bare GET of the routes the crawl did not reach."""
    chosen: dict[tuple[str, str], list[Target]] = {}
    seen: set[tuple] = set()
    for target in crawled:
        kwargs = resolve(target.path).kwargs
        key = (target.method, target.route, frozenset(target.fields), kwargs.get("prompt_set"), kwargs.get("number"))
        if key not in seen:
            seen.add(key)
            bucket = chosen.setdefault((target.route, target.method), [])
            if len(bucket) < PER_ROUTE:
                bucket.append(target)
    reached = {route for route, _method in chosen}
    extra = [t for t in from_resolver if t.method == "POST" or t.route not in reached]
    return [t for bucket in chosen.values() for t in bucket] + extra


# ---------------------------------------------------------------- sending


def submissions(target: Target, pool: list[str]) -> st.SearchStrategy[dict[str, list[str]]]:
    """The browser's submission of ``target``, varied."""
    names = sorted(target.fields)

    def offered(name: str) -> st.SearchStrategy[list[str]]:
        values = target.fields[name] or [""]
        return st.sampled_from(values).map(lambda value: [value])

    garbled = st.one_of(st.none(), VALUE.map(lambda v: [v]), st.lists(VALUE, min_size=2, max_size=3))
    extra = st.dictionaries(st.one_of(st.sampled_from(pool), TEXT.filter(bool)), VALUE.map(lambda v: [v]),
                            max_size=3)

    @st.composite
    def one(draw: st.DrawFn) -> dict[str, list[str]]:
        data: dict[str, list[str] | None] = {name: draw(offered(name)) for name in names}
        if names and draw(st.booleans()):  # the page's values with one or two fields spoiled
            for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True)):
                data[name] = draw(garbled)
        else:  # anything goes
            data = {name: draw(st.one_of(offered(name), garbled)) for name in names}
        return {**draw(extra), **{name: value for name, value in data.items() if value is not None}}

    return one()


def _client(world: World, role: str) -> Client:
    client = Client()
    if role == "stranger":
        client.force_login(world.outsider)
    elif role != "anonymous":
        client.force_login(world.team.member(role))
    return client


class _Rollback(Exception):
    pass


def send(client: Client, cookies: SimpleCookie, target: Target, data: dict[str, list[str]]) -> HttpResponse:
    """One request in a savepoint rolled back afterwards, starting from ``cookies`` (a sign-out stays in it)."""
    client.cookies = copy.deepcopy(cookies)
    try:
        with transaction.atomic():
            request = client.get if target.method == "GET" else client.post
            raise _Rollback(request(target.path, data))
    except _Rollback as done:
        return done.args[0]


def _short(data: dict[str, list[str]]) -> str:
    return repr({name[:40]: [v if len(v) <= 60 else f"{v[:40]}…({len(v)} chars)" for v in values]
                 for name, values in data.items()})


def sweep(client: Client, cookies: SimpleCookie, targets: list[Target], role: str) -> list[str]:
    """Each field of each route's crawled forms, in turn, given each of BREAKERS (once per route and field)."""
    problems, done = [], set()
    for target in targets:
        base = {  # the first value that is not empty: a select's first option is often "Choose…"
            name: [next((value for value in values if value), "")]
            for name, values in target.fields.items()
            if name != "csrfmiddlewaretoken"
        }
        for name in base:
            if (target.method, target.route, name) in done:
                continue
            done.add((target.method, target.route, name))
            for breaker in BREAKERS:
                data = {k: v for k, v in base.items() if k != name}
                if breaker is not None:
                    data[name] = [breaker]
                where = f"{role} {target.method} {target.path} (sweep) with {_short(data)}"
                try:
                    status = send(client, cookies, target, data).status_code
                except Exception as exc:
                    problems.append(f"{where}\n  raised {traceback.format_exception_only(exc)[-1].strip()}")
                    break
                if status >= 500:
                    problems.append(f"{where}\n  answered {status}")
                    break
    return problems


def fuzz(
    client: Client, cookies: SimpleCookie, target: Target, role: str, pool: list[str], examples: int = EXAMPLES
) -> str | None:
    """The first failing submission of ``target`` for ``role`` and what went wrong, or None."""
    failure: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(data=submissions(target, pool))
    def one(data: dict[str, list[str]]) -> None:
        where = f"{role} {target.method} {target.path} ({target.origin}) with {_short(data)}"
        try:
            response = send(client, cookies, target, data)
        except Exception as exc:  # the view's own exception: the test client re-raises it
            failure.append(f"{where}\n  raised {traceback.format_exception_only(exc)[-1].strip()}")
            raise
        if response.status_code >= 500:
            failure.append(f"{where}\n  answered {response.status_code}")
        assert not failure

    try:
        one()
    except Exception:
        return failure[-1] if failure else traceback.format_exc(limit=3)
    return None


def _signed_out(client: Client, cookies: SimpleCookie) -> bool:
    return "/login/" in send(client, cookies, Target("GET", "/", "web:home"), {}).get("Location", "")


@pytest.fixture
def quiet_peers(settings):
    """The world's peer is on a closed loopback port: fail at once, and never connect beyond loopback.

    The fuzz fails many tokens and sign-ins from one address: the token failure limiter and the sign-in
    throttle (in the cache) are emptied afterwards, so the tests after it are not answered 429."""
    settings.ANVIL_PEER_TIMEOUT_SECONDS = 0.5
    settings.ANVIL_PEER_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.ANVIL_PEER_PRIVATE_NETWORKS = ["127.0.0.1/32"]
    yield
    failure_limiter.reset()
    cache.clear()


def _crawl_as_owner(world: World) -> list[Target]:
    org = world.values["org"]
    return crawl(_client(world, "owner"), ["/", f"/o/{org}/", "/forges/"])


def test_the_crawl_finds_the_forms_of_the_pages(world, quiet_peers):
    """A guard on the crawl itself: if it stopped finding forms, the fuzz below would fuzz little."""
    targets = _crawl_as_owner(world)
    routes = {(t.method, t.route) for t in targets}
    for expected in [("POST", "web:prompt"), ("POST", "web:prompt_check"), ("POST", "web:prompt_preview"),
                     ("POST", "web:prompt_rename"), ("POST", "web:prompt_delete"), ("POST", "web:tokens"),
                     ("POST", "web:set_submit"), ("POST", "web:set_review"), ("POST", "web:prompt_add"),
                     ("POST", "peering:peer_add"), ("GET", "web:diff"), ("GET", "web:audit")]:
        assert expected in routes, f"the crawl found no {expected[0]} form for {expected[1]}"
    # A set in REVIEW shows its prompts read-only (no Save): take an editable one.
    editor = next(t for t in targets if t.route == "web:prompt" and t.method == "POST" and "save" in t.fields)
    assert {"base_revision", "template", "save", "param-0-name", "metadata"} <= set(editor.fields)
    tokens = next(t for t in targets if t.route == "web:tokens" and t.method == "POST")
    assert f"{world.values['project']}/staging" in tokens.fields["target"]


def test_generated_form_values_never_get_a_server_error_whatever_the_role(world, quiet_peers):
    from_resolver = resolver_targets(world)
    crawled = _crawl_as_owner(world)
    targets = choose(crawled, from_resolver)
    pool = sorted({name for target in targets for name in target.fields})
    problems = []
    for role in ROLES:
        client = _client(world, role)
        cookies = copy.deepcopy(client.cookies)
        if role in SWEEP_ROLES:
            problems += sweep(client, cookies, crawled, role)
        examples = EXAMPLES if role not in ("stranger", "anonymous") else max(1, EXAMPLES // 2)
        for target in targets:
            problem = fuzz(client, cookies, target, role, pool, examples)
            if problem:
                problems.append(problem)
            if role != "anonymous" and _signed_out(client, cookies):  # the fuzz must not go on as a stranger
                problems.append(f"{role}: signed out for good after {target.method} {target.path} (fix the test)")
                client = _client(world, role)
                cookies = copy.deepcopy(client.cookies)
    assert not problems, f"{len(problems)} failures:\n\n" + "\n\n".join(problems)
