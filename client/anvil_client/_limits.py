"""Render limits: every template render ends in bounded time and memory, whatever the template says.

The sandbox keeps a template away from Python's internals; it does not stop ``{% for i in range(100000) %}
{% for j in range(100000) %}`` (ten billion steps) or ``'a' * 10**10`` (ten gigabytes). A prompt reaches
production through review, but the client promises that the host never fails because of what the FORGE
sends, and the FORGE's preview must not hold a worker. So one render is metered:

* **steps**: each loop iteration (and each item a loop's ``if`` tests), each macro or ``{% call %}`` body run,
  each function, method or filter call counts one; at most :attr:`RenderLimits.max_steps`. The filter calls
  a body makes in every run of it are counted together at its top (the same count, earlier);
* **characters**: every string the template creates counts its length (the text of loop and macro bodies
  each time they run, ``{{ }}`` output captured into a value or a macro's text, ``~`` and ``+`` joins, ``*``
  repeats, filter and method results); at most :attr:`RenderLimits.max_chars`, which also bounds the length
  of the rendered prompt (checked before it is joined). A ``{{ }}`` output whose text goes straight to the
  rendered prompt is a string that exists already (the application's, or one counted when it was made) or
  a number, and is counted by that final check; any other value there is sized before ``str()`` makes its
  text. Operations that
  could allocate much more than their inputs in one step (``*``, ``**``, ``%`` widths, ``center``,
  ``indent``, ``replace``, ``join``, format widths...) are sized *before* they run, so the limit holds for
  memory, not only for the result;
* **time**: checked every 32 steps, at most :attr:`RenderLimits.max_seconds` from the first check.

A render over a limit raises :class:`~anvil_client.RenderLimitExceeded` naming the limit. Steps and
characters are counted the same way everywhere, so the FORGE's preview refuses what a LIVE instance would
refuse with the same values; only the time limit depends on the machine.

How: the parse tree is rewritten before compilation (a metering call at the top of every loop, macro and
call body; output expressions and ``~`` joins go through metering filters, and a small subclass of Jinja2's
code generator compiles the ``str`` test of outputs that go straight to the result in place), the sandbox
intercepts the ``+ * ** %`` operators and every call, and every filter is wrapped. Template text never
becomes code. Where the time of a metered render goes, and what each of these costs: ``docs/benchmarks.md``
("Hot path").
"""

from __future__ import annotations

import re
import time
import types
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any

from jinja2 import filters as jinja_filters
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import pass_context

from anvil_client._exceptions import RenderLimitExceeded
from anvil_client._pieces import DEFAULT_LIMITS, RenderLimits

_CLOCK_EVERY_MASK = 31  # the clock is read every 32 steps
_UNSTEPPED = "anvil_unstepped:"  # the filters whose steps a body counts at its top (see meter_tree)
_BARE = "anvil_bare:"  # the same, called with the value only
__all__ = ["DEFAULT_LIMITS", "LimitedSandbox", "RenderLimits", "meter_tree", "metered"]


class _Meter:
    """What one render has used so far.

    One class per :class:`RenderLimits` (:func:`_meter_type`) holds the limits as class attributes, so making
    a meter for a render is one object allocation, with no ``__init__`` to run.
    """

    limits: RenderLimits = DEFAULT_LIMITS
    max_steps: int = DEFAULT_LIMITS.max_steps
    max_chars: int = DEFAULT_LIMITS.max_chars
    steps: int = 0
    chars: int = 0
    deadline: float | None = None

    def step(self) -> None:
        self.steps += 1
        if self.steps & _CLOCK_EVERY_MASK == 0 or self.steps > self.max_steps:
            self.check_steps(self.steps & _CLOCK_EVERY_MASK == 0)

    def check_steps(self, clock: bool) -> None:
        """The slow half of :meth:`step` (hot callers inline the increment and call this when it may fail).

        ``clock``: the count passed a multiple of 32, so the clock is read.
        """
        if clock:
            self._check_time()
        if self.steps > self.max_steps:
            raise RenderLimitExceeded(
                "steps", f"the template ran more than {self.max_steps:,} steps (loop iterations and calls)"
            )

    def _check_time(self) -> None:
        # The clock starts at the first check: a render of fewer steps reads no clock at all (the hot path's
        # promise), and each of those few steps is bounded by the character limit.
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.limits.max_seconds
        elif now > self.deadline:
            raise RenderLimitExceeded("time", f"the template took longer than {self.limits.max_seconds:g} s to render")

    def spend(self, chars: int) -> None:
        self.chars += chars
        if self.chars > self.max_chars:
            raise RenderLimitExceeded(
                "size", f"the template would create more than {self.max_chars:,} characters of text"
            )


_METER_TYPES: dict[RenderLimits, type[_Meter]] = {DEFAULT_LIMITS: _Meter}


def _meter_type(limits: RenderLimits) -> type[_Meter]:
    """The meter class for ``limits`` (made once per distinct limits)."""
    meter_type = _METER_TYPES.get(limits)
    if meter_type is None:
        meter_type = type(
            "_Meter", (_Meter,), {"limits": limits, "max_steps": limits.max_steps, "max_chars": limits.max_chars}
        )
        _METER_TYPES[limits] = meter_type
    return meter_type


_CURRENT: ContextVar[_Meter | None] = ContextVar("anvil_render_meter", default=None)


def _meter() -> _Meter:
    """The meter of the render in progress; outside a metered render, a fresh one (limits apply per call)."""
    return _CURRENT.get() or _Meter()


def metered(
    render: Callable[[Any], Iterable[str]],
    limits: RenderLimits,
    first_steps: int = 0,
    *,
    new_context: Callable[..., Any],
    translate: Callable[[Exception, Mapping[str, Any]], Exception],
) -> Callable[[Mapping[str, Any]], str]:
    """A compiled template's render function, each call under its own meter (one call: this is the hot path).

    ``render`` is the template's root render function and ``new_context`` makes its context from the values
    (any mapping);
    ``first_steps``: the filter calls the template makes at its top level in every render (see
    :func:`meter_tree`), counted before it starts; ``translate`` turns any other error of the render into the
    one to raise (:class:`RenderLimitExceeded` passes as it is).
    """
    new_meter = _meter_type(limits)

    def run(values: Mapping[str, Any]) -> str:
        meter = new_meter()
        if first_steps:
            meter.steps = first_steps
            if first_steps > meter.max_steps:
                meter.check_steps(False)
        token = _CURRENT.set(meter)
        try:
            pieces = list(render(new_context(values)))
        except RenderLimitExceeded:
            raise
        except Exception as exc:
            raise translate(exc, values) from exc
        finally:
            _CURRENT.reset(token)
        if sum(map(len, pieces)) > limits.max_chars:  # before the text is made
            raise RenderLimitExceeded("size", f"the prompt would be longer than {limits.max_chars:,} characters")
        return "".join(pieces)

    return run


# --- sizes -------------------------------------------------------------------------------------------------

_SCALARS = (int, float, bool, type(None))
_SEQUENCES = (str, bytes, bytearray, list, tuple)


def _text_size(value: Any, budget: int, depth: int = 0) -> int:
    """About how many characters ``str(value)`` makes; stops counting once past ``budget``.

    Containers are walked (a list of a thousand references to one long string prints it a thousand times);
    objects of other types are the host's own values and count by their ``str`` only if they are strings.
    """
    if isinstance(value, str | bytes | bytearray):
        return len(value)
    if isinstance(value, _SCALARS):
        return 8
    if depth > 30:
        return 0
    if isinstance(value, Mapping):
        items: Iterable[Any] = (part for pair in value.items() for part in pair)
    elif isinstance(value, list | tuple | set | frozenset):
        items = value
    else:
        return 0
    size = 2
    for item in items:
        size += _text_size(item, budget - size, depth + 1) + 2
        if size > budget:
            break
    return size


def _charge_text(meter: _Meter, value: Any) -> None:
    meter.spend(_text_size(value, meter.limits.max_chars - meter.chars + 1))


def _width(meter: _Meter, value: Any, what: str) -> int:
    """A width or count argument, refused when it alone would pass the character limit."""
    if isinstance(value, int) and value > meter.limits.max_chars - meter.chars:
        raise RenderLimitExceeded(
            "size", f"{what} {value:,} would take the render past its limit of {meter.limits.max_chars:,} characters"
        )
    return value if isinstance(value, int) else 0


def _predict_replace(meter: _Meter, text: str | bytes | bytearray, old: Any, new: Any, count: Any) -> None:
    textual = isinstance(text, str)
    if not (isinstance(old, _SEQUENCES[:3]) and isinstance(new, _SEQUENCES[:3])) or (
        isinstance(old, str) != textual or isinstance(new, str) != textual
    ):
        return  # the method itself refuses mixed text and bytes
    occurrences = len(text) + 1 if not old else text.count(old)  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        occurrences = min(occurrences, count)
    meter.spend(len(text) + occurrences * max(len(new) - len(old), 0))


def _materialise(value: Any) -> Any:
    """An iterable as a list, so its size can be known before it is joined (strings stay strings)."""
    if isinstance(value, str | list | tuple | Mapping):
        return value
    return list(value)


def _predict_join(meter: _Meter, separator: Any, items: Any) -> None:
    if not hasattr(items, "__len__"):
        return
    size = _text_size(items, meter.limits.max_chars - meter.chars + 1)
    if isinstance(separator, _SEQUENCES[:3]) and len(items) > 1:
        size += len(separator) * (len(items) - 1)
    meter.spend(size)


_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_NUMBERS = re.compile(r"\d+")


def _predict_printf(meter: _Meter, template: str, values: Any) -> None:
    padding = 0
    for width, precision in _PRINTF_SPEC.findall(template):
        for number in (width, precision):
            if number == "*":
                raise RenderLimitExceeded("size", "'*' widths in % formatting are not allowed in templates")
            if number:
                padding += _width(meter, int(number), "a % format width of")
    meter.spend(len(template) + padding + _text_size(values, meter.limits.max_chars - meter.chars + 1))


# --- filters, calls and operators --------------------------------------------------------------------------

# Filters that turn their input into text (a container into its repr).
_STRINGIFYING_FILTERS = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "pprint", "replace", "safe",
    "string", "striptags", "title", "tojson", "trim", "truncate", "upper", "urlencode", "urlize", "wordcount",
    "wordwrap",
})


# Filters sized before they run; of those, the ones whose whole result was charged then.
_SIZED_FILTERS = frozenset({"center", "indent", "wordwrap", "replace", "join", "format", "batch", "slice"})
_PREDICTED_FILTERS = frozenset({"center", "indent", "wordwrap", "replace", "join", "format"})


def _before_filter(meter: _Meter, name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Size what a filter is about to make; returns the value to pass on (joins get a list)."""

    def arg(position: int, keyword: str, default: Any) -> Any:
        return args[position] if len(args) > position else kwargs.get(keyword, default)

    text = value if isinstance(value, str) else ""
    if name == "center":
        meter.spend(max(_width(meter, arg(0, "width", 80), "a center width of"), len(text)))
    elif name == "indent":
        width = arg(0, "width", 4)
        per_line = len(width) if isinstance(width, str) else _width(meter, width, "an indent width of")
        meter.spend(len(text) + (text.count("\n") + 1) * per_line)
    elif name == "wordwrap":
        width = arg(0, "width", 79)
        wrapstring = arg(2, "wrapstring", None) or "\n"
        if isinstance(width, int) and width > 0 and isinstance(wrapstring, str):
            meter.spend(len(text) + (len(text) // width + text.count("\n") + 1) * len(wrapstring))
    elif name == "replace":
        _predict_replace(meter, str(value) if not isinstance(value, str) else value,
                         arg(0, "old", None), arg(1, "new", None), arg(2, "count", None))
    elif name == "join":
        value = _materialise(value)
        _predict_join(meter, arg(0, "d", ""), value)
    elif name == "format":
        _predict_printf(meter, text, args or kwargs)
    elif name in ("batch", "slice"):
        count = arg(0, "linecount" if name == "batch" else "slices", 1)
        if isinstance(count, int) and count > meter.limits.max_steps:
            raise RenderLimitExceeded(
                "steps", f"{name}({count:,}) is more than the limit of {meter.limits.max_steps:,} steps"
            )
    return value


# Jinja2 filters that are ``soft_str(value).<method>()`` (checked against Jinja2's own functions when wrapped).
_STR_METHOD_FILTERS: dict[str, Callable[[str], str]] = {
    "upper": str.upper, "lower": str.lower, "capitalize": str.capitalize, "trim": str.strip,
}
_JINJA_FILTERS: dict[str, Any] = {
    "upper": jinja_filters.do_upper, "lower": jinja_filters.do_lower, "capitalize": jinja_filters.do_capitalize,
    "trim": jinja_filters.do_trim,
}


def _bare_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any] | None:
    """For ``upper``, ``title``, ``length``... called with no arguments in every run of a body: the unstepped
    wrapper with a fixed signature (no ``*args``/``**kwargs`` to pack); None for filters sized before they run
    or given more than the value (those keep the general wrapper).
    """
    if getattr(function, "jinja_pass_arg", None) is not None or name in _SIZED_FILTERS:
        return None
    stringifies = name in _STRINGIFYING_FILTERS
    str_method = _STR_METHOD_FILTERS.get(name) if function is _JINJA_FILTERS.get(name) else None

    @pass_context
    def bare_filter(context: Any, value: Any) -> Any:
        meter = _CURRENT.get() or _Meter()
        if value.__class__ is str:
            result = function(value) if str_method is None else str_method(value)
        else:
            if stringifies:
                _charge_text(meter, value)
            result = function(value)
        if result.__class__ is str or isinstance(result, str):
            meter.chars += len(result)
            if meter.chars > meter.max_chars:
                meter.spend(0)
        return result

    bare_filter.__name__ = getattr(function, "__name__", name)
    bare_filter.__doc__ = function.__doc__
    return bare_filter


def _metered_filter(name: str, function: Callable[..., Any], stepped: bool = True) -> Callable[..., Any]:
    """``function`` with a step, a size check before and the size of a text result after.

    Every wrapped filter takes the template context, so Jinja2 never runs it at compile time (where no
    meter would see it); the original filter gets whatever it asked for (context, eval context, environment).
    Without ``stepped``, the step is left to the caller: :func:`meter_tree` counts the filter calls a body
    always makes in the step at the top of that body.
    """
    step = 1 if stepped else 0
    passes = getattr(getattr(function, "jinja_pass_arg", None), "name", None)
    stringifies = name in _STRINGIFYING_FILTERS
    sized = name in _SIZED_FILTERS
    charged_after = name not in _PREDICTED_FILTERS

    str_method = _STR_METHOD_FILTERS.get(name)
    if str_method is not None and function is _JINJA_FILTERS.get(name):
        # ``upper``, ``lower``, ``capitalize``, ``trim``: Jinja2's are ``soft_str(value).<method>()``, which for
        # an exact ``str`` and no arguments is the method itself: called directly, the filter costs one call.
        @pass_context
        def str_filter(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            meter = _CURRENT.get() or _Meter()
            if step:
                meter.steps = steps = meter.steps + 1
                if steps & _CLOCK_EVERY_MASK == 0 or steps > meter.max_steps:
                    meter.check_steps(steps & _CLOCK_EVERY_MASK == 0)
            if value.__class__ is str and not args and not kwargs:
                result = str_method(value)
            else:
                if value.__class__ is not str:
                    _charge_text(meter, value)
                result = function(value, *args, **kwargs)
            if result.__class__ is str or isinstance(result, str):  # Markup from |safe, |escape... too
                meter.chars += len(result)
                if meter.chars > meter.max_chars:
                    meter.spend(0)
            return result

        str_filter.__name__ = getattr(function, "__name__", name)
        str_filter.__doc__ = function.__doc__
        return str_filter

    if passes is None and not sized:
        # The everyday filters (``title``, ``length``, ``default``...): the same metering as below, without the
        # branches that cannot apply, and a plain call when the template passed no arguments.
        @pass_context
        def plain_filter(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
            meter = _CURRENT.get() or _Meter()
            if step:
                meter.steps = steps = meter.steps + 1
                if steps & _CLOCK_EVERY_MASK == 0 or steps > meter.max_steps:
                    meter.check_steps(steps & _CLOCK_EVERY_MASK == 0)
            if value.__class__ is not str and stringifies:
                _charge_text(meter, value)
            result = function(value, *args, **kwargs) if args or kwargs else function(value)
            if result.__class__ is str or isinstance(result, str):  # Markup from |safe, |escape... too
                meter.chars += len(result)
                if meter.chars > meter.max_chars:
                    meter.spend(0)
            return result

        plain_filter.__name__ = getattr(function, "__name__", name)
        plain_filter.__doc__ = function.__doc__
        return plain_filter

    @pass_context
    def filter_(context: Any, value: Any, *args: Any, **kwargs: Any) -> Any:
        meter = _CURRENT.get() or _Meter()
        if step:
            meter.steps = steps = meter.steps + 1
            if steps & _CLOCK_EVERY_MASK == 0 or steps > meter.max_steps:
                meter.check_steps(steps & _CLOCK_EVERY_MASK == 0)
        if stringifies and value.__class__ is not str:
            _charge_text(meter, value)
        if sized:
            value = _before_filter(meter, name, value, args, kwargs)
        if passes is None:
            result = function(value, *args, **kwargs)
        elif passes == "context":
            result = function(context, value, *args, **kwargs)
        elif passes == "eval_context":
            result = function(context.eval_ctx, value, *args, **kwargs)
        else:
            result = function(context.environment, value, *args, **kwargs)
        if charged_after and (result.__class__ is str or isinstance(result, str)):
            meter.chars += len(result)
            if meter.chars > meter.max_chars:
                meter.spend(0)
        return result

    filter_.__name__ = getattr(function, "__name__", name)
    filter_.__doc__ = function.__doc__
    return filter_


_METHOD_TYPES = (types.MethodType, types.BuiltinMethodType)
_WIDENING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


def _before_method(
    meter: _Meter, text: str | bytes | bytearray, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Size what a ``str`` (or ``bytes``) method is about to make; returns the arguments to pass on."""
    if name in _WIDENING_METHODS and args:
        meter.spend(max(_width(meter, args[0], f"a {name} width of"), len(text)))
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        tab = "\t" if isinstance(text, str) else b"\t"
        meter.spend(len(text) + text.count(tab) * _width(meter, tabsize, "a tab size of"))  # type: ignore[arg-type]
    elif name == "replace" and len(args) >= 2:
        _predict_replace(meter, text, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args:
        items = _materialise(args[0])
        _predict_join(meter, text, items)
        args = (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        meter.spend(len(text) * max(longest, 1))
    return args


class _MeteredFormatter(SandboxedFormatter):
    """``str.format`` in the sandbox, with widths and the text of each field counted."""

    def format_field(self, value: Any, format_spec: str) -> Any:
        meter = _meter()
        for number in _FORMAT_NUMBERS.findall(format_spec):
            meter.spend(_width(meter, int(number), "a format width of"))
        _charge_text(meter, value)
        return super().format_field(value, format_spec)


class _MeteredEscapeFormatter(_MeteredFormatter, SandboxedEscapeFormatter):
    pass


class _MeteredCodeGenerator(CodeGenerator):
    """Jinja2's code generator, with the ``str`` test of streamed outputs compiled in (no call for text)."""

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:
        if node.name != "anvil_streamed" or node.node is None:
            super().visit_Filter(node, frame)
            return
        # A ``{{ }}`` output whose text goes straight to the render's result: a ``str`` there is a reference
        # to a string that exists already (the application's, or one a metered operation made and counted),
        # and :func:`metered` checks the total before joining; an ``int`` makes a text bounded by its bits.
        # Only other values go through :func:`_text_filter`, which sizes them before ``str`` makes their
        # text. Compiled in as ``v if (v := <expression>).__class__ is str or ... else t_N(v)``, so text and
        # numbers cost no call; ``_anvil_v`` is a local of the generated function, used only right after it
        # is assigned.
        self.write("(_anvil_v if (_anvil_v := ")
        self.visit(node.node, frame)
        self.write(
            f").__class__ is str or _anvil_v.__class__ is int else {self.filters[node.name]}(_anvil_v))"
        )


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with render limits (see the module docstring)."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})
    code_generator_class = _MeteredCodeGenerator

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        originals = dict(self.filters)
        self.filters = {name: _metered_filter(name, function) for name, function in originals.items()}
        # Called where the template calls a filter in every run of a body (see meter_tree), the step is counted
        # at the top of the body; filters called any other way (``map('upper')``...) count their own.
        self.filters.update(
            {_UNSTEPPED + name: _metered_filter(name, function, stepped=False) for name, function in originals.items()}
        )
        for name, function in originals.items():
            bare = _bare_filter(name, function)
            if bare is not None:
                self.filters[_BARE + name] = bare
        self.filters["anvil_step"] = _step_filter
        self.filters["anvil_text"] = _text_filter
        self.filters["anvil_streamed"] = _text_filter  # the other values of streamed outputs (see below)
        self.filters["anvil_join"] = _join_filter
        self.globals["lipsum"] = _limited_lipsum(self.globals["lipsum"])  # type: ignore[arg-type]  # Jinja2's

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A template's globals as one plain dict (this environment's, then the template's own).

        Jinja2 returns a ``ChainMap`` so later changes to the environment's globals show in compiled templates;
        this environment's globals are set once, in ``__init__``. Every render copies the globals into its
        context, and copying a ``ChainMap`` goes through its Python ``__iter__`` and ``__getitem__``: ~1.5 us
        per render on a quiet machine, more than the render limits cost on a 400-character template.
        """
        return {**self.globals, **(d or {})}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        meter = _meter()
        limits = meter.limits
        if operator == "*":
            if isinstance(left, int) and not isinstance(right, int):
                left, right = right, left
            if isinstance(right, int) and not isinstance(right, bool):
                if isinstance(left, str | bytes | bytearray | list | tuple):
                    if right > 0:
                        meter.spend(_text_size(left, limits.max_chars - meter.chars + 1) * right)
                elif isinstance(left, int) and left.bit_length() + right.bit_length() > limits.max_int_bits:
                    raise _too_many_bits(limits)
        elif operator == "**":
            if (
                isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1
                and left.bit_length() * right > limits.max_int_bits
            ):
                raise _too_many_bits(limits)
        elif operator == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
                budget = limits.max_chars - meter.chars + 1
                meter.spend(_text_size(left, budget) + _text_size(right, budget))
        elif operator == "%" and isinstance(left, _SEQUENCES[:3]):
            _predict_printf(meter, left if isinstance(left, str) else left.decode("latin-1"), right)
        return self.binop_table[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        meter = _meter()
        meter.step()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        predicted = False
        if isinstance(owner, str | bytes | bytearray):
            args = _before_method(meter, owner, name, args, kwargs)
            predicted = name in _WIDENING_METHODS or name in ("expandtabs", "replace", "join", "translate")
        result = super().call(__context, __obj, *args, **kwargs)
        # A macro's or recursive loop's text was counted as its body ran.
        if isinstance(result, str) and not predicted and not isinstance(__obj, Macro | LoopContext):
            meter.spend(len(result))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        kind = value.__class__
        if kind not in _METHOD_TYPES:  # Jinja2's own first test (both types are final), without its call
            return None
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        template: str = value.__self__
        formatter: _MeteredFormatter
        if hasattr(template, "__html__"):  # markupsafe.Markup (from |safe): format escapes, as Jinja2's does
            formatter = _MeteredEscapeFormatter(self, escape=template.escape)  # type: ignore[attr-defined]
        else:
            formatter = _MeteredFormatter(self)
        is_format_map = value.__name__ == "format_map"

        def format_(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                return type(template)(formatter.vformat(template, (), args[0]))
            return type(template)(formatter.vformat(template, args, kwargs))

        format_.__name__ = value.__name__
        return format_


def _too_many_bits(limits: RenderLimits) -> RenderLimitExceeded:
    return RenderLimitExceeded("size", f"the template would compute a number of more than {limits.max_int_bits:,} bits")


def _limited_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    def limited(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        meter = _meter()
        meter.spend(_width(meter, n, "lipsum of") * _width(meter, max, "lipsum of") * 12)
        return lipsum(n, html, min, max)

    return limited


@pass_context
def _step_filter(context: Any, chars: int, count: int = 1) -> bool:
    """Put at the top of every loop, macro and call body: its steps (one, and one per filter call the body
    always makes, see :func:`meter_tree`) and the text the body writes.

    It takes the context only so that Jinja2 never folds it at compile time.
    """
    meter = _CURRENT.get() or _Meter()
    before = meter.steps
    meter.steps = steps = before + count
    if (steps ^ before) > _CLOCK_EVERY_MASK or steps > meter.max_steps:  # passed a multiple of 32, or the limit
        meter.check_steps((steps ^ before) > _CLOCK_EVERY_MASK)
    if chars:
        meter.chars += chars
        if meter.chars > meter.max_chars:
            meter.spend(0)
    return True


def _text_filter(value: Any) -> str:
    """Wraps every ``{{ }}`` output whose text is not streamed to the result: counts it before ``str`` makes it.

    It may run at compile time on a constant (Jinja2 folds constants): then under a meter of its own.
    """
    meter = _CURRENT.get() or _Meter()
    kind = value.__class__
    if kind is str:
        meter.chars += len(value)
        if meter.chars <= meter.max_chars:
            return value  # type: ignore[no-any-return]
        meter.spend(0)
    if kind is int or kind is float or kind is bool or value is None:  # what _text_size counts for a scalar
        meter.chars += 8
        if meter.chars > meter.max_chars:
            meter.spend(0)
        return str(value)
    _charge_text(meter, value)
    return str(value)


def _join_filter(values: list[Any]) -> str:
    """Replaces ``a ~ b``: counts the joined text before it is made."""
    meter = _meter()
    budget = meter.limits.max_chars - meter.chars + 1
    meter.spend(sum(_text_size(value, budget) for value in values))
    return "".join([str(value) for value in values])


# --- the parse tree ----------------------------------------------------------------------------------------

_REPEATED = (nodes.For, nodes.Macro, nodes.CallBlock)
_REPEATED_OR_CAPTURED = (*_REPEATED, nodes.FilterBlock, nodes.AssignBlock)
_CAPTURING = (*_REPEATED_OR_CAPTURED, nodes.Block)  # a ``For`` only when recursive


def meter_tree(tree: nodes.Template, environment: LimitedSandbox) -> tuple[nodes.Template, int]:
    """Rewrite ``tree`` in place so the render is metered (see the module docstring).

    Returns the tree and the steps of the filter calls the template makes at its top level in every render,
    for :func:`metered` to count at the start.
    """
    # A filter the template calls in every run of a body (the top level, a loop's, a macro's or a call
    # block's body: not under an ``if``, either side of an inline ``if``, the right of ``and``/``or``, a loop's
    # ``else`` or its item test, a default argument or a block) counts its step at the top of that body, with
    # the body's own: the same count, one call fewer each time. Filters called otherwise count their own.
    first_steps = _count_unconditional_filters(tree.body, environment)
    repeated: list[nodes.For | nodes.Macro | nodes.CallBlock] = list(tree.find_all(_REPEATED))
    for node in repeated:
        count = 1 + _count_unconditional_filters(node.body, environment)
        node.body.insert(0, nodes.ExprStmt(_step(_static_text(node.body), count), lineno=node.lineno))
        if isinstance(node, nodes.For) and node.test is not None:
            node.test = nodes.And(_step(0), node.test, lineno=node.lineno)
    # Outputs that may run many times, or whose text is captured into a value, count every expression.
    # Elsewhere an output runs at most once and lands in the render's result, whose total length
    # :func:`metered` checks before joining it: there a bare name the template never assigns (a value of
    # the application's, as the substitution fast path prints them) needs no wrapper.
    inner = {id(output) for node in tree.find_all(_REPEATED_OR_CAPTURED) for output in node.find_all(nodes.Output)}
    # Outputs whose text goes straight to the render's result (not into a macro's, block's, recursive loop's
    # or captured text): a ``str`` there is a reference to a string that exists already, and :func:`metered`
    # checks the total before joining, so only other values need sizing before ``str`` (see
    # :func:`_streamed_text_filter`).
    captured = {
        id(output)
        for node in tree.find_all(_CAPTURING)
        if not isinstance(node, nodes.For) or node.recursive
        for output in node.find_all(nodes.Output)
    }
    assigned = {name.name for name in tree.find_all(nodes.Name) if name.ctx != "load"}
    assigned.update(macro.name for macro in tree.find_all(nodes.Macro))
    for output in list(tree.find_all(nodes.Output)):
        once = id(output) not in inner
        streamed = id(output) not in captured
        output.nodes = [
            child
            # Literal text is bounded by the template (or counted by its loop); a ``~`` join counts itself.
            if isinstance(child, nodes.TemplateData | nodes.Concat)
            or (once and isinstance(child, nodes.Name) and child.name not in assigned)
            # A streamed filter result that is always text or a count: the filter counted the text it made.
            or (streamed and isinstance(child, nodes.Filter) and _plain_name(child.name) in _TEXT_RESULT_FILTERS)
            else _filter(child, "anvil_streamed" if streamed else "anvil_text")
            for child in output.nodes
        ]
    _replace_joins(tree)
    tree.set_environment(environment)
    return tree, first_steps


# Filters whose result is always a str (or Markup) that their wrapper counted, before or after, or an int.
_TEXT_RESULT_FILTERS = frozenset({
    "capitalize", "center", "count", "e", "escape", "filesizeformat", "forceescape", "format", "indent", "join",
    "length", "lower", "pprint", "replace", "string", "striptags", "title", "tojson", "trim", "truncate", "upper",
    "urlencode", "urlize", "wordcount", "wordwrap",
})


def _plain_name(name: str) -> str:
    """A filter's name without the prefix :func:`_count_unconditional_filters` gave it."""
    return name.rpartition(":")[2]


def _count_unconditional_filters(body: list[nodes.Node], environment: LimitedSandbox) -> int:
    """Mark the filter calls made in every run of ``body`` as counted by the body (see :func:`meter_tree`).

    Nested loop, macro, call block and block bodies are their own; only what runs whenever ``body`` runs is
    marked: the test of an ``if`` and of an inline ``if``, the left of ``and``/``or``, a loop's iterable, a call
    block's call, and everything else that is not a branch.
    """
    count = 0
    pending: list[nodes.Node] = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, nodes.Filter) and (_UNSTEPPED + node.name) in environment.filters:
            bare = not (node.args or node.kwargs or node.dyn_args or node.dyn_kwargs)
            node.name = (_BARE if bare and (_BARE + node.name) in environment.filters else _UNSTEPPED) + node.name
            count += 1
        if isinstance(node, nodes.Macro | nodes.Block):
            continue
        if isinstance(node, nodes.For):
            pending.append(node.iter)
        elif isinstance(node, nodes.CallBlock):
            pending.append(node.call)
        elif isinstance(node, nodes.If | nodes.CondExpr):
            pending.append(node.test)
        elif isinstance(node, nodes.And | nodes.Or):
            pending.append(node.left)
        else:
            pending.extend(node.iter_child_nodes())
    return count


def _step(chars: int, count: int = 1) -> nodes.Filter:
    step = _filter(nodes.Const(chars), "anvil_step")
    if count != 1:
        step.args.append(nodes.Const(count))
    return step


def _filter(node: nodes.Expr, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno or 1)


def _static_text(body: list[nodes.Node]) -> int:
    """The length of the literal text in ``body``, not counting nested loop, macro and call bodies."""
    total = 0
    pending: list[nodes.Node] = list(body)
    while pending:
        node = pending.pop()
        if isinstance(node, nodes.TemplateData):
            total += len(node.data)
        elif not isinstance(node, _REPEATED):
            pending.extend(node.iter_child_nodes())
    return total


def _replace_joins(node: nodes.Node) -> None:
    """Turn every ``a ~ b`` into the metered join filter (innermost first)."""
    for field, value in node.iter_fields():
        if isinstance(value, nodes.Node):
            _replace_joins(value)
            if isinstance(value, nodes.Concat):
                setattr(node, field, _filter(nodes.List(value.nodes, lineno=value.lineno), "anvil_join"))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, nodes.Node):
                    _replace_joins(item)
                    if isinstance(item, nodes.Concat):
                        value[index] = _filter(nodes.List(item.nodes, lineno=item.lineno), "anvil_join")

