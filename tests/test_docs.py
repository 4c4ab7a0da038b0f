"""Docs stay true: every error code the validator can emit is documented, the README shows the commands, and the
co-pilot page's chat example prints what the page shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from engine.nodetypes.builtin import builtin_registry
from tests.conftest import ROOT

CODE = re.compile(
    r'"((?:yaml|schema|node|graph|expr|ref|perm|trigger|inputs|secret|budget|code|run|step|approval|foreach|flow'
    r"|http|email|slack|discord|llm|event|settings|sandbox|module)"
    r'\.[a-z_]+)"'
)
RUNTIME_ONLY = {"expr.error", "flow.invalid"}  # class-level defaults of error types, never reported as issues
NOT_CODES = {"discord.com", "slack.com", "llm.token"}  # host names, and a live event's kind


def emitted_codes() -> set[str]:
    codes: set[str] = set()
    for path in (ROOT / "engine").rglob("*.py"):
        codes |= set(CODE.findall(path.read_text("utf-8")))
    return codes - set(builtin_registry().names()) - RUNTIME_ONLY - NOT_CODES


API_CODE = re.compile(r'(?:ApiError\(\s*\d+,\s*|code="|(?:_refusal|problem)\(\s*\d+,\s*")"?([a-z_]+\.[a-z_]+)"')


def api_codes() -> set[str]:
    """The codes the HTTP API answers with beyond the engine's (api.v1.errors.ApiError and friends)."""
    codes: set[str] = set()
    for path in (ROOT / "api").rglob("*.py"):
        codes |= set(API_CODE.findall(path.read_text("utf-8")))
    return codes


#: an error class's own code (``code = "extension.invalid"`` in its body), in any package users run
CLASS_CODE = re.compile(r'^\s+code = "([a-z_]+\.[a-z_]+)"', re.MULTILINE)
BASES = {"remote.error"}  # an error class only ever raised as one of its subclasses, each with its own code


def class_codes() -> set[str]:
    codes: set[str] = set()
    for package in ("api", "engine", "copilot", "ui", "evals"):
        for path in (ROOT / package).rglob("*.py"):
            codes |= set(CLASS_CODE.findall(path.read_text("utf-8")))
    return codes - RUNTIME_ONLY - BASES


def test_every_error_code_is_documented() -> None:
    documented = set()
    for page in ("errors.md", "api.md", "running.md"):
        documented |= set(re.findall(r"`([a-z_]+\.[a-z_]+)`", (ROOT / "docs" / page).read_text("utf-8")))
    missing = (emitted_codes() | api_codes() | class_codes()) - documented
    assert not missing, f"add these codes to docs/errors.md (engine) or docs/api.md (API): {sorted(missing)}"


def test_the_readme_counts_the_blueprints_there_are() -> None:
    said = re.search(r"holds (\d+) blueprints", (ROOT / "README.md").read_text("utf-8"))
    assert said is not None and int(said.group(1)) == len(list((ROOT / "flows").glob("*.yaml")))


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    head = readme[:1500]
    assert "./scripts/start" in head and "./scripts/test" in head
    assert "bash .ci/run" not in head  # the user's command is scripts/test; CI runs it too


def test_the_chat_example_in_docs_copilot_prints_what_the_page_shows(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "copilot.md").read_text("utf-8")
    chat = page[page.index("## The chat") : page.index("## Reviewing a flow")]
    code = re.search(r"```python\n(.*?)```", chat, re.DOTALL)
    shown = re.search(r"```text\n(.*?)```", chat, re.DOTALL)
    assert code is not None and shown is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown.group(1)
