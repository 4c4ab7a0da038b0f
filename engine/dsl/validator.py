"""Load and validate a FluxGraph document: YAML text -> located parse -> typed model -> whole-flow checks.

::

    report = check_flow(text, "flows/digest.yaml")   # never raises for a bad flow; report.issues says why
    flow = load_flow(text, "flows/digest.yaml")      # raises FlowValidationError listing every error

Both accept the same input a co-pilot draft produces (``check_data``), so Jules's flows pass the same validator
as a person's YAML.

Validation has two phases. Structure first (YAML, then the typed model): every structural problem in the file
is reported. Only a structurally valid flow reaches the whole-flow checks (graph, types, expressions,
permissions, triggers), which again report every problem; a flow with structural errors shows those alone,
since the later checks would be guessing at what the document means.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from engine.dsl.issue import FlowValidationError, Issue, Location
from engine.dsl.model import Flow
from engine.dsl.semantics import Checker
from engine.dsl.source import Document, Limits, SourceMap, parse_yaml
from engine.dsl.structure import structural_issues
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of validating one document: the flow (when it parsed) and every issue, sorted."""

    file: str
    flow: Flow | None
    issues: tuple[Issue, ...]
    source: SourceMap | None = None

    @property
    def errors(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> tuple[Issue, ...]:
        return tuple(i for i in self.issues if i.severity == "warning")

    @property
    def ok(self) -> bool:
        return self.flow is not None and not self.errors

    def raise_for_errors(self) -> Flow:
        if self.flow is None or self.errors:
            raise FlowValidationError(self.issues)
        return self.flow


def check_flow(
    text: str | bytes, file: str = "<flow>", *, registry: Registry | None = None, limits: Limits | None = None
) -> Report:
    """Validate YAML text; collect every problem instead of stopping at the first."""
    try:
        document = parse_yaml(text, file, limits)
    except FlowValidationError as e:
        return Report(file, None, tuple(e.issues))
    return check_document(document, file, registry=registry)


def check_data(data: Mapping[str, Any], file: str = "<flow>", *, registry: Registry | None = None) -> Report:
    """Validate an already-parsed document (a co-pilot draft, an API body); issues have paths but no lines."""
    return check_document(Document(dict(data), SourceMap(file)), file, registry=registry)


def check_document(document: Document, file: str, *, registry: Registry | None = None) -> Report:
    registry = registry or builtin_registry()
    if not isinstance(document.data, dict):
        issue = Issue(
            "schema.invalid_type",
            f"a flow is a mapping of fields (fluxgraph, id, nodes, …), not {type(document.data).__name__}",
            document.source.locate(()),
            hint="start the file with `fluxgraph: 1` on its own line",
        )
        return Report(file, None, (issue,), document.source)
    try:
        flow = Flow.model_validate(document.data)
    except ValidationError as e:
        issues = structural_issues(e, document.data, document.source, file)
        return Report(file, None, tuple(sorted(issues, key=Issue.sort_key)), document.source)
    issues = Checker(flow, registry, document.source, file).run()
    return Report(file, flow, tuple(sorted(issues, key=Issue.sort_key)), document.source)


def load_flow(text: str | bytes, file: str = "<flow>", *, registry: Registry | None = None) -> Flow:
    """Parse and validate; raise :class:`FlowValidationError` (all issues, located) unless the flow is valid."""
    return check_flow(text, file, registry=registry).raise_for_errors()


def load_data(data: Mapping[str, Any], file: str = "<flow>", *, registry: Registry | None = None) -> Flow:
    return check_data(data, file, registry=registry).raise_for_errors()


__all__ = ["Location", "Report", "check_data", "check_document", "check_flow", "load_data", "load_flow"]
