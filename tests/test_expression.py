"""The expression language: typed single expressions, text templates, references, and the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from engine.dsl.expression import ExpressionError, Reference, evaluate, parse, parse_bare, single_expression

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
