"""Benchmark: validation time against flow size, and the CLI on the bundled blueprints.

    uv run python -m bench.validate_flows            # prints a table measured on this machine

Flows are generated: a chain with fan-in every few nodes (each node needs one or two earlier nodes and
reads an ancestor's output in an expression), mixing log, data.set, http.request and llm.complete nodes.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SIZES = (125, 250, 500, 1000, 2000)


def generated_flow(size: int) -> str:
    nodes: list[dict[str, Any]] = []
    for k in range(size):
        node: dict[str, Any] = {"id": f"n{k}"}
        if k:
            node["needs"] = sorted({f"n{k - 1}", f"n{k // 2}"})
        ref = f"{{{{ nodes.n{k - 1}.output }}}}" if k else "{{ inputs.days }}"
        kind = k % 4
        if kind == 0:
            node |= {"type": "log", "with": {"message": f"step {k}: {ref}"}}
        elif kind == 1:
            node |= {"type": "data.set", "with": {"value": ref, "label": f"v{k}"}}
        elif kind == 2:
            node |= {
                "type": "http.request",
                "with": {"url": f"https://api.example.com/items/{k}", "headers": {"X-Ref": ref}},
                "permissions": {"net": ["api.example.com"]},
                "retry": {"max_attempts": 3},
            }
        else:
            node |= {"type": "llm.complete", "with": {"prompt": f"Summarise {ref}", "max_tokens": 200}}
        nodes.append(node)
    flow = {
        "fluxgraph": 1,
        "id": f"generated-{size}",
        "inputs": {"type": "object", "properties": {"days": {"type": "integer"}}},
        "nodes": nodes,
    }
    return yaml.safe_dump(flow, sort_keys=False)


def time_validation(text: str, repeats: int = 5) -> float:
    """Median wall time of a full validation (parse, model, semantics) with caches cleared each time."""
    from engine.dsl import expression
    from engine.dsl.validator import check_flow

    samples = []
    for _ in range(repeats):
        expression.clear_caches()
        started = time.perf_counter()
        report = check_flow(text)
        samples.append(time.perf_counter() - started)
        assert report.ok, report.issues[:3]
    return statistics.median(samples)


def time_cli(repeats: int = 5) -> tuple[float, int]:
    files = sorted(str(p) for p in (ROOT / "flows").glob("*.yaml"))
    script = Path(sys.executable).parent / "ionflux"
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([str(script), "validate", *files], check=True, capture_output=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), len(files)


def measure() -> dict[int, float]:
    time_validation(generated_flow(50), repeats=1)  # warm imports
    return {size: time_validation(generated_flow(size)) for size in SIZES}


def main() -> None:
    results = measure()
    print(f"{'nodes':>6} {'median s':>9} {'us/node':>8}")
    for size, seconds in results.items():
        print(f"{size:>6} {seconds:>9.3f} {seconds / size * 1e6:>8.0f}")
    print(f"ratio 2000/1000 nodes: {results[2000] / results[1000]:.2f} (linear = 2.00)")
    cli, count = time_cli()
    print(f"ionflux validate on {count} blueprints (process start included): {cli:.2f} s median of 5")


if __name__ == "__main__":
    main()
