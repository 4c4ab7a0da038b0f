"""Sandboxed code built-ins: ``code.js`` (QuickJS in wasm), ``code.python`` (CPython wasm component),
``wasm.run`` (a registered wasm32-wasi transform). All run inside wasmtime with fuel, time and memory limits."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from typing import Any

from engine.dsl.expression import has_template
from engine.nodetypes.builtin._schema import ANY, NON_EMPTY, obj
from engine.nodetypes.registry import Finding, NodeType, flat_cost

MODULE_REF = re.compile(r"^[a-z][a-z0-9_-]*@\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_JS_MAIN = re.compile(r"\bfunction\s+main\s*\(|\b(?:const|let|var)\s+main\s*=")


def _python_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    code = with_.get("code")
    if not isinstance(code, str) or has_template(code):
        return
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        yield Finding(
            ("code",),
            "code.syntax",
            f"Python syntax error on line {e.lineno} of the code: {e.msg}",
            "fix the code; it must define def main(input): ... and return a JSON value",
            line=e.lineno or 0,
        )
        return
    if not any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
        yield Finding(
            ("code",),
            "code.no_main",
            "the code does not define a top-level function main(input)",
            "add: def main(input): return input",
        )


def _js_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    code = with_.get("code")
    if isinstance(code, str) and not has_template(code) and not _JS_MAIN.search(code):
        yield Finding(
            ("code",),
            "code.no_main",
            "the code does not define a function main(input)",
            "add: function main(input) { return input; }",
        )


def _module_check(with_: Mapping[str, Any]) -> Iterable[Finding]:
    module = with_.get("module")
    if isinstance(module, str) and not MODULE_REF.match(module):
        yield Finding(
            ("module",),
            "node.with_invalid",
            f"{module!r} is not a module reference",
            "write name@version with a semantic version, e.g. csv-to-json@1.0.0",
        )


_CODE_WITH = obj(
    {"code": NON_EMPTY, "input": ANY},
    "code",
)
_SANDBOX_COST = flat_cost(0.1, "flat: 0.1 C-ION per sandboxed execution (fuel-metered at run time)")

CODE_JS = NodeType(
    name="code.js",
    family="code",
    summary="Run inline JavaScript (QuickJS in wasm): function main(input) returns the output. No network/fs.",
    with_schema=_CODE_WITH,
    output_schema=ANY,
    capabilities=frozenset({"sandbox"}),
    cost=_SANDBOX_COST,
    check=_js_check,
    example={
        "input": "{{ nodes.fetch.output.body }}",
        "code": "function main(input) { return input.length; }",
    },
)

CODE_PYTHON = NodeType(
    name="code.python",
    family="code",
    summary="Run inline Python (CPython wasm component): def main(input) returns the output. No network/fs.",
    with_schema=_CODE_WITH,
    output_schema=ANY,
    capabilities=frozenset({"sandbox"}),
    cost=_SANDBOX_COST,
    check=_python_check,
    example={"input": "{{ nodes.fetch.output.body }}", "code": "def main(input):\n    return len(input)\n"},
)

WASM_RUN = NodeType(
    name="wasm.run",
    family="code",
    summary="Run a registered WebAssembly transform (wasm32-wasi): JSON in on stdin, JSON out on stdout.",
    with_schema=obj({"module": NON_EMPTY, "input": ANY}, "module"),
    output_schema=ANY,
    capabilities=frozenset({"sandbox"}),
    cost=_SANDBOX_COST,
    check=_module_check,
    example={"module": "csv-to-json@1.0.0", "input": "{{ nodes.fetch.output.body }}"},
)

TYPES = [CODE_JS, CODE_PYTHON, WASM_RUN]
