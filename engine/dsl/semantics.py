"""Whole-document checks on a structurally valid flow: ids, graph, types, expressions, permissions, triggers.

Every check appends :class:`Issue` values and goes on, so one ``ionflux validate`` lists every problem. Scopes
follow FLUXGRAPH.md: the top-level ``nodes``, each ``foreach``'s ``do`` and ``on_failure`` are separate node
lists; ``needs`` and ``on_error`` name siblings in the same list; a node may read the outputs of its ancestors,
and nodes inside ``do`` also see the ancestors of their ``foreach``.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from croniter import CroniterBadDateError, croniter
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

from engine.dsl import expression, graph, netpolicy
from engine.dsl.forecast import node_forecast
from engine.dsl.issue import Issue, Location, Path, Severity
from engine.dsl.metaschema import instance_problems, schema_problem
from engine.dsl.model import (
    AnyNode,
    ApprovalNode,
    CronTrigger,
    EventTrigger,
    Flow,
    ForeachNode,
    StepNode,
    WebhookTrigger,
)
from engine.dsl.source import SourceMap
from engine.dsl.structure import suggest
from engine.nodetypes.registry import NodeType, Registry

NODE_FIELDS = (
    "output",
    "status",
    "error",
    "attempts",
    "started_at",
    "finished_at",
    "duration_ms",
    "cost_cion",
)
RUN_FIELDS = ("id", "flow_id", "version_id", "status", "started_at", "trigger", "error", "attempt", "url")
_CRON_REFERENCE = datetime(2024, 1, 1)
JSON_TYPES = ("string", "integer", "number", "boolean", "object", "array", "null")
_SUBJECT_TOKEN = re.compile(r"^[^\s.*>]+$")


@dataclass(frozen=True, slots=True)
class Site:
    """One node and where it sits: its path, its scope (list) and the foreach nodes around it."""

    node: AnyNode
    path: Path
    scope: str
    enclosing: tuple[str, ...] = ()


@dataclass
class Checker:
    flow: Flow
    registry: Registry
    source: SourceMap | None
    file: str
    issues: list[Issue] = field(default_factory=list)
    sites: dict[str, Site] = field(default_factory=dict)
    scopes: dict[str, list[Site]] = field(default_factory=dict)
    ancestry: dict[str, graph.Ancestry] = field(default_factory=dict)
    used_secrets: set[str] = field(default_factory=set)
    # nodes whose needs/on_error name nothing: their scope's ancestry is partial
    broken_needs: set[str] = field(default_factory=set)
    # second and later nodes with a taken id: checked on their own; the graph uses the first
    duplicates: list[Site] = field(default_factory=list)

    # --- reporting ------------------------------------------------------------------------------------------

    def report(
        self,
        code: str,
        message: str,
        path: Path,
        *,
        hint: str = "",
        node_id: str | None = None,
        key: bool = False,
        severity: Severity = "error",
        line: int = 0,
    ) -> None:
        """Record an issue at ``path`` (its key when ``key``; ``line`` N of a multi-line text value)."""
        if self.source is None:
            location = Location(self.file)
        elif line > 1:
            location = self.source.locate_in_value(path, line)
        else:
            location = self.source.locate(path, key=key)
        self.issues.append(Issue(code, message, location, path, node_id, hint, severity))

    # --- driver ---------------------------------------------------------------------------------------------

    def run(self) -> list[Issue]:
        self._index(self.flow.nodes, ("nodes",), "main", ())
        self._index(self.flow.on_failure, ("on_failure",), "on_failure", ())
        acyclic = self._check_graph()
        for site in self.sites.values():
            self._check_node(site, acyclic)
        for site in self.duplicates:
            self._check_local(site)
        self._check_outputs(acyclic)
        self._check_flow_level()
        return self.issues

    def _index(self, nodes: tuple[AnyNode, ...], base: Path, scope: str, enclosing: tuple[str, ...]) -> None:
        members = self.scopes.setdefault(scope, [])
        for i, node in enumerate(nodes):
            path = (*base, i)
            if node.id in self.sites:
                first = self.sites[node.id]
                line = self.source.locate((*first.path, "id")).line if self.source else 0
                self.report(
                    "node.duplicate_id",
                    f"duplicate node id '{node.id}'" + (f" (first used at line {line})" if line else ""),
                    (*path, "id"),
                    hint="node ids must be unique in the whole flow, including foreach bodies and on_failure",
                    node_id=node.id,
                )
                self.duplicates.append(Site(node, path, scope, enclosing))
                continue
            if node.id in ("fail", "continue"):
                self.report(
                    "node.reserved_id",
                    f"'{node.id}' cannot be a node id: `on_error: {node.id}` already means something else",
                    (*path, "id"),
                    hint=f"rename it, e.g. {node.id}_step",
                    node_id=node.id,
                )
            site = Site(node, path, scope, enclosing)
            self.sites[node.id] = site
            members.append(site)
            if isinstance(node, ForeachNode):
                self._index(node.do, (*path, "do"), f"do:{node.id}", (*enclosing, node.id))

    # --- graph ----------------------------------------------------------------------------------------------

    def _check_graph(self) -> bool:
        acyclic = True
        for scope, members in self.scopes.items():
            ids = {s.node.id for s in members}
            for site in members:
                node = site.node
                seen: set[str] = set()
                for k, need in enumerate(node.needs):
                    where = (*site.path, "needs", k)
                    if need in seen:
                        self.report(
                            "graph.duplicate_need",
                            f"'{need}' is listed twice in needs",
                            where,
                            node_id=node.id,
                            severity="warning",
                            hint="remove the repeated entry",
                        )
                    seen.add(need)
                    if need == node.id:
                        self.report(
                            "graph.cycle",
                            f"node '{node.id}' needs itself",
                            where,
                            node_id=node.id,
                            hint="remove it from its own needs",
                        )
                    elif need not in ids:
                        self.broken_needs.add(node.id)
                        self._unknown_target("graph.unknown_need", need, ids, where, site, "needs")
                target = node.on_error
                if target not in ("fail", "continue"):
                    where = (*site.path, "on_error")
                    if target == node.id:
                        self.report(
                            "graph.cycle",
                            f"node '{node.id}' routes its errors to itself",
                            where,
                            node_id=node.id,
                            hint="use on_error: fail, continue, or another node's id",
                        )
                    elif target not in ids:
                        self.broken_needs.add(node.id)
                        self._unknown_target("graph.unknown_error_target", target, ids, where, site, "on_error")
            order = [s.node.id for s in members]
            scope_edges = [e for e in graph.edges([s.node for s in members]) if e.source != e.target]
            cycles = graph.find_cycles(order, scope_edges)
            for cycle in cycles:
                acyclic = False
                first = self.sites[cycle[0]]
                self.report(
                    "graph.cycle",
                    "cycle: " + " → ".join(cycle),
                    (*first.path, "needs"),
                    node_id=cycle[0],
                    hint="a flow is a directed acyclic graph: remove one of these needs (or on_error) links",
                )
            if not cycles:
                self.ancestry[scope] = graph.ancestry(order, scope_edges)
        return acyclic

    def _unknown_target(self, code: str, target: str, ids: set[str], where: Path, site: Site, what: str) -> None:
        elsewhere = self.sites.get(target)
        if elsewhere is not None:
            message = f"{what} names '{target}', which is in another node list ({_scope_name(elsewhere.scope)})"
            hint = f"{what} can only name nodes in the same list ({_scope_name(site.scope)})"
        else:
            guess = suggest(target, ids)
            message = f"{what} names '{target}', which is not a node" + (f"; did you mean '{guess}'?" if guess else "")
            hint = f"node ids here: {', '.join(sorted(ids))}" if ids else "add the node first"
        self.report(code, message, where, node_id=site.node.id, hint=hint)

    def visible(self, site: Site) -> Container[str] | None:
        """Nodes whose outputs ``site`` may read (None when cycles make that unknowable)."""
        scopes = [site.scope, *(self.sites[e].scope for e in site.enclosing)]
        if any(scope not in self.ancestry for scope in scopes):
            return None
        return _Visibility(self, site)

    def can_read(self, site: Site, target: str) -> bool:
        """O(1) per question: per-node sets of readable nodes would make validation quadratic."""
        if site.scope == "on_failure":
            target_site = self.sites.get(target)
            if target_site is not None and target_site.scope == "main":
                return True
        if self.ancestry[site.scope].is_ancestor(target, site.node.id):
            return True
        return bool(site.enclosing) and self.can_read(self.sites[site.enclosing[-1]], target)

    # --- nodes ----------------------------------------------------------------------------------------------

    def _check_local(self, site: Site) -> None:
        """The checks that need no graph: type, `with`, control-node fields, expression syntax."""
        node_type = self._check_type(site)
        node = site.node
        if isinstance(node, StepNode | ApprovalNode) and node_type is not None:
            self._check_with(site, node_type, node.with_)
        self._check_applicable(site)
        for path, text in self._expression_fields(site, node_type):
            self._parse(path, text, node.id)

    def _check_node(self, site: Site, acyclic: bool) -> None:
        node = site.node
        node_type = self._check_type(site)
        if isinstance(node, StepNode | ApprovalNode) and node_type is not None:
            self._check_with(site, node_type, node.with_)
        if isinstance(node, ForeachNode) and isinstance(node.items, str) and not expression.has_template(node.items):
            self.report(
                "node.items_invalid",
                "`items` must be a list or an expression",
                (*site.path, "items"),
                node_id=node.id,
                hint='e.g. items: "{{ nodes.fetch.output.body.orders }}"',
            )
        if isinstance(node.if_, str) and not expression.has_template(node.if_):
            self.report(
                "node.if_invalid",
                f"`if` must be true/false or an expression, not the text {node.if_!r}",
                (*site.path, "if"),
                node_id=node.id,
                hint=f'wrap it in braces: if: "{{{{ {node.if_} }}}}"',
            )
        self._check_applicable(site)
        secrets = self._check_expressions(site, acyclic, node_type)
        if node_type is not None and isinstance(node, StepNode):
            self._check_permissions(site, node_type, secrets)

    def _check_applicable(self, site: Site) -> None:
        node = site.node
        if isinstance(node, ForeachNode | ApprovalNode):
            for name in ("retry", "permissions"):
                if getattr(node, name) is not None:
                    where = "the nodes inside `do`" if isinstance(node, ForeachNode) else "the nodes after it"
                    self.report(
                        "node.field_not_applicable",
                        f"`{name}` has no effect on {'an' if node.type[0] in 'aeiou' else 'a'} {node.type} node",
                        (*site.path, name),
                        key=True,
                        node_id=node.id,
                        hint=f"{node.type} executes nothing itself: put `{name}` on {where}",
                    )
        if isinstance(node, ApprovalNode) and node.timeout is None and "on_timeout" in node.model_fields_set:
            self.report(
                "node.on_timeout_without_timeout",
                "`on_timeout` never applies: this approval has no `timeout`",
                (*site.path, "on_timeout"),
                key=True,
                node_id=node.id,
                severity="warning",
                hint="add timeout: 24h (say), or remove on_timeout",
            )
        if node.permissions is not None and node.permissions.secrets is not None:
            for k, name in enumerate(node.permissions.secrets):
                self.used_secrets.add(name)
                if name not in self.flow.secrets:
                    self.report(
                        "ref.undeclared_secret",
                        f"permissions.secrets lists '{name}', which the flow does not declare",
                        (*site.path, "permissions", "secrets", k),
                        node_id=node.id,
                        hint=f"add '{name}' to the flow's secrets list, or remove it here",
                    )

    def _check_type(self, site: Site) -> NodeType | None:
        name = site.node.type
        if name in self.registry:
            return self.registry.get(name)
        guess = self.registry.suggest(name)
        hint = "run `ionflux types` to list the node types"
        if name.startswith("agent."):
            hint = "agent types come from the agent registry; register the agent first, or " + hint
        message = f"unknown node type '{name}'" + (f"; did you mean '{guess}'?" if guess else "")
        self.report("node.unknown_type", message, (*site.path, "type"), node_id=site.node.id, hint=hint)
        return None

    def _check_with(self, site: Site, node_type: NodeType, with_: dict[str, Any]) -> None:
        base = (*site.path, "with")
        for error in _validator(node_type).iter_errors(with_):
            if _is_runtime_value(error):
                continue
            where = (*base, *error.absolute_path)
            if error.validator == "additionalProperties":
                allowed = list(error.schema.get("properties", {}))
                for extra in sorted(set(error.instance) - set(allowed)):
                    guess = suggest(extra, allowed)
                    self.report(
                        "node.with_unknown_field",
                        f"{node_type.name} has no parameter '{extra}'"
                        + (f"; did you mean '{guess}'?" if guess else ""),
                        (*where, extra),
                        key=True,
                        node_id=site.node.id,
                        hint=f"parameters: {', '.join(allowed)}" if allowed else "",
                    )
            elif error.validator == "required":
                self.report(
                    "node.with_missing",
                    f"{node_type.name} needs `with.{_missing_name(error)}`: {error.message}",
                    where,
                    node_id=site.node.id,
                    hint=_example_hint(node_type),
                )
            else:
                self.report(
                    "node.with_invalid",
                    f"with.{_dotted(error.absolute_path) or ''}: {error.message}".replace(".: ", ": "),
                    where,
                    node_id=site.node.id,
                    hint=_example_hint(node_type),
                )
        for finding in node_type.check(with_):
            self.report(
                finding.code,
                finding.message,
                (*base, *finding.path),
                node_id=site.node.id,
                hint=finding.hint,
                line=finding.line,
            )

    def _expression_fields(self, site: Site, node_type: NodeType | None) -> Iterator[tuple[Path, str]]:
        """The ``{{ }}`` fields of a node (its per-item expression fields are checked separately)."""
        node = site.node
        if isinstance(node.if_, str):
            yield (*site.path, "if"), node.if_
        if isinstance(node, ForeachNode):
            yield from _strings(node.items, (*site.path, "items"))
        if isinstance(node, StepNode | ApprovalNode):
            per_item = node_type.item_expressions if node_type is not None else frozenset()
            for path, text in _strings(node.with_, (*site.path, "with")):
                if not (len(path) == len(site.path) + 2 and path[-1] in per_item):
                    yield path, text

    def _check_expressions(self, site: Site, acyclic: bool, node_type: NodeType | None) -> set[str]:
        secrets: set[str] = set()
        visible = self.visible(site) if acyclic else None
        if node_type is not None and isinstance(site.node, StepNode):
            for name in sorted(node_type.item_expressions):
                text = site.node.with_.get(name)
                if isinstance(text, str):
                    path = (*site.path, "with", name)
                    for ref in self._parse(path, text, site.node.id, bare=True):
                        self._check_reference(ref, path, site.node.id, visible, True, secrets)
        # a foreach's own fields (items, if) are evaluated outside its loop: only *enclosing* loops define item
        in_loop = bool(site.enclosing)
        for path, text in self._expression_fields(site, node_type):
            refs = self._parse(path, text, site.node.id)
            for ref in refs:
                self._check_reference(ref, path, site.node.id, visible, in_loop, secrets)
        return secrets

    def _parse(
        self, path: Path, text: str, node_id: str | None, *, bare: bool = False
    ) -> tuple[expression.Reference, ...]:
        if not bare and not expression.has_template(text):
            return ()
        try:
            return (expression.parse_bare(text) if bare else expression.parse(text)).references
        except expression.ExpressionError as e:
            self.report(e.code, e.message, path, node_id=node_id, hint=e.hint, line=e.line)
            return ()

    def _check_reference(
        self,
        ref: expression.Reference,
        path: Path,
        node_id: str | None,
        visible: Container[str] | None,
        in_loop: bool,
        secrets: set[str],
    ) -> None:
        root, rest = ref.root, ref.path
        if root not in expression.ROOTS:
            guess = suggest(root, expression.ROOTS)
            self.report(
                "expr.unknown_name",
                f"'{root}' is not defined in expressions" + (f"; did you mean '{guess}'?" if guess else ""),
                path,
                node_id=node_id,
                hint="expressions can read: " + ", ".join(expression.ROOTS),
            )
        elif root in ("item", "index") and not in_loop:
            self.report(
                "expr.item_outside_foreach",
                f"'{root}' only exists inside a foreach's `do` nodes",
                path,
                node_id=node_id,
                hint=_item_hint(path, node_id),
            )
        elif root == "secrets":
            self._check_secret_ref(rest, path, node_id, secrets)
        elif root == "nodes":
            self._check_node_ref(ref, path, node_id, visible)
        elif root == "inputs" and rest and isinstance(rest[0], str):
            props = (self.flow.inputs or {}).get("properties")
            if isinstance(props, dict) and props and rest[0] not in props:
                guess = suggest(rest[0], props)
                self.report(
                    "ref.unknown_input",
                    f"'inputs.{rest[0]}' is not declared in `inputs`"
                    + (f"; did you mean 'inputs.{guess}'?" if guess else ""),
                    path,
                    node_id=node_id,
                    hint="declared inputs: " + ", ".join(props),
                )
        elif root == "run" and rest and isinstance(rest[0], str) and rest[0] not in RUN_FIELDS:
            guess = suggest(rest[0], RUN_FIELDS)
            self.report(
                "ref.unknown_run_field",
                f"'run.{rest[0]}' does not exist" + (f"; did you mean 'run.{guess}'?" if guess else ""),
                path,
                node_id=node_id,
                hint="run fields: " + ", ".join(RUN_FIELDS),
            )

    def _check_secret_ref(
        self, rest: tuple[str | int, ...], path: Path, node_id: str | None, secrets: set[str]
    ) -> None:
        if not rest or not isinstance(rest[0], str):
            self.report(
                "expr.invalid_reference",
                "read one secret by name: secrets.<name>",
                path,
                node_id=node_id,
                hint="secrets are never enumerable",
            )
            return
        name = rest[0]
        secrets.add(name)
        self.used_secrets.add(name)
        if name not in self.flow.secrets:
            self.report(
                "ref.undeclared_secret",
                f"secret '{name}' is used but not declared",
                path,
                node_id=node_id,
                hint=f"add it to the flow's secrets list: secrets: [{', '.join([*self.flow.secrets, name])}]",
            )

    def _check_node_ref(
        self, ref: expression.Reference, path: Path, node_id: str | None, visible: Container[str] | None
    ) -> None:
        rest = ref.path
        if not rest or not isinstance(rest[0], str):
            self.report(
                "expr.invalid_reference",
                "refer to a node by id: nodes.<id>.output",
                path,
                node_id=node_id,
                hint="e.g. {{ nodes.fetch.output.body }}",
            )
            return
        target = rest[0]
        if target not in self.sites:
            guess = suggest(target, self.sites)
            self.report(
                "ref.unknown_node",
                f"'nodes.{target}' refers to no node" + (f"; did you mean '{guess}'?" if guess else ""),
                path,
                node_id=node_id,
                hint="node ids: " + ", ".join(sorted(self.sites)),
            )
            return
        if len(rest) > 1 and rest[1] not in NODE_FIELDS:
            guess = suggest(str(rest[1]), NODE_FIELDS)
            self.report(
                "ref.unknown_node_field",
                f"'nodes.{target}.{rest[1]}' does not exist" + (f"; did you mean '{guess}'?" if guess else ""),
                path,
                node_id=node_id,
                hint="a node has: " + ", ".join(NODE_FIELDS),
            )
        if visible is not None and target not in visible and not self._ancestry_broken(node_id):
            site = self.sites.get(node_id) if node_id else None
            if target == node_id:
                hint = "a node cannot read its own output: it does not exist until the node has run"
            elif site is not None and self.sites[target].scope == site.scope:
                hint = f"add '{target}' to the needs of '{node_id}' (directly or through a node that needs it)"
            elif site is not None and target in site.enclosing:
                hint = f"a foreach's output exists only after the loop: read item/index inside '{target}'"
            elif site is not None and (loop := self._enclosing_in_scope(site, self.sites[target].scope)):
                hint = f"add '{target}' to the needs of foreach '{loop}' (its `do` nodes see the loop's ancestors)"
            else:
                hint = "a node can read only nodes that finish before it starts (its ancestors)"
            self.report(
                "ref.not_ancestor",
                f"'{node_id or 'outputs'}' reads nodes.{target}, which is not one of its ancestors",
                path,
                node_id=node_id,
                hint=hint,
            )

    def _enclosing_in_scope(self, site: Site, scope: str) -> str | None:
        """The foreach around ``site`` that sits in ``scope``, if any."""
        return next((e for e in reversed(site.enclosing) if self.sites[e].scope == scope), None)

    def _ancestry_broken(self, node_id: str | None) -> bool:
        """A typo in needs already has its error; do not repeat it as 'not an ancestor' for every reference."""
        site = self.sites.get(node_id) if node_id else None
        if site is None:
            return False
        broken = {self.sites[n].scope for n in self.broken_needs}
        return site.scope in broken or any(self.sites[e].scope in broken for e in site.enclosing)

    def _check_permissions(self, site: Site, node_type: NodeType, secrets: set[str]) -> None:
        node = site.node
        perms = node.permissions
        with_ = getattr(node, "with_", {})
        needs = node_type.requires(with_)
        allowed = perms.net if perms else ()
        for target in sorted(needs.targets):
            if not netpolicy.allowed(allowed, target):
                field_name = "webhook_url" if "webhook_url" in with_ else "url"
                self.report(
                    "perm.net_missing",
                    f"{node_type.name} reaches '{target}', which permissions.net does not allow",
                    (*site.path, "with", field_name),
                    node_id=node.id,
                    hint=f"add `permissions: {{net: [{', '.join([*allowed, str(target)])}]}}` to node '{node.id}'",
                )
        if perms and perms.secrets is not None:
            for name in sorted(secrets - set(perms.secrets)):
                self.report(
                    "perm.secret_missing",
                    f"node reads secret '{name}', which permissions.secrets does not list",
                    (*site.path, "permissions", "secrets"),
                    node_id=node.id,
                    hint=f"add '{name}' to permissions.secrets, or remove permissions.secrets to derive it",
                )
        if (
            perms
            and perms.max_tokens is not None
            and needs.max_tokens is not None
            and needs.max_tokens > perms.max_tokens
        ):
            self.report(
                "perm.limit_exceeded",
                f"with.max_tokens ({needs.max_tokens}) exceeds permissions.max_tokens ({perms.max_tokens})",
                (*site.path, "with", "max_tokens"),
                node_id=node.id,
                hint="lower max_tokens or raise the limit",
            )
        estimate = node_forecast(node, self.registry)
        if perms and perms.max_cion is not None and estimate.cion > perms.max_cion:
            self.report(
                "perm.limit_exceeded",
                f"forecast {estimate.cion} C-ION ({estimate.basis}) exceeds permissions.max_cion ({perms.max_cion})",
                (*site.path, "permissions", "max_cion"),
                node_id=node.id,
                hint="raise max_cion or lower max_tokens",
            )
        budget = self.flow.budget
        if budget and budget.max_cion_per_run is not None and estimate.cion > budget.max_cion_per_run:
            self.report(
                "budget.node_over_budget",
                f"one execution is forecast at {estimate.cion} C-ION, over the run budget of {budget.max_cion_per_run}",
                (*site.path, "type"),
                node_id=node.id,
                severity="warning",
                hint="raise budget.max_cion_per_run or lower the node's max_tokens",
            )

    # --- flow level -----------------------------------------------------------------------------------------

    def _check_outputs(self, acyclic: bool) -> None:
        visible = {s.node.id for s in self.scopes.get("main", [])} if acyclic else None
        for path, text in _strings(self.flow.outputs, ("outputs",)):
            for ref in self._parse(path, text, None):
                if ref.root == "secrets":
                    self.report(
                        "ref.secret_in_outputs",
                        f"outputs read {ref}: run outputs are stored and shown to anyone who can see the run",
                        path,
                        hint="never put secrets in outputs; output what the secret was used for instead",
                    )
                    continue
                self._check_reference(ref, path, None, visible, False, set())

    def _check_flow_level(self) -> None:
        if self.flow.inputs is not None:
            self._check_inputs(self.flow.inputs)
        seen: dict[str, int] = {}
        for i, name in enumerate(self.flow.secrets):
            if name in seen:
                self.report(
                    "secret.duplicate",
                    f"secret '{name}' is declared twice",
                    ("secrets", i),
                    hint="remove one",
                )
            seen[name] = i
        kinds: set[str] = set()
        for i, trigger in enumerate(self.flow.triggers):
            base: Path = ("triggers", i)
            if trigger.type in ("manual", "flow") and trigger.type in kinds:
                self.report(
                    "trigger.duplicate",
                    f"a second `{trigger.type}` trigger adds nothing",
                    base,
                    severity="warning",
                    hint="remove it",
                )
            kinds.add(trigger.type)
            if isinstance(trigger, CronTrigger):
                self._check_cron(trigger, base)
            elif isinstance(trigger, EventTrigger):
                self._check_subject(trigger.subject, (*base, "subject"))
            elif isinstance(trigger, WebhookTrigger) and trigger.secret is None and trigger.signature is not None:
                self.report(
                    "trigger.signature_without_secret",
                    "the webhook declares a signature but no `secret` to verify it with",
                    (*base, "signature"),
                    key=True,
                    hint="add secret: <name of a declared secret holding the signing key>",
                )
            elif isinstance(trigger, WebhookTrigger) and trigger.secret is not None:
                self.used_secrets.add(trigger.secret)
                if trigger.secret not in self.flow.secrets:
                    self.report(
                        "ref.undeclared_secret",
                        f"webhook secret '{trigger.secret}' is not declared",
                        (*base, "secret"),
                        hint=f"add '{trigger.secret}' to the flow's secrets list",
                    )
        for i, name in enumerate(self.flow.secrets):
            if name not in self.used_secrets and seen.get(name) == i:
                self.report(
                    "secret.unused",
                    f"secret '{name}' is declared but never used",
                    ("secrets", i),
                    severity="warning",
                    hint="remove it, or read it with {{ secrets." + name + " }}",
                )

    def _check_inputs(self, schema: dict[str, Any]) -> None:
        problem = schema_problem(schema)
        if problem is not None:
            reason = problem.message
            if problem.path and problem.path[-1] == "type" and isinstance(problem.instance, str):
                guess = suggest(problem.instance, JSON_TYPES)
                reason = f"{problem.instance!r} is not a JSON Schema type" + (
                    f"; did you mean '{guess}'?" if guess else f" (types: {', '.join(JSON_TYPES)})"
                )
            self.report(
                "inputs.invalid_schema",
                f"`inputs` is not a valid JSON Schema: {reason}",
                ("inputs", *problem.path),
                hint="inputs is a JSON Schema of the run input: {type: object, properties: {days: {type: integer}}}",
            )
            return
        if schema.get("type", "object") != "object":
            self.report(
                "inputs.not_object",
                "`inputs` must describe an object (type: object)",
                ("inputs", "type"),
                hint="run input is always a mapping of named values",
            )

    def _check_cron(self, trigger: CronTrigger, base: Path) -> None:
        fields = trigger.cron.split()
        if not trigger.cron.startswith("@") and len(fields) != 5:
            self.report(
                "trigger.cron_invalid",
                f"cron {trigger.cron!r} has {len(fields)} fields; FluxGraph cron has 5",
                (*base, "cron"),
                hint="minute hour day-of-month month day-of-week, e.g. '30 8 * * MON-FRI'",
            )
        elif not croniter.is_valid(trigger.cron):
            self.report(
                "trigger.cron_invalid",
                f"cron {trigger.cron!r} is not a valid schedule",
                (*base, "cron"),
                hint="minute hour day-of-month month day-of-week, e.g. '30 8 * * MON-FRI' or '@daily'",
            )
        elif not _fires(trigger.cron):
            self.report(
                "trigger.cron_never_fires",
                f"cron {trigger.cron!r} is valid but never fires (no such date)",
                (*base, "cron"),
                hint="check the day of month against the month (e.g. 31 in February never happens)",
            )
        if not _valid_zone(trigger.timezone):
            guess = suggest(trigger.timezone, _zones())
            self.report(
                "trigger.timezone_invalid",
                f"unknown time zone {trigger.timezone!r}" + (f"; did you mean '{guess}'?" if guess else ""),
                (*base, "timezone"),
                hint="use an IANA name such as Europe/Lisbon, America/New_York or UTC",
            )
        if trigger.input is not None and self.flow.inputs and schema_problem(self.flow.inputs) is None:
            for where, message in instance_problems(self.flow.inputs, trigger.input):
                self.report(
                    "trigger.input_invalid",
                    f"cron input does not match `inputs`: {message}",
                    (*base, "input", *where),
                    hint="make the fixed input match the flow's inputs schema",
                )

    def _check_subject(self, subject: str, path: Path) -> None:
        tokens = subject.split(".")
        bad = not subject or any(
            not (t == "*" or (t == ">" and k == len(tokens) - 1) or _SUBJECT_TOKEN.match(t))
            for k, t in enumerate(tokens)
        )
        if bad:
            self.report(
                "trigger.subject_invalid",
                f"{subject!r} is not a valid event subject",
                path,
                hint="dot-separated tokens, no spaces; '*' is one token, '>' the rest (last only): orders.*.created",
            )


@dataclass(frozen=True, slots=True)
class _Visibility:
    checker: Checker
    site: Site

    def __contains__(self, target: object) -> bool:
        return isinstance(target, str) and self.checker.can_read(self.site, target)


# --- helpers -------------------------------------------------------------------------------------------------


def _item_hint(path: Path, node_id: str | None) -> str:
    if node_id is None:
        return "outputs are read after the run: read a node's output (a foreach's output is the list of items)"
    if "items" in path and "with" not in path:
        return "a foreach's `items` is evaluated before its loop starts: item/index exist only in its `do` nodes"
    return "move this node into a foreach `do:` list, or read the whole list instead"


def _scope_name(scope: str) -> str:
    if scope == "main":
        return "the top-level nodes"
    if scope == "on_failure":
        return "on_failure"
    return f"the `do` of foreach '{scope.removeprefix('do:')}'"


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    stack: list[tuple[Path, Any]] = [(path, value)]
    while stack:
        where, current = stack.pop()
        if isinstance(current, str):
            yield where, current
        elif isinstance(current, Mapping):
            stack.extend(((*where, k), v) for k, v in reversed(list(current.items())))
        elif isinstance(current, list | tuple):
            stack.extend(((*where, k), v) for k, v in reversed(list(enumerate(current))))


def _is_runtime_value(error: SchemaValidationError) -> bool:
    """True when the value is only known at run time, so a schema error about it is not an error yet."""
    instance = error.instance
    if not isinstance(instance, str) or not expression.has_template(instance):
        return False
    if expression.single_expression(instance) is not None:
        return True  # a single expression can produce any type
    return error.validator not in ("type",)  # text with expressions is a string, but its content is unknown


def _dotted(path: Any) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def _missing_name(error: SchemaValidationError) -> str:
    text = error.message
    return text.split("'")[1] if text.count("'") >= 2 else text


def _example_hint(node_type: NodeType) -> str:
    if not node_type.example:
        return f"run `ionflux types {node_type.name}` for its parameters"
    pairs = ", ".join(f"{k}: {v!r}" for k, v in list(node_type.example.items())[:3])
    return f"example: with: {{{pairs}}}"


def _validator(node_type: NodeType) -> Draft202012Validator:
    """The compiled `with` validator, built once and kept on the type itself."""
    validator = node_type.memo.get("with_validator")
    if validator is None:
        validator = node_type.memo["with_validator"] = Draft202012Validator(dict(node_type.with_schema))
    return validator


def _fires(expression: str) -> bool:
    """Whether a schedule ever fires: searched from a fixed date (never the clock), 8 years covers 29 Feb."""
    try:
        croniter(expression, _CRON_REFERENCE).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True


def _valid_zone(name: str) -> bool:
    return name in _zone_set()


@cache
def _zones() -> tuple[str, ...]:
    """The IANA zone names shipped with the ``tzdata`` package: the same on every machine (a host's own
    database may also hold ``localtime`` or ``posixrules``, which would make a flow valid here and not there)."""
    return tuple(sorted((resources.files("tzdata") / "zones").read_text("utf-8").split()))


@cache
def _zone_set() -> frozenset[str]:
    return frozenset(_zones())
