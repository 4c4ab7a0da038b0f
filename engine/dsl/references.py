"""Expression and reference checks: every ``{{ }}`` parses, and every name it reads exists and may be read
(ancestors only, declared secrets and inputs, ``item`` inside loops, no secrets in outputs)."""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass

from engine.dsl import expression
from engine.dsl.checker import CheckerBase, Site, strings
from engine.dsl.issue import Path
from engine.dsl.model import ApprovalNode, ForeachNode, StepNode
from engine.dsl.structure import did_you_mean, suggest
from engine.nodetypes.registry import NodeType

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


class ReferenceChecks(CheckerBase):
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

    def _expression_fields(self, site: Site, node_type: NodeType | None) -> Iterator[tuple[Path, str]]:
        """The ``{{ }}`` fields of a node (its per-item expression fields are checked separately)."""
        node = site.node
        if isinstance(node.if_, str):
            yield (*site.path, "if"), node.if_
        if isinstance(node, ForeachNode):
            yield from strings(node.items, (*site.path, "items"))
        if isinstance(node, StepNode | ApprovalNode):
            per_item = node_type.item_expressions if node_type is not None else frozenset()
            for path, text in strings(node.with_, (*site.path, "with")):
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
                f"'{root}' is not defined in expressions" + did_you_mean(guess),
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
            if ref.transformed or len(rest) > 1:
                self.report(
                    "secret.transformed",
                    f"{ref} is changed before use: only a secret's exact value can be recognised and redacted "
                    "from records, logs and errors",
                    path,
                    node_id=node_id,
                    hint='use the secret as it is ({{ secrets.name }}, or "Bearer {{ secrets.name }}"); '
                    "http.request's auth and query fields do any encoding",
                )
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
                f"'nodes.{target}' refers to no node" + did_you_mean(guess),
                path,
                node_id=node_id,
                hint="node ids: " + ", ".join(sorted(self.sites)),
            )
            return
        if len(rest) > 1 and rest[1] not in NODE_FIELDS:
            guess = suggest(str(rest[1]), NODE_FIELDS)
            self.report(
                "ref.unknown_node_field",
                f"'nodes.{target}.{rest[1]}' does not exist" + did_you_mean(guess),
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

    def _check_outputs(self, acyclic: bool) -> None:
        visible = {s.node.id for s in self.scopes.get("main", [])} if acyclic else None
        for path, text in strings(self.flow.outputs, ("outputs",)):
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


@dataclass(frozen=True, slots=True)
class _Visibility:
    checker: ReferenceChecks
    site: Site

    def __contains__(self, target: object) -> bool:
        return isinstance(target, str) and self.checker.can_read(self.site, target)


def _item_hint(path: Path, node_id: str | None) -> str:
    if node_id is None:
        return "outputs are read after the run: read a node's output (a foreach's output is the list of items)"
    if "items" in path and "with" not in path:
        return "a foreach's `items` is evaluated before its loop starts: item/index exist only in its `do` nodes"
    return "move this node into a foreach `do:` list, or read the whole list instead"
