"""The expression language: typed single expressions, text templates, references, and the sandbox."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.dsl import expression
from engine.dsl.expression import (
    ExpressionError,
    Reference,
    evaluate,
    parse,
    parse_bare,
    single_expression,
)
from engine.dsl.sandbox import MAX_BRACKETS, MAX_DEPTH, MAX_SOURCE, environment

CONTEXT: dict[str, Any] = {
    "inputs": {"days": 7, "name": "123", "tags": ["a", "b"]},
    "secrets": {"token": "s3cr3t"},
    "nodes": {"fetch": {"output": {"body": {"orders": [{"total": 150}, {"total": 5}]}}, "status": "succeeded"}},
    "run": {"id": "r1", "error": None},
    "trigger": {"body": {"text": "hi"}},
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.days }}", 7),
        ("{{ inputs.name }}", "123"),  # a string stays a string (no literal_eval surprise)
        ("{{ inputs.tags }}", ["a", "b"]),
        ("  {{ nodes.fetch.output.body.orders | length }}  ", 2),
        ("{{ nodes.fetch.output.body.orders | selectattr('total', 'gt', 100) | list }}", [{"total": 150}]),
        ("{{ nodes.fetch.output.body | jmespath('orders[?total > `100`].total') }}", [150]),
        ("{{ inputs.days > 3 and nodes.fetch.status == 'succeeded' }}", True),
        ("{{ {'a': inputs.days} | tojson }}", '{"a": 7}'),
        ("{{ '[1, 2]' | fromjson }}", [1, 2]),
        ("{{ run.error }}", None),
        ("days={{ inputs.days }}", "days=7"),
        ("{% for t in inputs.tags %}{{ t }};{% endfor %}", "a;b;"),
        ("<b>{{ trigger.body.text }}</b>", "<b>hi</b>"),  # no HTML autoescaping in flows
        ("no template here", "no template here"),
    ],
)
def test_evaluation_keeps_the_type_of_a_single_expression(template: str, expected: Any) -> None:
    assert evaluate(template, CONTEXT) == expected


def test_evaluation_recurses_into_mappings_and_lists() -> None:
    value = {"url": "https://x/{{ inputs.days }}", "list": ["{{ inputs.days }}", 3], "n": None}
    assert evaluate(value, CONTEXT) == {"url": "https://x/7", "list": [7, 3], "n": None}


def test_references_list_every_name_read_with_its_constant_path() -> None:
    template = parse(
        "{{ nodes.fetch.output.body['orders'][0].total }} {{ secrets.token }} "
        "{% for o in nodes.other.output %}{{ o.x }}{{ item.a }}{% endfor %}{{ inputs[inputs.days] }}"
    )
    assert set(template.references) == {
        Reference("nodes", ("fetch", "output", "body", "orders", 0, "total")),
        Reference("secrets", ("token",)),
        Reference("nodes", ("other", "output")),
        Reference("item", ("a",)),
        Reference("inputs", ()),
        Reference("inputs", ("days",)),
    }


def test_single_expression_detection() -> None:
    assert single_expression("{{ a }}") == " a "
    assert single_expression("x {{ a }}") is None
    assert single_expression("{{ a }} {{ b }}") is None


@pytest.mark.parametrize("template", ["{{ a. }}", "{{ a }", "{% if %}", "{{ 'x' | }}", "{% for %}{% endfor %}"])
def test_syntax_errors_are_reported_with_a_code(template: str) -> None:
    with pytest.raises(ExpressionError) as e:
        parse(template)
    assert e.value.code == "expr.syntax" and e.value.line >= 1 and e.value.hint


def test_bare_expressions_refuse_braces() -> None:
    assert parse_bare("item.total > 100").references == (Reference("item", ("total",)),)
    with pytest.raises(ExpressionError):
        parse_bare("{{ item.total }}")


@pytest.mark.parametrize(
    "attack",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ ().__class__.__bases__[0].__subclasses__() }}",
        "{{ self.__init__.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ config.items() }}",
        "{{ request.application.__globals__ }}",
        "{{ '{0.__class__}'.format('') }}",
        "{{ '{0.__class__.__base__}'.format_map({'0': ''}) }}",
        "{{ ''|attr('__class__') }}",
        "{{ inputs|attr('__class__') }}",
        "{{ inputs.__class__.__init__.__globals__ }}",
        "{{ nodes.fetch.__dict__ }}",
        "{{ range.__self__ }}",
        "{{ (1).__class__.__base__.__subclasses__() }}",
        "{{ inputs.tags.pop() }}",
        "{{ inputs.update({'days': 0}) }}",
        "{% set x = inputs.tags %}{{ x.append(1) }}",
        "{{ ''.join.__self__ }}",
        "{{ dict.mro() }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
        "{{ range(10**9) | list }}",
        "{{ 'a' * 10**9 }}",
        "{{ [0] * 10**9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ 1 / 0 }}",
        "{{ inputs.missing.deeper }}",
    ],
)
def test_the_sandbox_refuses_known_escapes_and_bombs(attack: str) -> None:
    # Given a template that tries to reach Python internals, mutate data or allocate without bound
    # When it is evaluated, Then it fails with an ExpressionError and never returns internals
    with pytest.raises(ExpressionError) as e:
        evaluate(attack, CONTEXT)
    assert e.value.code in {"expr.forbidden", "expr.undefined", "expr.failed"}


def test_data_is_not_mutated_by_evaluation() -> None:
    before = repr(CONTEXT)
    for template in ("{{ inputs.tags | sort }}", "{{ inputs.tags | reverse | list }}"):
        evaluate(template, CONTEXT)
    assert repr(CONTEXT) == before


def test_undefined_reference_names_the_missing_field() -> None:
    with pytest.raises(ExpressionError) as e:
        evaluate("{{ nodes.fetch.output.bdy }}", CONTEXT)
    assert e.value.code == "expr.undefined" and "bdy" in e.value.message


def test_unknown_filters_and_tests_get_a_suggestion() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("{{ inputs.x | efault('y') }}")
    assert e.value.code == "expr.unknown_filter" and "'default'" in e.value.message
    with pytest.raises(ExpressionError) as e:
        parse("{{ inputs.x is nmber }}")
    assert e.value.code == "expr.unknown_test" and "'number'" in e.value.message


def test_mapping_keys_win_over_dict_methods() -> None:
    # Given data whose keys are also dict method names (a node called `copy`, a payload field `items`)
    context = {"nodes": {"copy": {"output": {"text": "hi"}}}, "trigger": {"data": {"items": ["a", "b"], "keys": 2}}}
    # Then dot access reads the data, never the method
    assert evaluate("{{ nodes.copy.output.text }}", context) == "hi"
    assert evaluate("{{ trigger.data.items | join(',') }}", context) == "a,b"
    assert evaluate("{{ trigger.data.keys }}", context) == 2
    with pytest.raises(ExpressionError):
        evaluate("{{ trigger.data.values() }}", context)


# --- bounds: parsing never crashes, evaluation never runs away (review findings) ----------------------------------


def _deep_call(depth: int, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` from ``depth`` frames down: the limits must hold however deep the caller's stack already is."""
    return fn() if depth == 0 else _deep_call(depth - 1, fn)


@pytest.mark.parametrize(
    "template",
    [
        "{{ " + "(" * 80 + "1" + ")" * 80 + " }}",
        "{{ " + "[" * 80 + "1" + "]" * 80 + " }}",
        "{{ " + "not " * 400 + "1 }}",
        "{{ " + "- " * 400 + "1 }}",
        "{{ " + " + ".join(["1"] * 500) + " }}",
        "{{ " + " and ".join(["inputs.days"] * 300) + " }}",
        "{{ inputs" + ".a" * 5_000 + " }}",  # 10,000 characters: under the length limit, over the depth limit
        "{{ inputs" + ".a" * 20_000 + " }}",
        "{{ 1" + "|abs" * 100 + " }}",
        "{% if 1 %}" * 100 + "x" + "{% endif %}" * 100,
        "{% for x in [1] %}" * 21 + "x" + "{% endfor %}" * 21,  # Python allows 20 nested loops
        "{{ 1 }}" + "x" * 20_000,
        "{{ inputs.days }}" + " " * 20_000,
    ],
)
def test_pathological_sources_are_too_complex_not_a_crash(template: str) -> None:
    # Given a value that would overflow Jinja's recursive parser or compiler (or is just too long)
    # When it is parsed, or evaluated, even from deep in a caller's stack
    # Then the only error is an ExpressionError with its own code, a message and a hint
    for call in (
        lambda: parse(template),
        lambda: evaluate(template, CONTEXT),
        lambda: _deep_call(300, lambda: parse(template)),
    ):
        with pytest.raises(ExpressionError) as e:
            call()
        assert e.value.code == "expr.too_complex" and e.value.message and e.value.hint


def _nested_list(depth: int) -> Any:
    return 1 if depth == 0 else [_nested_list(depth - 1)]


def test_the_nesting_limits_are_exact_and_independent_of_the_caller() -> None:
    # Given values exactly at the limits
    padded = "{{ 'x' }}"
    at_limit = {
        "{{ " + "(" * MAX_BRACKETS + "1" + ")" * MAX_BRACKETS + " }}": 1,
        "{{ " + "[" * MAX_BRACKETS + "1" + "]" * MAX_BRACKETS + " }}": _nested_list(MAX_BRACKETS),
        "{{ " + " + ".join(["1"] * (MAX_DEPTH - 2)) + " }}": MAX_DEPTH - 2,  # Template > Output > 61 Adds > Const
        "{% for x in [1] %}" * 20 + "x" + "{% endfor %}" * 20: "x",
        padded + " " * (MAX_SOURCE - len(padded)): "x",
    }
    for template, expected in at_limit.items():
        # When they are compiled and evaluated 300 frames down, Then they work
        expression._compile.cache_clear()
        assert _deep_call(300, lambda t=template: evaluate(t, CONTEXT)) == expected  # type: ignore[misc]
    # And one more is refused
    for over in (
        "{{ " + "(" * (MAX_BRACKETS + 1) + "1" + ")" * (MAX_BRACKETS + 1) + " }}",
        "{{ " + " + ".join(["1"] * (MAX_DEPTH - 1)) + " }}",
        "{% for x in [1] %}" * 21 + "x" + "{% endfor %}" * 21,
        padded + " " * (MAX_SOURCE - len(padded) + 1),
    ):
        with pytest.raises(ExpressionError) as e:
            parse(over)
        assert e.value.code == "expr.too_complex"


def test_a_caller_deep_in_its_stack_gets_too_complex_not_a_recursion_error() -> None:
    # Given a value at the limits, and a caller that leaves fewer frames than Jinja's parser needs for it
    template = "{{ " + "(" * MAX_BRACKETS + "1" + ")" * MAX_BRACKETS + " }}"
    depth = sys.getrecursionlimit() - 150
    for call in (lambda: parse(template), lambda: evaluate(template, CONTEXT)):
        expression._compile.cache_clear()
        parse.cache_clear()
        # Then the RecursionError is reported as expr.too_complex
        with pytest.raises(ExpressionError) as e:
            _deep_call(depth, call)
        assert e.value.code == "expr.too_complex"


def test_reference_walk_is_iterative() -> None:
    # A 20,000-step chain is refused by parse(), but the walker itself must not depend on Python's stack
    ast = environment().parse("{{ inputs" + ".a" * 20_000 + " }}")
    (ref,) = expression._references(ast, {"inputs"})
    assert ref.root == "inputs" and len(ref.path) == 20_000


RUNAWAY: dict[str, Any] = {**CONTEXT, "inputs": {**CONTEXT["inputs"], "big": list(range(2_000))}}


@pytest.mark.parametrize(
    "attack",
    [
        # padding and formatting: refused before the string is built
        "{{ 'x'|center(300000000) }}",
        "{{ 'x'.center(300000000) }}",
        "{{ 'x'.ljust(300000000) }}",
        "{{ 'x'.rjust(300000000) }}",
        "{{ 'x'.zfill(300000000) }}",
        "{{ '\t'.expandtabs(300000000) }}",
        "{{ '%0300000000d' % 1 }}",
        "{{ '%.300000000f' % 1.5 }}",
        "{{ '%*d' % (300000000, 1) }}",
        "{{ '%(a)0300000000d' % {'a': 1} }}",
        "{{ '%0300000000d'|format(1) }}",
        "{{ '{:>300000000}'.format(1) }}",
        "{{ '{a:>300000000}'.format_map({'a': 1}) }}",
        "{{ '{:{}}'.format(1, 300000000) }}",
        "{{ 'x'|indent(300000000) }}",
        "{{ ('a\n' * 500000)|indent(10) }}",
        "{{ 'a b c'|wordwrap(1, wrapstring='x' * 1000000) }}",
        "{{ ('a' * 1000000)|replace('a', 'bb') }}",
        "{{ ('a' * 1000000).replace('a', 'bb') }}",
        "{{ ('a' * 1000)|replace('', 'x' * 1000) }}",
        "{{ ('a' * 1000).translate({97: 'b' * 10000}) }}",
        "{{ (['x'] * 100000)|join('y' * 100) }}",
        "{{ ('y' * 100).join(['x'] * 100000) }}",
        "{{ (1).to_bytes(300000000, 'big') }}",
        "{{ [1]|batch(300000000, 0)|list }}",
        "{{ [1]|slice(300000000)|list }}",
        "{{ 1|round(100000000, 'floor') }}",
        "{{ [1]|tojson(300000000) }}",
        "{{ ('a' * 600000) ~ ('a' * 600000) }}",
        "{{ ('a' * 600000) + ('a' * 600000) }}",
        # integers: the result's width, not only the exponent
        "{{ ((9 ** 256) ** 256) ** 256 }}",
        "{{ 2 ** 4096 }}",
        "{{ (2 ** 4000) * (2 ** 4000) }}",
        # work: loops, scans and repetition
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        "{% for a in inputs.big %}{% for b in inputs.big %}{% endfor %}{% endfor %}",
        "{% for a in inputs.big %}{% if a in inputs.big %}{% endif %}{% endfor %}",
        "{% for a in inputs.big %}{{ inputs.big|sort|first }}{% endfor %}",
        "{% for n in [1] recursive %}{{ loop([n]) }}{% endfor %}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
        # text: the result and what a template writes on the way
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        "{% set s %}{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}{{ s|length }}",
        "{% for i in range(2000) %}" + "x" * 1_000 + "{% endfor %}",
        # sharing: cheap to build, billions of items once written out
        "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ [b] * 1000 }}",
        "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ ([b] * 1000)|string|length }}",
        "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ [b, b, b] }}",
        "{% set a = [1] * 1000 %}{% set b = [a] * 1000 %}{{ ([b] * 1000)|tojson }}",
        "{% set a = [1,1,1,1,1,1,1,1,1,1] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}{% set c = [b,b,b,b,b,b,b,b,b,b] %}"
        "{% set d = [c,c,c,c,c,c,c,c,c,c] %}{% set e = [d,d,d,d,d,d,d,d,d,d] %}{% set f = [e,e,e,e,e,e,e,e,e,e] %}"
        "{{ f }}",
    ],
)
def test_runaway_evaluations_are_refused_quickly(attack: str) -> None:
    # Given a template that would allocate gigabytes or run for minutes
    # When it is evaluated, Then it is refused as expr.forbidden, well before that
    started = time.process_time()
    with pytest.raises(ExpressionError) as e:
        evaluate(attack, RUNAWAY)
    assert e.value.code == "expr.forbidden", e.value.message
    assert e.value.hint
    assert time.process_time() - started < 2.0


def test_the_step_budget_is_shared_by_one_evaluate_call() -> None:
    loop = "{% for a in range(10000) %}{% for b in range(60) %}{% endfor %}{% endfor %}"  # 610,000 steps
    assert evaluate(loop, {}) == ""
    with pytest.raises(ExpressionError) as e:
        evaluate({"a": loop, "b": [loop]}, {})
    assert e.value.code == "expr.forbidden" and "steps" in e.value.message
    assert evaluate(loop, {}) == ""  # and the next call starts afresh


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 'ab'|center(6) }}", "  ab  "),
        ("{{ 'ab'.ljust(4) ~ '|' }}", "ab  |"),
        ("{{ '%05d' % 42 }}", "00042"),
        ("{{ '%(n)s=%(n)s' % {'n': 'x'} }}", "x=x"),
        ("{{ '%s-%s'|format('a', 'b') }}", "a-b"),
        ("{{ '{:>4}|{}'.format('a', inputs.days) }}", "   a|7"),
        ("{{ 'a-b'|replace('-', '+') }}", "a+b"),
        ("{{ inputs.tags|join(', ') }}", "a, b"),
        ("{{ '-'.join(inputs.tags|map('upper')) }}", "A-B"),
        ("{{ 'a\nb'|indent(2, first=true) }}", "  a\n  b"),
        ("{{ [1, 2, 3]|batch(2, 0)|list }}", [[1, 2], [3, 0]]),
        ("{{ [1, 2, 3]|slice(2)|list }}", [[1, 2], [3]]),
        ("{{ [[1], [2, 3]]|sum(start=[]) }}", [1, 2, 3]),
        ("{{ ([[1]] * 400000)|sum(start=[])|length }}", 400_000),
        ("{{ [1, 2]|sum }}", 3),
        ("{{ 1.2345|round(2) }}", 1.23),
        ("{{ 2 ** 10 }}", 1024),
        ("{{ (2 ** 4095).bit_length() }}", 4096),
        ("{{ 2.0 ** 1000 > 1 }}", True),
        ("{{ -1 }}", -1),
        ("{{-1}}", -1),  # a typed value: minus one, not Jinja's whitespace control
        ("{{ 'a' ~ inputs.days ~ 'b' }}", "a7b"),
        ("{{ 'a' in inputs.tags }}", True),
        ("{{ inputs.tags|select('in', ['b'])|list }}", ["b"]),
        (
            "{% for t in inputs.tags %}{{ loop.index }}/{{ loop.length }}{{ '' if loop.last else ',' }}{% endfor %}",
            "1/2,2/2",
        ),
        ("{% for n in [{'v': 1, 'c': [{'v': 2, 'c': []}]}] recursive %}{{ n.v }}{{ loop(n.c) }}{% endfor %}", "12"),
        ("{% macro li(x) %}<{{ x }}>{% endmacro %}{% for t in inputs.tags %}{{ li(t) }}{% endfor %}", "<a><b>"),
        ("{% set s %}{{ inputs.days }}!{% endset %}{{ s }}{{ s }}", "7!7!"),
        ("{{ inputs|tojson(2)|length > 10 }}", True),
        ("{{ ('x' * 1000000)|length }}", 1_000_000),
    ],
)
def test_bounded_operations_still_work_below_their_bounds(template: str, expected: Any) -> None:
    assert evaluate(template, CONTEXT) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ {'b': 2, 'a': 1}|dictsort }}", [["a", 1], ["b", 2]]),
        ("{{ (1, 2) }}", [1, 2]),
        ("{{ 1, 2 }}", [1, 2]),
        ("{{ {'a': (1, (2, 3))} }}", {"a": [1, [2, 3]]}),
        ("{{ inputs.tags|map('upper') }}", ["A", "B"]),  # a lazy map() is the list it stands for
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ inputs.tags|reverse }}", ["b", "a"]),
        ("{{ {'k': 'v'}|items }}", [["k", "v"]]),
        ("{{ '<b>'|e }}", "&lt;b&gt;"),
        ("{{ [inputs.tags, inputs.tags] }}", [["a", "b"], ["a", "b"]]),
    ],
)
def test_typed_results_are_json(template: str, expected: Any) -> None:
    result = evaluate(template, CONTEXT)
    assert result == expected
    assert json.loads(json.dumps(result)) == expected  # plain JSON types all the way down
    assert type(evaluate("{{ '<b>'|e }}", CONTEXT)) is str  # not Markup


@pytest.mark.parametrize(
    ("template", "what"),
    [
        ("{{ inputs.name.format }}", "function"),
        ("{{ inputs.tags.index }}", "function"),
        ("{{ range }}", "function"),
        ("{{ 'x'.encode() }}", "bytes"),
        ("{{ [1, 'x'.encode()] }}", "bytes"),
        ("{{ 1e308 * 10 }}", "inf"),
        ("{{ {'a': [1e308 * 10]} }}", "inf"),
        ("{{ {1: 'a'} }}", "key"),
        ("{{ self }}", "TemplateReference"),
    ],
)
def test_typed_results_that_are_not_json_fail(template: str, what: str) -> None:
    with pytest.raises(ExpressionError) as e:
        evaluate(template, CONTEXT)
    assert e.value.code == "expr.failed" and "not JSON" in e.value.message and what in e.value.message


def test_undefined_values_inside_a_typed_result_fail_with_their_own_error() -> None:
    with pytest.raises(ExpressionError) as e:
        evaluate("{{ [1, inputs.missing] }}", CONTEXT)
    assert e.value.code == "expr.undefined" and "missing" in e.value.message
    with pytest.raises(ExpressionError) as e:
        evaluate("{{ inputs.tags|map(attribute='__class__')|list }}", CONTEXT)
    assert e.value.code == "expr.forbidden" and "__class__" in e.value.message


def test_data_is_returned_as_is_even_when_large() -> None:
    # Given data read straight from the context (no copy, however large: it is not repetition)
    big = list(range(1_100_000))
    context = {"inputs": {"big": big, "obj": {"xs": [1, 2]}}}
    assert evaluate("{{ inputs.big }}", context) is big
    assert evaluate("{{ inputs.obj }}", context) is context["inputs"]["obj"]


def test_mapping_items_are_not_dict_methods_by_subscript_either() -> None:
    context = {"trigger": {"data": {"items": [1]}}}
    assert evaluate("{{ trigger.data['items'] }}", context) == [1]
    with pytest.raises(ExpressionError) as e:
        evaluate("{{ trigger.data['values']() }}", context)
    assert e.value.code == "expr.undefined"


def test_stray_brace_after_a_single_expression_is_a_syntax_error() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("{{ inputs.days }}}")
    assert e.value.code == "expr.syntax" and "braces" in e.value.message


def test_internal_filters_are_not_suggested() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("{{ inputs.x | efault('y') }}")
    assert "_ionflux" not in e.value.hint


JINJA_BITS = st.sampled_from(
    ["{{", "}}", "{%", "%}", "(", ")", "[", "]", "{", "}", " not ", "-", "+", "*", "**", "%", "~", "|", ",", ":",
     " in ", " if ", " else ", "inputs", ".tags", ".days", "[0]", "1", "9", "'x'", "''", " for x in ", "endfor",
     "endif", " set ", "=", "length", "center(", "join", "format(", "x", ".ljust(", "range(", "loop", " is ", "."]
)  # fmt: skip


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(JINJA_BITS, max_size=40).map("".join))
def test_parse_and_evaluate_raise_nothing_but_expression_errors(text: str) -> None:
    # Whatever a flow author (or a fuzzer) writes, parse() and evaluate() either succeed or raise ExpressionError
    try:
        parse(text)
    except ExpressionError:
        return
    with contextlib.suppress(ExpressionError):
        evaluate(text, CONTEXT)


def test_the_nondeterministic_random_filter_is_not_available() -> None:
    with pytest.raises(ExpressionError) as e:
        parse("{{ [1, 2] | random }}")
    assert e.value.code == "expr.unknown_filter"
