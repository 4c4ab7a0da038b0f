"""Whole-document checks on a structurally valid flow: ids, graph, types, expressions, permissions, triggers.

Every check appends :class:`Issue` values and goes on, so one ``ionflux validate`` lists every problem. Scopes
follow FLUXGRAPH.md: the top-level ``nodes``, each ``foreach``'s ``do`` and ``on_failure`` are separate node
lists; ``needs`` and ``on_error`` name siblings in the same list; a node may read the outputs of its ancestors,
and nodes inside ``do`` also see the ancestors of their ``foreach``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaValidationError

from engine.dsl import expression, graph, netpolicy
from engine.dsl.checker import Site
from engine.dsl.flowchecks import FlowChecks
from engine.dsl.forecast import node_forecast
from engine.dsl.issue import Issue, Path
from engine.dsl.model import AnyNode, ApprovalNode, ForeachNode, StepNode
from engine.dsl.references import ReferenceChecks
from engine.dsl.structure import did_you_mean, suggest
from engine.nodetypes.registry import NodeType


@dataclass
class Checker(ReferenceChecks, FlowChecks):
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
            message = f"{what} names '{target}', which is not a node" + did_you_mean(guess)
            hint = f"node ids here: {', '.join(sorted(ids))}" if ids else "add the node first"
        self.report(code, message, where, node_id=site.node.id, hint=hint)

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
            # "agents" are what the catalog calls model aliases, not node types: say how to reach one instead
            hint = (
                "no node type starts with `agent.`: an agent is a model alias (built in, or added with "
                "IONFLUX_LLM_MODELS; the catalog lists them), which an llm.complete, llm.extract or llm.classify "
                "node names in `with.model`, e.g. `type: llm.complete` with `model: default`"
            )
        message = f"unknown node type '{name}'" + did_you_mean(guess)
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
                        f"{node_type.name} has no parameter '{extra}'" + did_you_mean(guess),
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


def _scope_name(scope: str) -> str:
    if scope == "main":
        return "the top-level nodes"
    if scope == "on_failure":
        return "on_failure"
    return f"the `do` of foreach '{scope.removeprefix('do:')}'"


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
