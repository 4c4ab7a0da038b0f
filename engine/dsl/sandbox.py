"""The sandbox under the expression language: Jinja's immutable sandboxed environment with FluxGraph's bounds.

Flows come from users and are evaluated inside the engine, so one expression's cost is bounded here: every value
an operator, filter or method builds is checked for size *before* it is built, integers for width, and one
evaluation for steps (loop iterations, reads, calls, filters, operators). ``engine.dsl.expression`` compiles and
evaluates with :func:`environment`; the limits are documented in docs/fluxgraph.md ("Expressions").
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import re
import string
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, NoReturn

import jinja2
import jmespath
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.tests import test_in

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


class _LimitExceeded(SecurityError):
    """A size, width or work bound was reached (reported as ``expr.forbidden`` with a hint naming the bounds)."""


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
