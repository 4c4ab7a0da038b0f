"""``ionflux transform``: register, list, show and try WebAssembly transforms (engine.runtime.modules)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from api.run_commands import _runtime, guarded
from api.settings import Settings
from engine.core.state import StepKey
from engine.errors import IonfluxError
from engine.runtime.modules import ModuleError
from engine.steps import wasm
from engine.steps.call import StepCall, StepFailure
from engine.store.db import utc


@guarded
def cmd_transform(args: argparse.Namespace) -> int:
    console = Console(highlight=False)
    with _runtime(Settings()) as runtime:
        if args.action == "register":
            wasm_bytes = Path(args.file).read_bytes()
            manifest = _manifest(Path(args.manifest))
            stored, new = runtime.modules.register(wasm_bytes, manifest, _now())
            verb = "registered" if new else "already registered (same contents)"
            console.print(f"{stored.ref} {verb}: {stored.size:,} bytes, sha256 {stored.digest[:16]}…")
            return 0
        if args.action == "list":
            modules = runtime.modules.list()
            if args.json:
                print(json.dumps([_as_dict(m) for m in modules], indent=2))
                return 0
            table = Table(box=None, pad_edge=False)
            for column in ("module", "size", "registered", "description"):
                table.add_column(column)
            for m in modules:
                table.add_row(m.ref, f"{m.size:,}", m.created_at.strftime("%Y-%m-%d %H:%M"), m.description)
            console.print(table if modules else "no transforms registered (ionflux transform register FILE ...)")
            return 0
        info = runtime.modules.get_info(args.module)
        if info is None:
            raise ModuleError(
                f"no transform {args.module} is registered",
                hint="ionflux transform list shows what is",
                code="module.not_found",
            )
        if args.action == "show":
            print(json.dumps(_as_dict(info), indent=2))
            return 0
        value = json.loads(args.input) if args.input is not None else None
        call = StepCall(StepKey("test"), 1, "wasm.run", {"module": info.ref, "input": value})
        try:
            output = wasm.run(call, runtime.sandbox, runtime.modules.resolve, runtime.config.sandbox)
        except StepFailure as e:
            for _, line in call.log:
                console.print(Text(f"log: {line}", style="dim"))
            raise IonfluxError(e.message, hint=e.hint, code=e.code) from None
        for _, line in call.log:
            console.print(Text(f"log: {line}", style="dim"))
        print(json.dumps(output, indent=2))
        console.print(Text(f"{call.usage['fuel']:,} fuel, {call.usage['elapsed_ms']:g} ms", style="dim"))
        return 0


def _manifest(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text("utf-8"))
    except yaml.YAMLError as e:
        raise ModuleError(f"{path}: not YAML or JSON: {e}") from None


def _as_dict(info: Any) -> dict[str, Any]:
    return {
        "module": info.ref,
        "digest": info.digest,
        "size": info.size,
        "registered": info.created_at.isoformat(),
        "manifest": info.manifest,
    }


def _now() -> Any:
    from datetime import UTC, datetime

    return utc(datetime.now(UTC))
