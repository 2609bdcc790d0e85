"""Prompts compiled once per bundle: parameter checks, defaults and a renderer, all decided at load.

Each prompt gets one generated Python function (like Jinja2 itself compiles templates to Python) that
reads the variables it needs from the caller's mapping, fills defaults, checks the declared types with
cheap class tests, and renders:

* substitution-only templates (text and ``{{ name }}``) with one f-string of precomputed constant pieces.
  Jinja2 compiles ``{{ name }}`` to ``str(name)`` and joins the pieces; the f-string does the same with
  ``!s``. A value whose class is not exactly str, int, float, bool or None goes through :func:`_text`,
  which also calls ``str()`` and keeps the characters, so the result is the same for every value;
* every other template with the sandboxed Jinja2 environment of :mod:`anvil_client.templates`, compiled once.

Generated code only ever contains identifiers that match ``[A-Za-z_][A-Za-z0-9_]*`` (checked) and
references to constants passed in a closure: template text never becomes code.
"""

from __future__ import annotations

import itertools
import keyword
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from anvil_client._exceptions import InvalidVariable, MissingVariables, TemplateError
from anvil_client._pieces import DEFAULT_LIMITS, RenderLimits, merge_text

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# ``{{ name }}`` with optional ``-`` white space control, as Jinja2's lexer reads it.
_SIMPLE_VARIABLE = re.compile(r"\{\{(-?)\s*([A-Za-z_][A-Za-z0-9_]*)\s*(-?)\}\}")
_NEWLINES = re.compile(r"\r\n|\r|\n")
# Names Jinja2 reads as something else (constants, operators, globals): such templates go to Jinja2.
_NOT_PLAIN_NAMES = frozenset(
    [*keyword.kwlist, "true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if",
     "else", "range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "self", "caller", "varargs",
     "kwargs"]
)
_NUMBER_CLASSES = (int, float)

Renderer = Callable[[Mapping[str, Any]], str]


def _text(value: Any) -> str:
    """``str(value)`` as an exact ``str`` (what ``"".join`` in Jinja2 keeps of a str subclass)."""
    result = str(value)
    return result if result.__class__ is str else str.__str__(result)


def _checker(prompt_id: str, name: str, kind: str | None, required: bool) -> Callable[[Any], Any]:
    """The slow part of a type check, called only when the value's class is not the expected one."""

    def check(value: Any) -> Any:
        if value is None and not required:
            return value
        if kind == "string":
            ok = isinstance(value, str)
        elif kind == "number":
            ok = isinstance(value, _NUMBER_CLASSES) and not isinstance(value, bool)
        elif kind == "boolean":
            ok = isinstance(value, bool)
        elif kind == "list":
            ok = isinstance(value, list | tuple)
        elif kind == "object":
            ok = isinstance(value, Mapping)
        else:
            ok = True
        if not ok:
            raise InvalidVariable(prompt_id, name, kind or "value", value)
        return value

    return check


# The class test that lets the common case skip the checker call.
_FAST_CLASS_TEST = {
    "string": "{v}.__class__ is not str",
    "number": "{v}.__class__ is not int and {v}.__class__ is not float",
    "boolean": "{v}.__class__ is not bool",
    "list": "{v}.__class__ is not list and {v}.__class__ is not tuple",
    "object": "{v}.__class__ is not dict",
}


def simple_pieces(source: str) -> tuple[tuple[str, str], ...] | None:
    """The pieces of a template made only of text and ``{{ name }}``, without importing Jinja2; else None.

    Mirrors Jinja2's lexer for this subset: the first ``{{``, ``{%`` or ``{#`` starts a tag; ``{{-`` strips
    white space before the tag and ``-}}`` after it; newlines in text become ``\\n``. Anything else (comments,
    raw blocks, ``{{+``, filters...) returns None and Jinja2's own parser decides. The property test in
    ``client/tests/test_render.py`` compares both with sandboxed Jinja2.
    """
    pieces: list[tuple[str, str]] = []
    position = 0
    strip_next = False
    for match in _SIMPLE_VARIABLE.finditer(source):
        text = source[position : match.start()]
        if "{{" in text or "{%" in text or "{#" in text or text.endswith("{"):
            return None
        name = match.group(2)
        if name in _NOT_PLAIN_NAMES:
            return None
        if strip_next:
            text = text.lstrip()
        if match.group(1):
            text = text.rstrip()
        if text:
            pieces.append(("text", _NEWLINES.sub("\n", text)))
        pieces.append(("var", name))
        strip_next = bool(match.group(3))
        position = match.end()
    text = source[position:]
    if "{{" in text or "{%" in text or "{#" in text:
        return None
    if strip_next:
        text = text.lstrip()
    if text:
        pieces.append(("text", _NEWLINES.sub("\n", text)))
    return merge_text(pieces)


class _Simple:
    """What :func:`_build_renderer` needs of a compiled substitution-only template."""

    __slots__ = ("pieces", "render", "variables")

    def __init__(self, pieces: tuple[tuple[str, str], ...]) -> None:
        self.pieces = pieces
        self.variables = frozenset(value for kind, value in pieces if kind == "var")
        self.render = None


class CompiledPrompt:
    """One prompt of one bundle, ready to render.

    Compiled on first use, once: a set of 1,000 prompts loads in milliseconds and each prompt pays its
    compilation (about a millisecond) the first time it is rendered. ``render`` is then the compiled
    function itself, so later calls go straight to it. Two threads compiling the same prompt at once both
    produce the same function; either may win, so no lock is needed. A prompt whose template and
    parameters did not change shares the compiled function of the previous version (``share``).
    """

    __slots__ = (
        "_compiled",
        "description",
        "digest",
        "hits",
        "hits_reported",
        "id",
        "limits",
        "metadata",
        "parameters",
        "render",
        "set",
        "source",
        "spec",
        "version",
    )

    def __init__(
        self,
        spec: Any,
        *,
        set_slug: str,
        version: int,
        share: CompiledPrompt | None = None,
        limits: RenderLimits = DEFAULT_LIMITS,
        digest: str = "",
    ) -> None:
        self.spec = spec
        self.digest = digest  # the version's content digest (``anvil.prompt.digest``)
        self.limits = limits
        self.id: str = spec.id
        self.set: str = set_slug
        self.version: int = version
        self.source: str = spec.template
        self.description: str = spec.description
        self.metadata: Mapping[str, Any] = spec.metadata
        self.parameters: tuple[Any, ...] = spec.parameters
        self._compiled: tuple[frozenset[str], bool, Renderer] | None = None
        self.render: Renderer = self._first_render
        # Renders of this prompt in this version: ``next(hits)`` on the hot path (one C call, thread-safe);
        # ``hits_reported`` is how many the FORGE has accepted (see :mod:`anvil_client._signals`).
        self.hits: Iterator[int] = itertools.count()
        self.hits_reported = 0
        if share is not None and share.same_template(spec) and share.limits == limits and share._compiled is not None:
            self._compiled = share._compiled
            self.render = share._compiled[2]

    def same_template(self, spec: Any) -> bool:
        """Whether ``spec`` renders exactly like this prompt (same id, template and parameters)."""
        return bool(self.id == spec.id and self.source == spec.template and self.parameters == spec.parameters)

    def compile(self) -> None:
        """Compile now (idempotent). Raises :class:`TemplateError` when the template cannot be compiled."""
        if self._compiled is not None:
            return
        pieces = simple_pieces(self.source)
        compiled: Any
        if pieces is not None:
            compiled = _Simple(pieces)  # no Jinja2 needed: most prompts never import it
        else:
            from anvil_client import templates

            compiled = templates.compile_template(self.source, prompt_id=self.id, limits=self.limits)
        render = _build_renderer(self.spec, compiled)
        self._compiled = (compiled.variables, compiled.pieces is not None, render)
        self.render = render

    def _first_render(self, values: Mapping[str, Any]) -> str:
        self.compile()
        return self.render(values)

    @property
    def variables(self) -> frozenset[str]:
        """The variables the template reads."""
        self.compile()
        assert self._compiled is not None
        return self._compiled[0]

    @property
    def fast(self) -> bool:
        """Whether the template renders without Jinja2 (substitution only)."""
        self.compile()
        assert self._compiled is not None
        return self._compiled[1]

    def as_dict(self) -> dict[str, Any]:
        """What ``get(id)`` returns."""
        return {
            "id": self.id,
            "set": self.set,
            "version": self.version,
            "template": self.source,
            "description": self.description,
            "parameters": [
                {
                    "name": p.name,
                    "type": p.type,
                    "required": p.required,
                    "default": p.default,
                    "description": p.description,
                }
                for p in self.parameters
            ],
            "variables": sorted(self.variables),
            "metadata": dict(self.metadata),
        }

# Parameter types whose class test above admits only classes the f-string turns into an exact str itself.
_OUTPUT_SAFE = frozenset({"string", "number", "boolean"})


def _build_renderer(spec: Any, compiled: Any) -> Renderer:
    prompt_id: str = spec.id
    declared = {p.name: p for p in spec.parameters}
    if compiled.pieces is not None:
        # Substitution only: every variable the template reads must be there (declared or not).
        names = list(dict.fromkeys(piece for kind, piece in compiled.pieces if kind == "var"))
    else:
        names = list(declared)
    for name in names:
        if not _IDENTIFIER.match(name) or keyword.iskeyword(name):
            raise TemplateError(f"variable name {name!r} cannot be compiled")

    namespace: dict[str, Any] = {
        "_text": _text,
        "_missing": _missing_raiser(prompt_id, spec.parameters, compiled),
    }
    lines = ["def _render(c):"]
    local_of: dict[str, str] = {}
    # Substitution only: a value that passed its parameter's class test (exact str, int or float, bool) needs no
    # text conversion; one that took the checker (a str subclass, None...) may, so the checkers set ``slow``.
    flagged: set[str] = set()
    if compiled.pieces is not None and any(
        declared[name].type in _OUTPUT_SAFE for name in names if name in declared
    ):
        lines.append("    slow = False")
    for index, name in enumerate(names):
        local = f"v{index}"
        local_of[name] = local
        parameter = declared.get(name)
        lines.append("    try:")
        lines.append(f"        {local} = c[{name!r}]")
        lines.append("    except KeyError:")
        if parameter is not None and not parameter.required:
            namespace[f"d{index}"] = parameter.default
            lines.append(f"        {local} = d{index}")
        else:
            lines.append("        _missing(c)")
        kind = parameter.type if parameter is not None else None
        required = parameter.required if parameter is not None else True
        namespace[f"k{index}"] = _checker(prompt_id, name, kind, required)
        test = _FAST_CLASS_TEST.get(kind or "")
        if test is not None:
            lines.append(f"    if {test.format(v=local)}:")
            lines.append(f"        {local} = k{index}({local})")
            if compiled.pieces is not None and kind in _OUTPUT_SAFE:
                lines.append("        slow = True")
                flagged.add(name)
        elif kind is not None:  # a type without a class test: always checked
            lines.append(f"    {local} = k{index}({local})")

    if compiled.pieces is not None:
        parts = []
        converted: set[str] = set()
        for index, (kind, piece) in enumerate(compiled.pieces):
            if kind == "text":
                namespace[f"t{index}"] = piece
                parts.append(f"{{t{index}}}")
            else:
                local = local_of[piece]
                if piece not in converted:  # (once per variable, in the order of first use, after every check)
                    converted.add(piece)
                    # Exact str/int/float/bool/None: str() gives an exact str, the f-string's !s is str().
                    lines.append(
                        f"    if {'slow and ' if piece in flagged else ''}{local}.__class__ is not str and "
                        f"{local}.__class__ is not int and {local}.__class__ is not float and "
                        f"{local}.__class__ is not bool and {local} is not None:"
                    )
                    lines.append(f"        {local} = _text({local})")
                parts.append(f"{{{local}!s}}")
        body = "".join(parts)
        lines.append(f'    return f"{body}"' if parts else '    return ""')
    else:
        namespace["_jinja"] = compiled.render
        fills = [
            f"{name!r}: {local_of[name]}"
            for name in names
            if not declared[name].required
        ]
        if fills:
            # Defaults join the caller's values; checked values are the same objects the caller passed.
            lines.append(f"    c = {{**c, {', '.join(fills)}}}")
        lines.append("    return _jinja(c)")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<anvil prompt {prompt_id}>", "exec"), namespace)  # noqa: S102 - see module docstring
    render: Renderer = namespace["_render"]
    return render


def _missing_raiser(prompt_id: str, parameters: tuple[Any, ...], compiled: Any) -> Callable[[Mapping[str, Any]], None]:
    required = [p.name for p in parameters if p.required]
    if compiled.pieces is not None:
        declared = {p.name for p in parameters}
        required += sorted(
            {piece for kind, piece in compiled.pieces if kind == "var"} - declared
        )

    def missing(values: Mapping[str, Any]) -> None:
        raise MissingVariables(prompt_id, [name for name in required if name not in values])

    return missing
