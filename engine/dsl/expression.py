"""The FluxGraph expression language: ``{{ … }}`` templates on Jinja2's *immutable sandboxed* environment.

Why Jinja2's ``ImmutableSandboxedEnvironment``: it is the Jinja users already know (n8n-like ``{{ }}``), and its
sandbox refuses attributes starting with ``_`` (the road to ``__class__.__mro__``/``__globals__``), unsafe
callables, ``str.format`` escapes and any mutation of lists or dicts. On top of it this module

- removes every global that is not data (no ``lipsum``/``cycler``/``joiner``/``namespace``/``dict``), so nothing
  reaches a module's ``__globals__`` or I/O;
- bounds what one expression may cost, because flows come from users and are evaluated inside the engine:
  the source is limited in length and nesting (so Jinja's recursive parser and compiler cannot overflow the
  stack), every value an operator, filter or method builds is limited in size *before* it is built, integers in
  width, and one evaluation in steps (loop iterations, reads, calls, filters, operators);
- replaces Jinja's HTML-escaping ``tojson`` with plain JSON and adds ``fromjson`` and ``jmespath``;
- evaluates a value that is exactly one ``{{ expr }}`` to its *typed* result (list, number, object) instead of
  text, without Jinja's ``NativeEnvironment`` habit of re-parsing strings with ``literal_eval``, and makes sure
  that result is JSON (tuples become lists; functions, bytes and undefined values are errors).

At validation time :func:`parse` compiles a value and lists every reference it makes (``nodes.fetch.output``,
``secrets.token``, ``item``), so the validator can check them against the graph. It compiles the value all the way
(the code is cached for evaluation), so every compile-time limit is reported at validation.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import math
import re
import string
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jmespath
from jinja2 import nodes as jn
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.parser import Parser
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import test_in

from engine.errors import IonfluxError

#: Longest value (characters) :func:`parse` compiles.
MAX_SOURCE = 20_000
#: Deepest bracket nesting (``(``, ``[``, ``{``): Jinja's parser spends about a dozen stack frames per level.
MAX_BRACKETS = 32
#: Deepest syntax tree (blocks, operators, filters, attribute steps, …): Jinja's compiler recurses per level.
MAX_DEPTH = 64
#: Bound on the size (items or characters) an operator, filter or method may produce.
MAX_SIZE = 1_000_000
MAX_RANGE = 10_000
#: Widest integer ``*`` and ``**`` may produce (4,096 bits: up to 1,234 decimal digits).
MAX_INT_BITS = 4_096
#: Work one :func:`evaluate` call may do: loop iterations, attribute/item reads, calls, filters, operators.
MAX_STEPS = 1_000_000
#: Largest ``tojson`` indent and ``round`` precision (both multiply the work or size of what follows).
MAX_JSON_INDENT = 16
MAX_ROUND_DIGITS = 1_000

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.S)
ROOTS = ("inputs", "trigger", "nodes", "secrets", "run", "item", "index")

_LIMIT_HINT = (
    f"expressions are bounded: values of at most {MAX_SIZE:,} characters or items, integers of at most "
    f"{MAX_INT_BITS:,} bits, {MAX_STEPS:,} steps per evaluation; do heavy processing in a code step"
)
_COMPLEX_HINT = (
    f"at most {MAX_SOURCE:,} characters, {MAX_BRACKETS} nested brackets and {MAX_DEPTH} levels of nesting; "
    "split the work across several fields or nodes (or a code step)"
)


class ExpressionError(IonfluxError):
    """Raised when an expression does not compile, refers to nothing, or fails while it is evaluated."""

    code = "expr.error"

    def __init__(self, message: str, *, hint: str = "", code: str | None = None, line: int = 1) -> None:
        super().__init__(message, hint=hint, code=code)
        self.line = line


class _LimitExceeded(SecurityError):
    """A size, width or work bound was reached (reported as ``expr.forbidden`` with a hint naming the bounds)."""


class _NotJSON(Exception):
    """A typed result holds something JSON cannot represent (reported as ``expr.failed``)."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A name an expression reads, with the constant part of its access path (``nodes.fetch.output.body``)."""

    root: str
    path: tuple[str | int, ...] = ()

    def __str__(self) -> str:
        out = self.root
        for p in self.path:
            out += f"[{p}]" if isinstance(p, int) else f".{p}"
        return out


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled FluxGraph string value: a typed single expression, or text with embedded expressions."""

    source: str
    expression: str | None
    references: tuple[Reference, ...]


def has_template(value: object) -> bool:
    """True if ``value`` is a string containing ``{{``/``{%`` (so its content is only known at run time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def single_expression(value: str) -> str | None:
    """The inner expression when ``value`` is exactly one ``{{ … }}`` (and so keeps its type), else None."""
    m = _SINGLE.match(value)
    if m is None:
        return None
    inner = m.group("expr")
    return None if "{{" in inner or "}}" in inner else inner


# --- the work budget of one evaluation --------------------------------------------------------------------------


class _Budget:
    """What is left of one :func:`evaluate` call's steps and of the text its templates may write."""

    __slots__ = ("steps", "text")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.text = MAX_SIZE


# A context variable rather than an attribute of the (shared, cached) environment: evaluations may run
# concurrently in threads or tasks, and each has its own budget. Outside evaluate() (Jinja folding nothing at
# compile time, tests calling the environment directly) there is no budget and nothing is counted.
_BUDGET: ContextVar[_Budget | None] = ContextVar("ionflux_expression_budget", default=None)


def _spend(steps: int) -> None:
    budget = _BUDGET.get()
    if budget is not None:
        budget.steps -= steps
        if budget.steps < 0:
            _out_of_steps()


def _out_of_steps() -> NoReturn:
    raise _LimitExceeded(f"the expression takes more than {MAX_STEPS:,} steps")


class _Counted:
    """A loop's iterable, charging one step per iteration (so empty nested loops are bounded too)."""

    __slots__ = ("_budget", "_iterator", "_source")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._iterator = iter(source)
        self._budget = _BUDGET.get()

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        budget = self._budget
        if budget is not None:
            budget.steps -= 1
            if budget.steps < 0:
                _out_of_steps()
        return item

    def __len__(self) -> int:
        # LoopContext asks for the length (loop.length, loop.last); a TypeError makes it count the items itself.
        return len(self._source)


# --- size checks, made before the value is built ----------------------------------------------------------------

_SEQUENCES = (str, bytes, list, tuple)
_CONTAINERS = (list, tuple, dict)


def _check_size(size: int) -> None:
    if size > MAX_SIZE:
        raise _LimitExceeded(f"the result would exceed {MAX_SIZE:,} characters or items")


def _grow(base: int, extra: int) -> None:
    """Refuse an operation that would grow a ``base``-sized value by ``extra`` to more than MAX_SIZE."""
    if extra > 0:
        _check_size(base + extra)


def _number(digits: str | None) -> int:
    # A width in a format string: anything longer than 7 digits is over MAX_SIZE anyway (and int() of a
    # 5,000-digit string is itself refused by Python).
    if not digits:
        return 0
    return MAX_SIZE + 1 if len(digits) > 7 else int(digits)


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise _LimitExceeded(f"the result would be an integer of more than {MAX_INT_BITS:,} bits")
    return value


def _multiply(left: Any, right: Any) -> Any:
    if type(left) is float or type(right) is float:
        return left * right
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, _SEQUENCES) and isinstance(times, int):
            _check_size(len(seq) * times)
            return left * right
    return _check_int(left * right)


def _power(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        # |left| ** right has about right * log2|left| bits: refuse before computing it (9 ** 9 ** 9 would run
        # for minutes), then check exactly.
        if right * math.log2(abs(left)) > MAX_INT_BITS + 1:
            raise _LimitExceeded(f"the result would be an integer of more than {MAX_INT_BITS:,} bits")
        return _check_int(left**right)
    return left**right


_PRINTF = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d*))?[hlL]?(?P<kind>.)", re.S
)


def _check_printf(fmt: str, args: Any) -> None:
    """``fmt % args`` (and the ``format`` filter): bound widths, precisions and the arguments' text."""
    size = len(fmt)
    positional = args if isinstance(args, tuple) else (args,)
    index = 0
    for m in _PRINTF.finditer(fmt):
        if m["width"] == "*" or m["precision"] == "*":
            raise _LimitExceeded("'*' widths and precisions are not supported in % formatting")
        size += _number(m["width"]) + _number(m["precision"])
        if m["kind"] == "%":
            continue
        if m["key"] is not None and isinstance(args, Mapping):
            value = args.get(m["key"])
        elif index < len(positional):
            value = positional[index]
            index += 1
        else:
            value = None
        if isinstance(value, str):
            size += len(value)
        else:
            _check_expansion(value)
    _check_size(size)


_FIELD_HEAD = re.compile(r"[^.\[]*")


def _check_format(fmt: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``fmt.format(...)``/``format_map``: bound the widths in format specs and the text of the fields."""
    size = len(fmt)
    auto = 0
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is None:
            continue
        if spec and "{" in spec:
            raise _LimitExceeded("nested {…} fields in a format spec are not supported")
        size += sum(_number(d) for d in re.findall(r"\d+", spec or ""))
        head = _FIELD_HEAD.match(field)
        name = head.group() if head else ""
        value: Any = None
        if name == "":
            value = args[auto] if auto < len(args) else None
            auto += 1
        elif name.isdigit():
            value = args[int(name)] if int(name) < len(args) else None
        else:
            value = kwargs.get(name)
        if isinstance(value, str):
            size += len(value)
        else:
            _check_expansion(value)
    _check_size(size)


def _check_expansion(value: Any) -> None:
    """Refuse to write out a value that repeats the same list or object so often that it would blow up.

    ``[a, a, a]`` and ``[a] * n`` share ``a`` instead of copying it, so a few nested repetitions are cheap to build
    but ``str()``/JSON would write out billions of items. This counts the items as written out (each shared list
    or object as often as it occurs) in time proportional to the distinct ones, and refuses more than MAX_SIZE
    unless the value really holds that many distinct items (large data read from a node passes unchanged).
    """
    if type(value) not in (list, tuple, dict):
        return
    sizes: dict[int, int] = {}
    started: set[int] = set()
    distinct = 0
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        obj, done = stack.pop()
        members = obj.values() if isinstance(obj, dict) else obj
        if done:
            sizes[id(obj)] = len(obj) + sum(sizes.get(id(m), 0) for m in members if type(m) in (list, tuple, dict))
            distinct += len(obj)
            continue
        if id(obj) in started:
            continue
        started.add(id(obj))
        stack.append((obj, True))
        stack.extend((m, False) for m in members if type(m) in (list, tuple, dict) and id(m) not in started)
    written = sizes[id(value)]
    if written > max(MAX_SIZE, distinct):
        raise _LimitExceeded(
            f"the value repeats the same lists or objects so often that it would write out {written:,} items "
            f"(at most {MAX_SIZE:,})"
        )


def _stringify(value: Any) -> str:
    if isinstance(value, str):
        return value
    _check_expansion(value)
    return str(value)


def _concat(parts: Iterable[str]) -> str:
    """``environment.concat``: joins a rendered template and every ``set`` block, macro and filter block."""
    if isinstance(parts, list):  # a block's buffer
        if sum(map(len, parts)) > MAX_SIZE:
            raise _LimitExceeded(f"the text would exceed {MAX_SIZE:,} characters")
        return "".join(parts)
    out: list[str] = []  # a template's output, as it is generated: stop as soon as it is too long
    total = 0
    for part in parts:
        total += len(part)
        if total > MAX_SIZE:
            raise _LimitExceeded(f"the text would exceed {MAX_SIZE:,} characters")
        out.append(part)
    return "".join(out)


@jinja2.pass_context
def _finalize(context: Context, value: Any) -> str:
    # Every {{ }} of a text template passes here, also inside set blocks and macros, whose buffers are only joined
    # (and checked by _concat) at the end: counting here stops a loop from piling up text before that.
    # pass_context also keeps Jinja from calling it, and so the filters before it, at compile time.
    text = value if type(value) is str else _stringify(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.text -= len(text)
        if budget.text < 0:
            raise _LimitExceeded(f"the template writes more than {MAX_SIZE:,} characters")
    return text


# --- methods, filters and tests ---------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 0


def _replaced_size(s: Any, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(s, str | bytes) and isinstance(old, str | bytes) and isinstance(new, str | bytes)):
        return
    if len(new) <= len(old):
        return
    n = s.count(old) if old else len(s) + 1  # type: ignore[arg-type]
    if isinstance(count, int) and count >= 0:
        n = min(n, count)
    _grow(len(s), n * (len(new) - len(old)))


def _joined_size(separator: Any, items: list[Any]) -> None:
    _check_expansion(items)
    size = sum(len(i) for i in items if isinstance(i, str | bytes))
    _check_size(size + _text_len(separator) * max(len(items) - 1, 0))


_Args = tuple[tuple[Any, ...], dict[str, Any]]


def _method_check(owner: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    """Bound the str/bytes/int methods whose result can be far larger than their inputs (before calling them)."""
    if isinstance(owner, str | bytes):
        if name in ("center", "ljust", "rjust", "zfill") and args and isinstance(args[0], int):
            _grow(len(owner), args[0] - len(owner))
        elif name == "expandtabs":
            tabsize = _arg(args, kwargs, 0, "tabsize", 8)
            if isinstance(tabsize, int):
                _grow(len(owner), owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize)  # type: ignore[arg-type]
        elif name == "replace" and len(args) >= 2:
            _replaced_size(owner, args[0], args[1], _arg(args, kwargs, 2, "count", -1))
        elif name == "join" and args:
            items = list(args[0])  # may be a generator: materialise it once, measure it, and join that
            _spend(len(items))
            _joined_size(owner, items)
            args = (items, *args[1:])
        elif name == "translate" and args:
            table = args[0]
            values = table.values() if isinstance(table, Mapping) else table if isinstance(table, list | tuple) else ()
            longest = max((len(v) for v in values if isinstance(v, str | bytes)), default=1)
            _grow(len(owner), len(owner) * (longest - 1))
    elif isinstance(owner, int) and name == "to_bytes":
        length = _arg(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            _check_size(length)
    elif isinstance(owner, list | tuple):
        _spend(len(owner))  # index(), count(): one step per item
    return args, kwargs


_Check = Callable[[tuple[Any, ...], dict[str, Any]], _Args]


def _materialised(args: tuple[Any, ...]) -> tuple[Any, ...]:
    # a filter's input may be a generator: materialise it once, measure it, and hand the filter the list
    return (list(args[0]), *args[1:]) if args and not isinstance(args[0], list) else args


def _check_center(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    width = _arg(args, kwargs, 1, "width", 80)
    if isinstance(width, int):
        _grow(_text_len(args[0]), width - _text_len(args[0]))
    return args, kwargs


def _check_indent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    width = _arg(args, kwargs, 1, "width", 4)
    pad = width if isinstance(width, int) else len(width) if isinstance(width, str) else 0
    text = args[0] if isinstance(args[0], str) else ""
    _grow(len(text), pad * (text.count("\n") + 1))  # the indent goes before every line
    return args, kwargs


def _check_wordwrap(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    wrapstring = _arg(args, kwargs, 3, "wrapstring", None)
    text = args[0] if isinstance(args[0], str) else ""
    # with width=1 every character may end up on a line of its own, each followed by the wrap string
    _grow(len(text), len(wrapstring if isinstance(wrapstring, str) else "\n") * (len(text) + 1))
    return args, kwargs


def _check_replace(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    text = args[0] if isinstance(args[0], str) else str(args[0])
    _replaced_size(text, _arg(args, kwargs, 1, "old", ""), _arg(args, kwargs, 2, "new", ""), kwargs.get("count"))
    return args, kwargs


def _check_join(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    args = _materialised(args)
    separator = _arg(args, kwargs, 1, "d", "")
    _joined_size(separator if isinstance(separator, str) else str(separator), args[0])
    return args, kwargs


def _check_format_filter(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    # `'%s-%s'|format(a, b)` is `'%s-%s' % (a, b)`
    _check_printf(args[0] if isinstance(args[0], str) else str(args[0]), kwargs or args[1:])
    return args, kwargs


def _check_batch(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    args = _materialised(args)
    linecount = _arg(args, kwargs, 1, "linecount", 0)
    if _arg(args, kwargs, 2, "fill_with", None) is not None and isinstance(linecount, int):
        _grow(len(args[0]), linecount)  # the last batch is padded up to linecount items
    return args, kwargs


def _check_slice(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    args = _materialised(args)
    slices = _arg(args, kwargs, 1, "slices", 0)
    if isinstance(slices, int):
        _grow(len(args[0]), slices)  # one list per slice, even empty ones
    return args, kwargs


def _check_round(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    precision = _arg(args, kwargs, 1, "precision", 0)
    if isinstance(precision, int) and abs(precision) > MAX_ROUND_DIGITS:
        # round() computes 10 ** precision, an integer of any size
        raise _LimitExceeded(f"round() precision is limited to {MAX_ROUND_DIGITS:,} digits")
    return args, kwargs


def _check_stringified(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Args:
    _check_expansion(args[0])
    return args, kwargs


_FILTER_CHECKS: dict[str, _Check] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "replace": _check_replace,
    "join": _check_join,
    "format": _check_format_filter,
    "batch": _check_batch,
    "slice": _check_slice,
    "round": _check_round,
}


# Filters that call str() on their input: a list or object that shares items is checked before it is written out.
_STRINGIFYING_FILTERS = frozenset(
    {"string", "pprint", "e", "escape", "forceescape", "safe", "upper", "lower", "title", "capitalize", "trim",
     "truncate", "wordcount", "striptags", "urlize", "urlencode", "jmespath", "tojson"}
)  # fmt: skip
# Filters that look at a list in constant time; every other filter costs a step per item of a list or object.
_CONSTANT_TIME_FILTERS = frozenset({"length", "count", "first", "last", "default", "d"})


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0  # a context/environment argument first
    check = _FILTER_CHECKS.get(name, _check_stringified if name in _STRINGIFYING_FILTERS else None)
    per_item = name not in _CONSTANT_TIME_FILTERS

    @functools.wraps(func)  # keeps jinja_pass_arg, so Jinja still passes the context/environment
    def guarded(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        _spend(1 + len(value) if per_item and isinstance(value, _CONTAINERS) else 1)
        if check is not None and len(args) > skip:
            rest, kwargs = check(args[skip:], kwargs)
            args = args[:skip] + rest
        return func(*args, **kwargs)

    return guarded


_LOOP, _CONCAT, _CHARGED = "_ionflux_loop", "_ionflux_concat", "_ionflux_charged"  # hidden: see _prepare


def _concat_values(*parts: Any) -> str:
    # `a ~ b ~ c`: Jinja joins with a module-level function no environment hook reaches, so _prepare points here
    return _concat([_stringify(p) for p in parts])


def _charged(value: Any) -> Any:
    """``x in value`` scans a list item by item: charge for it."""
    _spend(1 + len(value) if isinstance(value, list | tuple) else 1)
    return value


def _range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise _LimitExceeded(f"range() is limited to {MAX_RANGE:,} items")
    return r


def _tojson(value: Any, indent: int | str | None = None) -> str:
    width = len(indent) if isinstance(indent, str) else indent or 0
    if width > MAX_JSON_INDENT:
        raise _LimitExceeded(f"tojson indent is limited to {MAX_JSON_INDENT}")
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def _fromjson(value: str) -> Any:
    return json.loads(value)


def _jmespath(value: Any, expression: str) -> Any:
    return jmespath.search(expression, value)


@jinja2.pass_environment
def _sum(environment: jinja2.Environment, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    if isinstance(start, list | tuple):
        # Python's sum() copies the running total for every item: quadratic for lists (a million one-item lists
        # would take hours). Concatenate once instead, after checking the size.
        parts = list(iterable)
        if all(type(p) is type(start) for p in parts):
            _check_size(len(start) + sum(len(p) for p in parts))
            return type(start)(itertools.chain(start, *parts))
        iterable = parts
    return sum(iterable, start)


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_concat)

    def getattr(self, obj: Any, attribute: str) -> Any:
        budget = _BUDGET.get()  # _spend(1), inlined: this runs for every `.` of every expression
        if budget is not None:
            budget.steps -= 1
            if budget.steps < 0:
                _out_of_steps()
        # Data before methods: `nodes.copy.output` and `trigger.data.items` must read the keys "copy" and "items",
        # not dict.copy / dict.items (Jinja's default). Mappings expose no methods to flows at all.
        if type(obj) is dict or isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _spend(1)
        if type(obj) is dict or isinstance(obj, Mapping):
            # as for getattr: `inputs['items']` is the key or undefined, never the dict method
            try:
                return obj[argument]
            except (TypeError, LookupError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _spend(1)
        if operator == "**":
            return _power(left, right)
        if operator == "*":
            return _multiply(left, right)
        if operator == "%":
            if isinstance(left, str):
                _check_printf(left, right)
            return left % right
        if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
            _check_size(len(left) + len(right))
        return left + right

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _spend(1)
        owner = getattr(obj, "__self__", None)
        if owner is not None and isinstance(owner, str | bytes | int | list | tuple):
            args, kwargs = _method_check(owner, getattr(obj, "__name__", ""), args, kwargs)
        elif isinstance(obj, LoopContext) and args:
            args = (_Counted(args[0]), *args[1:])  # loop(children) in a recursive for: count those iterations too
        return super().call(context, obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        @functools.wraps(wrapped)
        def checked(*args: Any, **kwargs: Any) -> str:
            if is_map and args and isinstance(args[0], Mapping):
                _check_format(fmt, (), args[0])
            else:
                _check_format(fmt, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one sandboxed environment every FluxGraph expression compiles in."""
    # optimized=False: Jinja's optimizer evaluates constant sub-expressions at compile time, i.e. during
    # validation, out of reach of the step budget ({{ 'x'|center(999999) }} repeated a thousand times).
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        optimized=False,
        finalize=_finalize,
    )
    env.globals.clear()
    env.globals["range"] = _range
    env.filters["tojson"] = _tojson
    env.filters["fromjson"] = _fromjson
    env.filters["jmespath"] = _jmespath
    env.filters["sum"] = _sum
    # `random` would make a run's decisions differ on replay (the core must be deterministic)
    del env.filters["random"]
    for name, func in list(env.filters.items()):
        env.filters[name] = _guarded_filter(name, func)
    env.tests["in"] = _guarded_in(test_in)  # `x is in xs`, select('in', xs)
    # The rewrites of _prepare, registered after the guarding above. Filters rather than calls: Jinja compiles a
    # filter to a direct function call, a call to a trip through the sandbox's call() (which would count them).
    env.filters[_LOOP] = _Counted
    env.filters[_CONCAT] = _concat_values
    env.filters[_CHARGED] = _charged
    return env


def _guarded_in(test: Callable[..., Any]) -> Callable[..., bool]:
    @functools.wraps(test)
    def guarded(value: Any, seq: Any) -> bool:
        return bool(test(value, _charged(seq)))

    return guarded


# --- compiling ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    template: Template
    run: Callable[..., Any]


def clear_caches() -> None:
    """Forget compiled expressions (benchmarks measure cold validation with this)."""
    parse.cache_clear()
    _compile.cache_clear()


@lru_cache(maxsize=8192)
def parse(value: str) -> Template:
    """Compile a string value; raise :class:`ExpressionError` (and nothing else) if it cannot be compiled.

    ``expr.syntax`` (with the line) on bad syntax, ``expr.unknown_filter``/``expr.unknown_test``, and
    ``expr.too_complex`` when the value is too long or too deeply nested to compile safely.
    """
    return _compile(value).template


@lru_cache(maxsize=4096)
def _compile(value: str) -> _Compiled:
    if len(value) > MAX_SOURCE:
        raise _too_complex(f"the value is {len(value):,} characters long (at most {MAX_SOURCE:,})")
    env = environment()
    expr = single_expression(value)
    source = "{{" + expr + "}}" if expr is not None else value
    try:
        _check_brackets(env, source)
        ast = env.parse(source)
        body: jn.Expr | None = None
        if expr is not None:
            body = _single_body(env, ast, expr)
            if body is not ast.body[0].nodes[0]:  # type: ignore[attr-defined]
                ast = jn.Template([jn.Output([body], lineno=body.lineno)], lineno=1)
                ast.set_environment(env)
        _prepare(ast)
        if body is not None:
            body = ast.body[0].nodes[0]  # type: ignore[attr-defined]  # _prepare may have replaced it (`a ~ b`)
        if body is None:
            template, free = _build(env, ast)
            run: Callable[..., Any] = template.render
        else:
            assign = jn.Template([jn.Assign(jn.Name("result", "store"), body, lineno=body.lineno)], lineno=1)
            assign.set_environment(env)
            template, free = _build(env, assign)
            run = TemplateExpression(template, undefined_to_none=False)
        references = tuple(dict.fromkeys(_references(ast, free)))
    except jinja2.TemplateSyntaxError as e:
        raise _syntax_error(e) from None
    except ExpressionError:
        raise
    except SyntaxError as e:
        # Python compiles the generated code with limits of its own: 20 nested blocks (each `for` is one),
        # 200 nested parentheses, 100 indentation levels
        loops = "statically nested blocks" in str(e)
        raise _too_complex(
            "more than 20 nested for loops" if loops else "the value is nested too deeply to compile"
        ) from None
    except (RecursionError, MemoryError):
        # Jinja's parser and compiler recurse per nesting level: a deep caller stack can still run out
        raise _too_complex("the value is nested too deeply to compile") from None
    except Exception as e:  # parse() promises ExpressionError only, whatever Jinja's compiler raised
        raise ExpressionError(
            f"the expression could not be compiled: {type(e).__name__}: {e}",
            code="expr.syntax",
            hint="expressions look like {{ nodes.fetch.output.body }} or {{ inputs.days > 3 }}",
        ) from None
    return _Compiled(Template(value, expr, references), run)


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, also noting the names a template reads from its context.

    ``jinja2.meta.find_undeclared_variables`` finds them with a second, output-less run of the generator: noting them
    while the code is generated makes validating a flow's expressions a third cheaper.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.undeclared: set[str] = set()

    def enter_frame(self, frame: Frame) -> None:
        super().enter_frame(frame)
        for action, name in frame.symbols.loads.values():
            if action == "resolve" and name not in self.environment.globals:
                self.undeclared.add(name)


def _build(env: jinja2.Environment, ast: jn.Template) -> tuple[jinja2.Template, set[str]]:
    """``env.from_string(ast)``, returning the names the template reads as well."""
    generator = _CodeGenerator(env, None, "<template>", optimized=env.optimized)
    generator.visit(ast)
    code = compile(generator.stream.getvalue(), "<template>", "exec")  # type: ignore[attr-defined]
    return env.template_class.from_code(env, code, env.make_globals(None)), generator.undeclared


def _too_complex(message: str, line: int = 1) -> ExpressionError:
    return ExpressionError(message, code="expr.too_complex", hint=_COMPLEX_HINT, line=line)


def _check_brackets(env: jinja2.Environment, source: str) -> None:
    # Nesting brackets adds no tree depth (`((1))` is just 1) but costs Jinja's parser about a dozen stack frames
    # per level: count them on the (iterative) lexer's tokens, so the limit is the same however deep the caller's
    # stack is.
    depth = 0
    try:
        for line, kind, token in env.lex(source):
            if kind == "operator":
                if token in ("(", "[", "{"):
                    depth += 1
                    if depth > MAX_BRACKETS:
                        raise _too_complex(f"brackets are nested more than {MAX_BRACKETS} deep", line)
                elif token in (")", "]", "}"):
                    depth -= 1
    except jinja2.TemplateSyntaxError:
        pass  # the parser reports it, with the message flow authors know


def _single_body(env: jinja2.Environment, ast: jn.Template, expr: str) -> jn.Expr:
    """The expression node of ``{{ expr }}``, parsed so that it means what it did as a bare expression."""
    shape = ast.body
    if len(shape) != 1 or not isinstance(shape[0], jn.Output) or len(shape[0].nodes) != 1:
        # `{{ a }}}`: the regex saw one expression, Jinja sees an expression followed by text
        raise ExpressionError(
            "expression syntax error: unbalanced braces: write an expression as {{ … }}",
            code="expr.syntax",
            hint="expressions look like {{ nodes.fetch.output.body }} or {{ inputs.days > 3 }}",
        )
    node = shape[0].nodes[0]
    if expr[:1] in "-+":
        # Inside a template `{{-1}}` is whitespace control around 1; a typed value has always meant -1 (a trailing
        # `-}}` can only be whitespace control: no expression ends with a minus).
        parser = Parser(env, expr[:-1] if expr.endswith("-") else expr, state="variable")
        node = parser.parse_tuple(with_condexpr=True)
        if not parser.stream.eos:
            raise ExpressionError(
                f"expression syntax error: unexpected {parser.stream.current.value!r}",
                code="expr.syntax",
                hint="expressions look like {{ nodes.fetch.output.body }} or {{ inputs.days > 3 }}",
            )
        node.set_environment(env)
    return node


def _prepare(ast: jn.Template) -> None:
    """Check the tree's depth and rewrite the three constructs the sandbox cannot see into calls it can.

    ``for`` loops iterate through :class:`_Counted` (a step per iteration), ``~`` joins through a size check, and
    the right side of ``in`` is charged a step per item. Iterative: the tree may be arbitrarily deep here.
    """
    stack: list[tuple[jn.Node, int]] = [(ast, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _too_complex(f"the expression is nested more than {MAX_DEPTH} levels deep", node.lineno or 1)
        if isinstance(node, jn.For):
            node.iter = _hidden_filter(_LOOP, [node.iter])
        elif isinstance(node, jn.Operand) and node.op in ("in", "notin"):
            node.expr = _hidden_filter(_CHARGED, [node.expr])
        for field in node.fields:
            child = getattr(node, field)
            if isinstance(child, jn.Node):
                child = _rewritten(child)
                setattr(node, field, child)
                stack.append((child, depth + 1))
            elif isinstance(child, list):
                for i, item in enumerate(child):
                    if isinstance(item, jn.Node):
                        child[i] = item = _rewritten(item)
                        stack.append((item, depth + 1))


def _rewritten(node: jn.Node) -> jn.Node:
    if isinstance(node, jn.Concat):
        return _hidden_filter(_CONCAT, list[jn.Node](node.nodes))
    return node


def _hidden_filter(name: str, args: list[jn.Node]) -> jn.Filter:
    node = jn.Filter(args[0], name, args[1:], [], None, None, lineno=args[0].lineno)
    node.set_environment(environment())
    return node


_UNKNOWN = re.compile(r"^No (filter|test) named '([^']+)'")


def _syntax_error(e: jinja2.TemplateSyntaxError) -> ExpressionError:
    unknown = _UNKNOWN.match(e.message or "")
    if unknown:
        kind, name = unknown.groups()
        known = sorted(n for n in (environment().filters if kind == "filter" else environment().tests) if n[0] != "_")
        guess = difflib.get_close_matches(name, known, n=1)
        return ExpressionError(
            f"unknown {kind} '{name}'" + (f"; did you mean '{guess[0]}'?" if guess else ""),
            code=f"expr.unknown_{kind}",
            hint=f"{kind}s: " + ", ".join(known),
            line=e.lineno or 1,
        )
    return ExpressionError(
        f"expression syntax error: {_plain_reason(e.message or '')}",
        code="expr.syntax",
        hint="expressions look like {{ nodes.fetch.output.body }} or {{ inputs.days > 3 }}",
        line=e.lineno or 1,
    )


def _plain_reason(message: str) -> str:
    """Jinja's parser speaks of 'print statements' and tokens; say what a flow author needs to hear."""
    if message.startswith("expected token 'end of print statement', got '='"):
        return "'=' is not a comparison; use '==' (and '!=' for 'not equal')"
    if message in ("unexpected 'end of print statement'", "unexpected 'end of template'") or message.startswith(
        "Expected an expression"
    ):
        return "the expression ends too early: something is missing after the last operator or keyword"
    if message == "unexpected '}'":
        return "unbalanced braces: write an expression as {{ … }}"
    return message.replace("end of print statement", "end of the expression")


def parse_bare(expression: str) -> Template:
    """Compile an expression written without braces (``data.filter``'s ``where: item.total > 100``)."""
    if "{{" in expression or "}}" in expression:
        raise ExpressionError(
            "write this expression without {{ }}",
            code="expr.syntax",
            hint="this field is evaluated per item: e.g. item.total > 100",
        )
    return parse("{{" + expression + "}}")


def _references(ast: jn.Template, free: set[str]) -> Iterator[Reference]:
    # An explicit stack, not recursion: a 20,000-step attribute chain must not overflow Python's stack.
    # Children are pushed in reverse so references come out in source order (the validator reports them so).
    stack: list[tuple[jn.Node, bool]] = [(ast, False)]
    while stack:
        node, in_chain = stack.pop()
        if isinstance(node, jn.Getattr | jn.Getitem | jn.Name) and not in_chain:
            ref = _unwind(node)
            if ref is not None and ref.root in free:
                yield ref
        chain_child = node.node if isinstance(node, jn.Getattr | jn.Getitem) else None
        stack.extend((child, child is chain_child) for child in reversed(list(node.iter_child_nodes())))


def _unwind(node: jn.Node) -> Reference | None:
    path: list[str | int] = []
    while True:
        if isinstance(node, jn.Getattr):
            path.append(node.attr)
            node = node.node
        elif isinstance(node, jn.Getitem):
            arg = node.arg
            if isinstance(arg, jn.Const) and isinstance(arg.value, str | int):
                path.append(arg.value)
            else:
                path.clear()  # a dynamic index: only the part before it is known
            node = node.node
        elif isinstance(node, jn.Name):
            return Reference(node.name, tuple(reversed(path)))
        else:
            return None


# --- evaluating ---------------------------------------------------------------------------------------------------


def evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every template inside ``value`` (recursing into lists and mappings) against ``context``.

    A string that is exactly one expression returns the expression's value with its type (always JSON: tuples
    and other sequences become lists); other strings with templates return text; everything else is returned
    unchanged. The whole call shares one budget of MAX_STEPS steps. Raises :class:`ExpressionError` only.
    """
    token = _BUDGET.set(_Budget())
    try:
        return _evaluate(value, context)
    finally:
        _BUDGET.reset(token)


def _evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _evaluate_string(value, context) if has_template(value) else value
    if isinstance(value, Mapping):
        return {k: _evaluate(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_evaluate(v, context) for v in value]
    return value


def _evaluate_string(value: str, context: Mapping[str, Any]) -> Any:
    compiled = _compile(value)
    budget = _BUDGET.get()
    if budget is not None:
        budget.text = MAX_SIZE  # the text limit is per template; the step budget is per evaluate() call
    try:
        if compiled.template.expression is not None:
            return _to_json(compiled.run(**context))
        return compiled.run(**context)
    except jinja2.UndefinedError as e:
        raise ExpressionError(
            f"{e.message} in {value!r}",
            code="expr.undefined",
            hint="check the field path against the upstream node's recorded output",
        ) from None
    except _LimitExceeded as e:
        raise ExpressionError(
            f"limit exceeded: {e} in {_short(value)}", code="expr.forbidden", hint=_LIMIT_HINT
        ) from None
    except SecurityError as e:
        raise ExpressionError(
            f"refused by the expression sandbox: {e}",
            code="expr.forbidden",
            hint="expressions can read data and call filters; they cannot reach Python internals",
        ) from None
    except (RecursionError, MemoryError) as e:
        what = "recurses too deeply" if isinstance(e, RecursionError) else "needs too much memory"
        raise ExpressionError(
            f"limit exceeded: the expression {what} in {_short(value)}", code="expr.forbidden", hint=_LIMIT_HINT
        ) from None
    except _NotJSON as e:
        raise ExpressionError(
            f"the value of {_short(value)} is not JSON: it is or contains {e}",
            code="expr.failed",
            hint="a typed value must be data: call a method with (), or convert with |list, |string or |tojson",
        ) from None
    except ExpressionError:
        raise
    except Exception as e:  # evaluate() promises ExpressionError only, whatever a filter raised
        raise ExpressionError(
            f"expression failed: {type(e).__name__}: {e} in {_short(value)}",
            code="expr.failed",
            hint="check the types of the values the expression combines",
        ) from None


def _short(value: str) -> str:
    return repr(value) if len(value) <= 200 else repr(value[:200]) + "…"


# --- typed results are JSON ---------------------------------------------------------------------------------------

# Lazy or set-like values that are naturally lists: map()/select() generators, range(), reversed(), sets.
_LISTS = (Iterator, range, MappingView, set, frozenset)
_CONTAINER_TYPES = (list, tuple, Mapping, *_LISTS)


def _to_json(value: Any) -> Any:
    """The typed result as JSON data: tuples, generators, ranges and sets become lists, mappings dicts.

    Raises _NotJSON for functions, bytes and other objects, re-raises an undefined value's own error, and refuses
    a value that shares lists or objects so much that writing it out would blow up (see _check_expansion).
    Iterative with a memo per object: data may be deep, and shared parts are converted once.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if not _is_container(value):
        return _json_scalar(value)
    if _plain_json(value):
        return value
    done: dict[int, tuple[Any, int]] = {}  # id → (converted value, items written out)
    pending: dict[int, list[Any]] = {}  # id → members, while the members are converted
    keep: list[Any] = []  # materialised lazy values: kept alive so their ids stay unique
    distinct = 0
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        obj, finished = stack.pop()
        key = id(obj)
        if not finished:
            if key in done:
                continue
            if key in pending:
                raise _NotJSON("a value that contains itself")
            members = _members(obj, keep)
            pending[key] = members
            stack.append((obj, True))
            values = (v for _, v in members) if isinstance(obj, Mapping) else members
            stack.extend((m, False) for m in values if _is_container(m))
            continue
        members = pending.pop(key)
        if isinstance(obj, Mapping):
            pairs = [(_json_key(k), _converted(v, done)) for k, v in members]
            written = len(pairs) + sum(done[id(v)][1] for _, v in members if id(v) in done)
            same = type(obj) is dict and all(
                k is k2 and v is v2 for (k, v), (k2, v2) in zip(pairs, members, strict=True)
            )
            out: Any = obj if same else dict(pairs)
        else:
            items = [_converted(m, done) for m in members]
            written = len(items) + sum(done[id(m)][1] for m in members if id(m) in done)
            out = obj if type(obj) is list and all(a is b for a, b in zip(items, members, strict=True)) else items
        distinct += len(members)
        done[key] = (out, written)
    result, written = done[id(value)]
    if written > max(MAX_SIZE, distinct):
        raise _LimitExceeded(
            f"the value repeats the same lists or objects so often that it would write out {written:,} items "
            f"(at most {MAX_SIZE:,})"
        )
    return result


_PLAIN_SCALARS = frozenset({str, int, bool, type(None)})


def _plain_json(value: Any) -> bool:
    """The common case, fast: plain dicts, lists and scalars, written out in at most MAX_SIZE items.

    No memo (that is what makes it fast), so shared parts are visited each time they occur: the walk gives up
    after MAX_SIZE items, and the careful walk in _to_json takes over (for large data, or for repetition).
    """
    budget = MAX_SIZE
    stack = [value]
    while stack:
        obj = stack.pop()
        if type(obj) is dict:
            if not all(type(k) is str for k in obj):
                return False
            members: Iterable[Any] = obj.values()
        elif type(obj) is list:
            members = obj
        else:
            return False
        budget -= len(obj)
        if budget < 0:
            return False
        for m in members:
            kind = type(m)
            if kind is dict or kind is list:
                stack.append(m)
            elif kind is float:
                if not math.isfinite(m):
                    return False
            elif kind not in _PLAIN_SCALARS:
                return False
    return True


def _is_container(value: Any) -> bool:
    kind = type(value)
    if kind is dict or kind is list:
        return True
    if kind is str or kind is int or kind is float or kind is bool or value is None:
        return False
    return isinstance(value, _CONTAINER_TYPES) and not isinstance(value, str | bytes)


def _members(obj: Any, keep: list[Any]) -> list[Any]:
    if isinstance(obj, Mapping):
        return list(obj.items())
    if isinstance(obj, list | tuple):
        return obj if isinstance(obj, list) else list(obj)
    if isinstance(obj, set | frozenset):
        try:
            items = sorted(obj)  # a set has no order; sorting keeps the result reproducible where possible
        except TypeError:
            items = list(obj)
    else:
        items = list(obj)
    keep.append(obj)
    return items


def _converted(member: Any, done: dict[int, tuple[Any, int]]) -> Any:
    if id(member) in done and _is_container(member):
        return done[id(member)][0]
    return _json_scalar(member)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return key if type(key) is str else str(key)
    raise _NotJSON(f"an object key that is not a string ({type(key).__name__} {key!r})")


def _json_scalar(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        raise _NotJSON(f"the number {value} (JSON has no infinity or NaN)")
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()  # raises UndefinedError (or SecurityError for a refused attribute)
    if isinstance(value, str | int | float):  # subclasses: Markup from |escape, an IntEnum
        return _json_scalar((str if isinstance(value, str) else int if isinstance(value, int) else float)(value))
    if isinstance(value, bytes | bytearray):
        raise _NotJSON("bytes")
    if callable(value):
        name = getattr(value, "__name__", None)
        return _raise_not_json(f"a function{f' ({name})' if name else ''}: call it with () to use its result")
    return _raise_not_json(f"a {kind.__name__}")


def _raise_not_json(what: str) -> Any:
    raise _NotJSON(what)
