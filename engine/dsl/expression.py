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
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MappingView
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes as jn
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.parser import Parser

from engine.dsl.sandbox import (
    _BUDGET,
    _CHARGED,
    _CONCAT,
    _LOOP,
    MAX_BRACKETS,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_SIZE,
    MAX_SOURCE,
    MAX_STEPS,
    _Budget,
    _LimitExceeded,
    environment,
)
from engine.errors import IonfluxError

_SINGLE = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.S)
ROOTS = ("inputs", "trigger", "nodes", "secrets", "run", "item", "index")
#: filters that hand a value on unchanged (``a ~ b`` joins through _CONCAT, ``in`` tests through _CHARGED)
_PASS_THROUGH = frozenset({_CONCAT, _CHARGED, "string", "default"})

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


class _NotJSON(Exception):
    """A typed result holds something JSON cannot represent (reported as ``expr.failed``)."""


@dataclass(frozen=True, slots=True)
class Reference:
    """A name an expression reads, with the constant part of its access path (``nodes.fetch.output.body``)."""

    root: str
    path: tuple[str | int, ...] = ()
    #: the value is passed through a filter or a call (``secrets.x | upper``), not used as it is
    transformed: bool = False

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
    stack: list[tuple[jn.Node, bool, jn.Node | None]] = [(ast, False, None)]
    while stack:
        node, in_chain, parent = stack.pop()
        if isinstance(node, jn.Getattr | jn.Getitem | jn.Name) and not in_chain:
            ref = _unwind(node)
            if ref is not None and ref.root in free:
                if ref.root == "secrets" and (_transforms(parent) or _sliced(node)):  # only secrets care
                    ref = Reference(ref.root, ref.path, transformed=True)
                yield ref
        chain_child = node.node if isinstance(node, jn.Getattr | jn.Getitem) else None
        stack.extend((child, child is chain_child, node) for child in reversed(list(node.iter_child_nodes())))


def _transforms(parent: jn.Node | None) -> bool:
    """Whether ``parent`` turns a value into another one (a filter, a call), unlike output, ``~`` or tests."""
    if isinstance(parent, jn.Filter):
        return parent.name not in _PASS_THROUGH
    return isinstance(parent, jn.Call)


def _sliced(node: jn.Node) -> bool:
    """Whether an access chain indexes with something other than a constant (``x[1:]``, ``x[i]``)."""
    while isinstance(node, jn.Getattr | jn.Getitem):
        if isinstance(node, jn.Getitem) and not isinstance(node.arg, jn.Const):
            return True
        node = node.node
    return False


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
