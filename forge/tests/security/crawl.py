"""What a person can do on the FORGE's pages: the forms, htmx requests and links of every page.

:func:`crawl` walks the pages one client sees from the addresses it is given (breadth first, never leaving
the FORGE, never signing out) and returns every :class:`Target`: method, address, route, and the fields
with the values the page offers (hidden inputs, options, buttons' values, textareas' text; fields outside
their form that name it with ``form=``; the form an ``hx-include`` names). Used by the form fuzz and the
Content-Security-Policy tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urljoin, urlsplit

from django.http import HttpResponse
from django.test import Client
from django.urls import Resolver404, resolve

MAX_PAGES = 150  # the security world has about 60 pages
SKIP = ("/static/", "/api/", "/logout/")


@dataclass
class Target:
    method: str  # GET or POST
    path: str  # without the query string
    route: str  # namespace:name, as Django's resolver knows it
    fields: dict[str, list[str]] = field(default_factory=dict)  # name -> the values the page offers
    origin: str = "crawl"


@dataclass
class _Form:
    action: str
    method: str
    fields: dict[str, list[str]] = field(default_factory=dict)

    def add(self, name: str, values: list[str]) -> None:
        self.fields.setdefault(name, []).extend(values)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self.by_id: dict[str, _Form] = {}
        self.htmx: list[tuple[str, str, str | None, _Form | None]] = []  # method, url, hx-include, enclosing form
        self.links: list[str] = []
        self._open: list[_Form] = []
        self._loose: list[tuple[str, str, list[str]]] = []  # (form id, name, values) of fields outside a form
        self._field: tuple[str, str, str | None] | None = None  # the open textarea or select: tag, name, form=
        self._text = ""

    def _place(self, form_id: str | None, name: str, values: list[str]) -> None:
        if form_id:
            self._loose.append((form_id, name, values))
        elif self._open:
            self._open[-1].add(name, values)

    def handle_starttag(self, tag: str, attrs_list: list[tuple[str, str | None]]) -> None:
        attrs = {key: value or "" for key, value in attrs_list}
        for verb in ("get", "post", "put", "patch", "delete"):
            if attrs.get(f"hx-{verb}"):
                enclosing = self._open[-1] if self._open else None
                self.htmx.append((verb.upper(), attrs[f"hx-{verb}"], attrs.get("hx-include"), enclosing))
        if tag == "form":
            form = _Form(attrs.get("action", ""), (attrs.get("method") or "get").upper())
            self.forms.append(form)
            self._open.append(form)
            if attrs.get("id"):
                self.by_id[attrs["id"]] = form
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag == "option" and self._field and self._field[0] == "select" and "value" in attrs:
            self._place(self._field[2], self._field[1], [attrs["value"]])
        name = attrs.get("name")
        if not name:
            return
        if tag == "input":
            checkable = attrs.get("type", "text").lower() in ("checkbox", "radio")
            self._place(attrs.get("form"), name, [attrs.get("value") or ("on" if checkable else "")])
        elif tag == "button":
            self._place(attrs.get("form"), name, [attrs.get("value", "")])
        elif tag in ("textarea", "select"):
            self._field = (tag, name, attrs.get("form"))
            self._text = ""
            if tag == "select":
                self._place(attrs.get("form"), name, [])

    def handle_data(self, data: str) -> None:
        if self._field and self._field[0] == "textarea":
            self._text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._open:
            self._open.pop()
        elif tag in ("textarea", "select") and self._field and self._field[0] == tag:
            if tag == "textarea":
                self._place(self._field[2], self._field[1], [self._text])
            self._field = None

    def close(self) -> None:
        super().close()
        for form_id, name, values in self._loose:
            if form_id in self.by_id:
                self.by_id[form_id].add(name, values)


def _route_of(path: str) -> str | None:
    try:
        return resolve(path).view_name
    except Resolver404:
        return None


def targets_of_page(page_path: str, html: str) -> tuple[list[Target], list[str]]:
    """The targets of one page, and the FORGE addresses it links to."""
    parser = _PageParser()
    parser.feed(html)
    parser.close()
    found: list[Target] = []

    def add(method: str, url: str, fields: dict[str, list[str]]) -> None:
        parts = urlsplit(urljoin(page_path, url))
        if parts.netloc or not parts.path.startswith("/") or parts.path.startswith("/static/"):
            return
        query: dict[str, list[str]] = {}
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(name, []).append(value)
        route = _route_of(parts.path)
        if route is not None:
            found.append(Target(method, parts.path, route, {**query, **fields}))

    for form in parser.forms:
        add(form.method, form.action or page_path, form.fields)
    for method, url, include, enclosing in parser.htmx:
        included = parser.by_id.get(include[1:]) if include and include.startswith("#") else None
        source = included or enclosing
        add(method, url, source.fields if source else {})
    for link in parser.links:
        if "?" in link:
            add("GET", link, {})
    pages = [urljoin(page_path, link).split("#")[0] for link in parser.links]
    return found, [page for page in pages if page.startswith("/") and not page.startswith(SKIP)]


def crawl(client: Client, start: list[str], visited: dict[str, HttpResponse] | None = None) -> list[Target]:
    """The targets of every page reachable from ``start``; ``visited`` (if given) receives each answer."""
    seen: set[str] = set()
    queue = list(start)
    targets: list[Target] = []
    while queue and len(seen) < MAX_PAGES:
        path = queue.pop(0)
        if path.split("?")[0] in seen:
            continue
        seen.add(path.split("?")[0])
        response = client.get(path)
        if visited is not None:
            visited[path] = response
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        found, links = targets_of_page(path.split("?")[0], response.content.decode())
        targets += found
        queue += [link for link in links if link.split("?")[0] not in seen]
    return targets
