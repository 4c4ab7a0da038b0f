"""The FluxGraph expression language: ``{{ … }}`` templates on Jinja2's *immutable sandboxed* environment.

Why Jinja2's ``ImmutableSandboxedEnvironment``: it is the Jinja users already know (n8n-like ``{{ }}``), and its
sandbox refuses attributes starting with ``_`` (the road to ``__class__.__mro__``/``__globals__``), unsafe
callables, ``str.format`` escapes and any mutation of lists or dicts. On top of it this module

- removes every global that is not data (no ``lipsum``/``cycler``/``joiner``/``namespace``/``dict``), so nothing
  reaches a module's ``__globals__`` or I/O;
- bounds the operators that can allocate without limit (``*``, ``**``, ``+``) and ``range``;
- replaces Jinja's HTML-escaping ``tojson`` with plain JSON and adds ``fromjson`` and ``jmespath``;
- evaluates a value that is exactly one ``{{ expr }}`` to its *typed* result (list, number, object) instead of
  text, without Jinja's ``NativeEnvironment`` habit of re-parsing strings with ``literal_eval``.

At validation time :func:`parse` compiles a value and lists every reference it makes (``nodes.fetch.output``,
``secrets.token``, ``item``), so the validator can check them against the graph.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
import jmespath
from jinja2 import meta
from jinja2 import nodes as jn
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.errors import IonfluxError

#: Bound on the size (items or characters) an operator may produce, and on ``range``.
MAX_SIZE = 1_000_000
MAX_RANGE = 10_000
MAX_EXPONENT = 256

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.S)
ROOTS = ("inputs", "trigger", "nodes", "secrets", "run", "item", "index")


class ExpressionError(IonfluxError):
    """Raised when an expression does not compile, refers to nothing, or fails while it is evaluated."""

    code = "expr.error"

    def __init__(self, message: str, *, hint: str = "", code: str | None = None, line: int = 1) -> None:
        super().__init__(message, hint=hint, code=code)
        self.line = line


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


class _Environment(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "+"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Data before methods: `nodes.copy.output` and `trigger.data.items` must read the keys "copy" and "items",
        # not dict.copy / dict.items (Jinja's default). Mappings expose no methods to flows at all.
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_SIZE:
                    raise SecurityError(f"the result would exceed {MAX_SIZE:,} items/characters")
            return left * right
        if (
            isinstance(left, str | list | tuple)
            and isinstance(right, str | list | tuple)
            and len(left) + len(right) > MAX_SIZE
        ):
            raise SecurityError(f"the result would exceed {MAX_SIZE:,} items/characters")
        return left + right


def _range(*args: int) -> range:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE:,} items")
    return r


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, ensure_ascii=False, indent=indent, default=str)


def _fromjson(value: str) -> Any:
    return json.loads(value)


def _jmespath(value: Any, expression: str) -> Any:
    return jmespath.search(expression, value)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The one sandboxed environment every FluxGraph expression compiles in."""
    env = _Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals.clear()
    env.globals["range"] = _range
    env.filters["tojson"] = _tojson
    env.filters["fromjson"] = _fromjson
    env.filters["jmespath"] = _jmespath
    return env


@lru_cache(maxsize=8192)
def parse(value: str) -> Template:
    """Compile a string value; raise :class:`ExpressionError` (``expr.syntax``) with the line on bad syntax."""
    env = environment()
    expr = single_expression(value)
    source = "{{" + expr + "}}" if expr is not None else value
    try:
        ast = env.parse(source)
        references = tuple(dict.fromkeys(_references(ast)))  # runs Jinja's compiler: unknown filters surface here
    except jinja2.TemplateSyntaxError as e:
        raise _syntax_error(e) from None
    return Template(value, expr, references)


_UNKNOWN = re.compile(r"^No (filter|test) named '([^']+)'")


def _syntax_error(e: jinja2.TemplateSyntaxError) -> ExpressionError:
    unknown = _UNKNOWN.match(e.message or "")
    if unknown:
        kind, name = unknown.groups()
        known = sorted(environment().filters if kind == "filter" else environment().tests)
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
    if message == "unexpected 'end of print statement'" or message.startswith("Expected an expression"):
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


def _references(ast: jn.Template) -> Iterator[Reference]:
    free = meta.find_undeclared_variables(ast)

    def walk(node: jn.Node, in_chain: bool) -> Iterator[Reference]:
        if isinstance(node, jn.Getattr | jn.Getitem | jn.Name) and not in_chain:
            ref = _unwind(node)
            if ref is not None and ref.root in free:
                yield ref
        for child in node.iter_child_nodes():
            chained = isinstance(node, jn.Getattr | jn.Getitem) and child is node.node
            yield from walk(child, chained)

    yield from walk(ast, False)


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


def evaluate(value: Any, context: Mapping[str, Any]) -> Any:
    """Resolve every template inside ``value`` (recursing into lists and mappings) against ``context``.

    A string that is exactly one expression returns the expression's value with its type; other strings with
    templates return text; everything else is returned unchanged. Raises :class:`ExpressionError`.
    """
    if isinstance(value, str):
        return _evaluate_string(value, context) if has_template(value) else value
    if isinstance(value, Mapping):
        return {k: evaluate(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [evaluate(v, context) for v in value]
    return value


def _evaluate_string(value: str, context: Mapping[str, Any]) -> Any:
    template = parse(value)
    try:
        if template.expression is not None:
            result = _compiled_expression(template.expression)(**context)
            if isinstance(result, jinja2.Undefined):
                result._fail_with_undefined_error()
            return result
        return _compiled_template(value).render(**context)
    except jinja2.UndefinedError as e:
        raise ExpressionError(
            f"{e.message} in {value!r}",
            code="expr.undefined",
            hint="check the field path against the upstream node's recorded output",
        ) from None
    except SecurityError as e:
        raise ExpressionError(
            f"refused by the expression sandbox: {e}",
            code="expr.forbidden",
            hint="expressions can read data and call filters; they cannot reach Python internals",
        ) from None
    except ExpressionError:
        raise
    except (
        ArithmeticError,
        TypeError,
        ValueError,
        LookupError,
        RecursionError,
        jmespath.exceptions.JMESPathError,
    ) as e:
        raise ExpressionError(
            f"expression failed: {type(e).__name__}: {e} in {value!r}",
            code="expr.failed",
            hint="check the types of the values the expression combines",
        ) from None


@lru_cache(maxsize=4096)
def _compiled_expression(expression: str) -> Any:
    return environment().compile_expression(expression, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> jinja2.Template:
    return environment().from_string(source)
