"""The ``ionflux`` command line: validate, fmt, schema, types, diff, demo; running flows is in api.run_commands.

Exit codes: 0 success; 1 the input is invalid (or ``fmt --check`` would change it); 2 usage errors and files
that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from api.terminal import Style, render_issue
from engine.dsl import canonical, graph
from engine.dsl.diff import diff
from engine.dsl.forecast import flow_forecast
from engine.dsl.issue import Issue, Location
from engine.dsl.model import Flow, ForeachNode
from engine.dsl.schema import render as render_schema
from engine.dsl.validator import Report, check_flow
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import Registry

DEMO_FLOW = "demo-orders-digest.yaml"


def flows_dir() -> Path:
    """The blueprints folder: ``flows/`` in a source checkout, ``engine/_data/flows`` in an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "flows", here.parent / "engine" / "_data" / "flows"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("the flows/ folder is missing from this installation")


def node_registry() -> Registry:
    """The built-in node types plus those of the extensions named in IONFLUX_EXTENSIONS."""
    from api.settings import Settings

    modules = Settings().extension_modules
    if not modules:
        return builtin_registry()
    from engine.runtime.extensions import load

    return load(modules)[0]


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    return Path(path).read_bytes()


def _check(path: str) -> tuple[Report, list[str]]:
    raw = _read(path)
    report = check_flow(raw, "<stdin>" if path == "-" else path, registry=node_registry())
    lines = raw.decode("utf-8", "replace").splitlines() if b"\0" not in raw[:4096] else []
    return report, lines


class _Unusable(Exception):
    """A file that cannot be read (status 2) or is not a valid flow (status 1); the reason is already printed."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _valid_flow(path: str, style: Style) -> tuple[Flow, list[str]]:
    try:
        report, lines = _check(path)
    except OSError as e:
        print(f"ionflux: cannot read {path}: {_os_reason(e)}", file=sys.stderr)
        raise _Unusable(2) from None
    if report.flow is None or report.errors:
        for issue in report.errors:
            print(render_issue(issue, lines, style), file=sys.stderr)
        raise _Unusable(1)
    return report.flow, lines


def cmd_validate(args: argparse.Namespace) -> int:
    style = Style.for_stream(sys.stdout, args.color)
    results: list[dict[str, Any]] = []
    invalid = unreadable = False
    for path in args.files:
        try:
            report, lines = _check(path)
        except OSError as e:
            # One unreadable file must not hide the verdict on the others: report it, go on, exit 2 at the end.
            reason = _os_reason(e)
            print(f"ionflux: cannot read {path}: {reason}", file=sys.stderr)
            unreadable = True
            issue = Issue("file.unreadable", f"cannot read the file: {reason}", Location(path))
            results.append({"file": path, "valid": False, "version_id": None, "issues": [issue.to_dict()]})
            continue
        bad = bool(report.errors) or (args.strict and bool(report.warnings))
        invalid |= bad
        version = canonical.version_id(report.flow) if report.flow is not None and not report.errors else None
        if args.json:
            results.append(
                {
                    "file": report.file,
                    "valid": not bad,
                    "version_id": version,
                    "issues": [i.to_dict() for i in report.issues],
                }
            )
            continue
        for issue in report.issues:
            print(render_issue(issue, lines, style))
        if not bad and report.flow is not None:
            print(f"{style('ok', 'green', 'bold')} {path}  {report.flow.id}  {version}  ({_count(report.flow)} nodes)")
        else:
            n = len(report.errors)
            print(
                style(
                    f"{path}: {n} error{'s' if n != 1 else ''}, {len(report.warnings)} warnings",
                    "red",
                    "bold",
                )
            )
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))  # always a list: one shape however many files
    return 2 if unreadable else 1 if invalid else 0


def _os_reason(error: OSError) -> str:
    return error.strerror or str(error)


def _count(flow: Flow) -> int:
    def count(nodes: Sequence[Any]) -> int:
        return sum(1 + (count(n.do) if isinstance(n, ForeachNode) else 0) for n in nodes)

    return count(flow.nodes) + count(flow.on_failure)


def _inner_comments(text: str) -> list[int]:
    """Line numbers of comments after the header block (fmt keeps the header; it cannot keep the rest)."""
    lines = text.splitlines()
    start = 0
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1
    return [n for n in canonical.comment_lines(text) if n > start]


def _header(text: str) -> str:
    out: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and out):
            out.append(line)
        else:
            break
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n" if out else ""


def cmd_fmt(args: argparse.Namespace) -> int:
    style = Style.for_stream(sys.stderr, args.color)
    status = 0
    for path in args.files:
        try:
            flow, lines = _valid_flow(path, style)
        except _Unusable as e:
            status = max(status, e.status)  # go on with the other files; an unreadable one (2) wins over 1
            continue
        original = "\n".join(lines) + ("\n" if lines else "")
        formatted = _header(original) + canonical.to_yaml(flow)
        if args.stdout or path == "-":
            sys.stdout.write(formatted)
            continue
        if formatted == original:
            continue
        if args.check:
            print(f"would reformat {path}", file=sys.stderr)
            status = max(status, 1)
            continue
        dropped = _inner_comments(original)
        if dropped and not args.force:
            print(
                f"ionflux fmt: {path} has comments on lines {', '.join(map(str, dropped[:10]))} that the canonical "
                "form cannot keep (only the header comment block is kept); move them to the header or `description`, "
                "or pass --force to drop them",
                file=sys.stderr,
            )
            status = max(status, 1)
            continue
        Path(path).write_text(formatted, encoding="utf-8")
        print(f"reformatted {path}", file=sys.stderr)
    return status


def cmd_schema(args: argparse.Namespace) -> int:
    text = render_schema()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def cmd_types(args: argparse.Namespace) -> int:
    registry = node_registry()
    if args.name:
        if args.name not in registry:
            suggestion = registry.suggest(args.name)
            print(
                f"ionflux: unknown node type {args.name!r}" + (f"; did you mean {suggestion!r}?" if suggestion else ""),
                file=sys.stderr,
            )
            return 2
        types = [registry.get(args.name)]
    else:
        types = list(registry)
    if args.json or args.name:
        payload = [
            {
                "name": t.name,
                "family": t.family,
                "summary": t.summary,
                "capabilities": sorted(t.capabilities),
                "cost": t.cost(t.example).basis,
                "with": t.with_schema,
                "output": t.output_schema,
                "example": t.example,
            }
            for t in types
        ]
        print(json.dumps(payload if not args.name else payload[0], indent=2, ensure_ascii=False))
        return 0
    style = Style.for_stream(sys.stdout, args.color)
    family = ""
    for t in types:
        if t.family != family:
            family = t.family
            print(style(f"\n{family}", "bold"))
        caps = f" [{', '.join(sorted(t.capabilities))}]" if t.capabilities else ""
        print(f"  {style(t.name.ljust(14), 'cyan')} {t.summary}{style(caps, 'dim')}")
    print("\nRun `ionflux types NAME` for a type's `with` and output schemas.")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    style = Style.for_stream(sys.stdout, args.color)
    flows = []
    for path in (args.old, args.new):
        try:
            flows.append(_valid_flow(path, style)[0])
        except _Unusable as e:
            return e.status
    result = diff(flows[0], flows[1])
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        colours = {"+": "green", "-": "red", "~": "yellow"}
        for line in result.render().splitlines():
            print(style(line, colours[line[0]]) if line[:1] in colours else line)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Validate every blueprint, then show the demo flow: its graph, version id and cost forecast."""
    style = Style.for_stream(sys.stdout, args.color)
    folder = flows_dir()
    files = sorted(folder.glob("*.yaml"))
    invalid = 0
    for path in files:
        report = check_flow(path.read_bytes(), str(path))
        if report.errors:
            invalid += 1
            for issue in report.errors:
                print(render_issue(issue, path.read_text("utf-8", "replace").splitlines(), style))
    print(f"{len(files) - invalid}/{len(files)} blueprints in {folder} are valid FluxGraph")
    demo = folder / DEMO_FLOW
    report = check_flow(demo.read_bytes(), str(demo))
    flow = report.raise_for_errors()
    print(style(f"\n{flow.name or flow.id}", "bold") + f"  ({flow.id}, version {canonical.version_id(flow)})")
    if flow.description:
        print(flow.description)
    for trigger in flow.triggers:
        detail = {k: v for k, v in trigger.model_dump(exclude_defaults=True).items() if k != "type"}
        print(f"  trigger {style(trigger.type, 'cyan')} {detail if detail else ''}".rstrip())
    total = flow_forecast(flow, builtin_registry())
    forecast = {f.node_id: f for f in total.nodes}
    nodes = list(flow.nodes)
    by_id = {n.id: n for n in nodes}
    for depth, layer in enumerate(graph.layers([n.id for n in nodes], graph.edges(nodes))):
        for node_id in layer:
            node = by_id[node_id]
            needs = f" <- {', '.join(node.needs)}" if node.needs else ""
            cost = forecast[node_id].estimate.cion
            print(f"  {'  ' * depth}{style(node.id, 'bold')} ({node.type}){needs}  ~{cost} C-ION")
    per_item = f" + {total.per_item_cion} C-ION per foreach item" if total.per_item_cion else ""
    print(f"forecast: at most {total.fixed_cion} C-ION per run{per_item}")
    from api.settings import Settings

    today = (
        f"`ionflux up` (what ./scripts/start runs) serves the web UI at http://{Settings().bind} (IONFLUX_BIND)",
        "and the HTTP API under /api/v1. `ionflux run FILE` runs a flow here, or on a server with --server URL;",
        "`ionflux plan TEXT` drafts one; `ionflux activate FILE` arms its triggers (`ionflux triggers` lists them).",
    )
    print(style("\n" + "\n".join(today), "dim"))
    return 1 if invalid else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ionflux", description="IONFLUX: AI-first workflow automation.")
    parser.add_argument("--version", action="version", version="ionflux 0.1.0")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
        return p

    p = add("validate", "Validate FluxGraph files; exit 1 if any has errors.")
    p.add_argument("files", nargs="+", metavar="FILE", help="flow files ('-' reads standard input)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--strict", action="store_true", help="treat warnings as errors")
    p.set_defaults(func=cmd_validate)

    p = add("fmt", "Rewrite flow files in canonical form (keeps the header comment block).")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--check", action="store_true", help="only report files that would change (exit 1)")
    p.add_argument("--stdout", action="store_true", help="print the canonical form instead of rewriting")
    p.add_argument("--force", action="store_true", help="rewrite even if inner comments would be lost")
    p.set_defaults(func=cmd_fmt)

    p = add("schema", "Print the JSON Schema of FluxGraph (for editors).")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")
    p.set_defaults(func=cmd_schema)

    p = add("types", "List the node types, or show one type's schemas.")
    p.add_argument("name", nargs="?", help="a node type, e.g. http.request")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_types)

    p = add("diff", "Structural diff between two versions of a flow.")
    p.add_argument("old", metavar="OLD")
    p.add_argument("new", metavar="NEW")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_diff)

    p = add("demo", "Validate the bundled blueprints and show the demo flow (graph, version, cost).")
    p.set_defaults(func=cmd_demo)

    from api.run_parser import add_commands

    add_commands(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
