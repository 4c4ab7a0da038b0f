"""The ionflux command line, called in-process and once through the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from api.cli import _inner_comments, main
from engine.dsl.canonical import version_id
from engine.dsl.validator import load_flow
from tests.conftest import FLOWS

VALID = "fluxgraph: 1\nid: hello\nnodes:\n  - id: greet\n    type: log\n    with: {message: hi}\n"
INVALID = "fluxgraph: 1\nid: hello\nnodes:\n  - id: greet\n    type: lgo\n    with: {message: hi}\n"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in {"valid": VALID, "invalid": INVALID}.items():
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(text)
    return out


def test_validate_ok_prints_the_version_id(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["valid"])]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "bafkrei" in out and "(1 nodes)" in out


def test_validate_errors_are_located_with_the_source_line_and_hint(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "--color", "never", str(files["invalid"])]) == 1
    out = capsys.readouterr().out
    assert f"{files['invalid']}:5:11: error[node.unknown_type] node 'greet'" in out
    assert "    5 |     type: lgo" in out and "^" in out
    assert "did you mean 'log'?" in out


def test_validate_json_is_machine_readable(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--json", str(files["invalid"])]) == 1
    [result] = json.loads(capsys.readouterr().out)  # a list even for one file: one shape for every call
    assert result["valid"] is False
    assert result["issues"][0] | {"hint": ""} == {
        "code": "node.unknown_type",
        "severity": "error",
        "message": "unknown node type 'lgo'; did you mean 'log'?",
        "hint": "",
        "file": str(files["invalid"]),
        "line": 5,
        "column": 11,
        "node_id": "greet",
        "path": "nodes[0].type",
    }


def test_validate_colours_only_when_asked(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    main(["validate", "--color", "always", str(files["invalid"])])
    assert "\033[31" in capsys.readouterr().out
    main(["validate", str(files["invalid"])])  # captured output is not a terminal
    assert "\033[" not in capsys.readouterr().out


def test_validate_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_validate_reports_an_unreadable_file_and_checks_the_rest(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a batch with a missing file between a valid and an invalid one
    missing = str(files["valid"].parent / "nope.yaml")
    batch = [str(files["valid"]), missing, str(files["invalid"])]
    # When it is validated, Then every file gets a verdict and the unreadable one makes the status 2 (over 1)
    assert main(["validate", "--color", "never", *batch]) == 2
    out, err = capsys.readouterr()
    assert f"ok {files['valid']}" in out and "node.unknown_type" in out
    assert f"cannot read {missing}: No such file or directory" in err
    assert main(["validate", "--json", *batch]) == 2
    out, err = capsys.readouterr()
    results = json.loads(out)
    assert [r["file"] for r in results] == batch
    assert [r["valid"] for r in results] == [True, False, False]
    assert results[1]["version_id"] is None
    assert results[1]["issues"] == [
        {
            "code": "file.unreadable",
            "severity": "error",
            "message": "cannot read the file: No such file or directory",
            "hint": "",
            "file": missing,
            "line": 0,
            "column": 0,
            "node_id": None,
            "path": "",
        }
    ]
    assert "cannot read" in err
    # And a directory is unreadable too; without it the batch is just invalid (1)
    assert main(["validate", "--json", str(files["valid"]), str(files["valid"].parent)]) == 2
    assert json.loads(capsys.readouterr().out)[1]["issues"][0]["code"] == "file.unreadable"
    assert main(["validate", str(files["valid"]), str(files["invalid"])]) == 1


def test_fmt_rewrites_to_canonical_form_and_check_reports(files: dict[str, Path]) -> None:
    messy = files["valid"].parent / "messy.yaml"
    messy.write_text("# header kept\nnodes: [{with: {message: hi}, type: log, id: greet}]\nid: hello\nfluxgraph: 1\n")
    assert main(["fmt", "--check", str(messy)]) == 1
    assert main(["fmt", str(messy)]) == 0
    text = messy.read_text()
    assert text.startswith("# header kept\nfluxgraph: 1\nid: hello\n")
    assert main(["fmt", "--check", str(messy)]) == 0


def test_fmt_refuses_to_drop_inner_comments_without_force(files: dict[str, Path]) -> None:
    path = files["valid"].parent / "commented.yaml"
    path.write_text("id: hello\nfluxgraph: 1  # why this\nnodes: [{id: a, type: log, with: {message: '#not'}}]\n")
    assert main(["fmt", str(path)]) == 1
    assert main(["fmt", "--force", str(path)]) == 0
    assert "# why" not in path.read_text() and '"#not"' in path.read_text()


CODE_WITH_HASHES = """\
# header: kept
fluxgraph: 1
id: hashes
description: Posts to chat#sales, in C# and F#
nodes:
  - id: calc
    type: code.python
    with:
      code: |
        def main(x):
            # a Python comment is code, not a YAML comment
            return {"tag": "#sales"}  # nor is this
      input: "{{ inputs.x }}  # not a comment either"
  - id: say
    type: log
    needs: [calc]
    with:
      message: >
        Folded text with a #hashtag
        # and a line that starts with one
"""


def test_fmt_treats_hashes_in_text_and_code_blocks_as_text(tmp_path: Path) -> None:
    # Given a flow whose only comment is the header, with # inside plain, quoted, literal and folded text
    path = tmp_path / "hashes.yaml"
    path.write_text(CODE_WITH_HASHES)
    before = load_flow(CODE_WITH_HASHES)
    assert before.description == "Posts to chat#sales, in C# and F#"  # YAML agrees: no comment there
    # When it is formatted, Then fmt does not refuse, and the flow and its id are unchanged
    assert main(["fmt", str(path)]) == 0
    after = path.read_text()
    assert after.startswith("# header: kept\n")
    assert load_flow(after) == before and version_id(load_flow(after)) == version_id(before)
    assert "# a Python comment is code" in after


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("fluxgraph: 1\nid: c\nname: Post to #sales\nnodes: []\n", 3),  # ` #` after a space: YAML's comment
        ("fluxgraph: 1\nid: c #why\nnodes: []\n", 2),
        ("fluxgraph: 1\nid: c\n  # indented, between keys\nnodes: []\n", 3),
        ("fluxgraph: 1\nid: c\ndescription: |\n  text\n# after the block\nnodes: []\n", 5),
        ("fluxgraph: 1\nid: c\nnodes: [] # trailing\n", 3),
    ],
)
def test_fmt_refuses_to_drop_real_comments(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert _inner_comments(text) == [line]
    assert main(["fmt", str(path)]) == 1
    assert path.read_text() == text


def test_fmt_goes_on_after_an_unreadable_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    messy = files["valid"].parent / "messy.yaml"
    messy.write_text("nodes: [{with: {message: hi}, type: log, id: greet}]\nid: hello\nfluxgraph: 1\n")
    assert main(["fmt", str(files["valid"].parent / "nope.yaml"), str(messy)]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert messy.read_text().startswith("fluxgraph: 1\n")


def test_fmt_of_the_demo_reads_like_the_blueprint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fmt", "--stdout", str(FLOWS / "demo-orders-digest.yaml")]) == 0
    out = capsys.readouterr().out
    assert "description: >-\n  Every weekday at 08:30" in out  # long prose folded, not an escaped "…\\ …"
    assert "\\\n" not in out
    assert '    if: "{{ nodes.stats.output.count > 0 }}"\n' in out  # templates in double quotes, on one line
    assert "\nnodes:\n  - id: fetch_orders\n" in out  # lists indented under their key
    assert "\n\n  - id: stats\n" in out  # a blank line between nodes
    assert "    retry: {max_attempts: 4, initial_delay: 2s, max_delay: 30s}\n" in out


def test_types_lists_the_catalog_and_shows_one_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["types"]) == 0
    assert "http.request" in capsys.readouterr().out
    assert main(["types", "llm.extract"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "llm.extract" and "schema" in shown["with"]["properties"]
    assert main(["types", "llm.extrct"]) == 2
    assert "did you mean 'llm.extract'" in capsys.readouterr().err


def test_schema_prints_the_committed_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert capsys.readouterr().out == (FLOWS / "fluxgraph.schema.json").read_text()


def test_diff_between_two_files(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    new = files["valid"].parent / "new.yaml"
    new.write_text(VALID.replace("message: hi", "message: hello"))
    assert main(["diff", str(files["valid"]), str(new)]) == 0
    assert "~ node greet (log): with.message" in capsys.readouterr().out
    assert main(["diff", "--json", str(files["valid"]), str(new)]) == 0
    assert json.loads(capsys.readouterr().out)["changed_nodes"][0]["fields"] == ["with.message"]


def test_demo_validates_the_blueprints_and_shows_the_demo_flow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "demo-orders-digest" in out and "C-ION per run" in out


def test_the_installed_console_script_runs() -> None:
    script = Path(sys.executable).parent / "ionflux"
    result = subprocess.run(
        [str(script), "validate", *map(str, sorted(FLOWS.glob("*.yaml")))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_fmt_and_diff_refuse_invalid_flows_with_located_errors(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fmt", str(files["invalid"])]) == 1
    assert "node.unknown_type" in capsys.readouterr().err
    assert main(["diff", str(files["valid"]), str(files["invalid"])]) == 1
    assert f"{files['invalid']}:5:11" in capsys.readouterr().err
    assert main(["diff", str(files["valid"]), str(files["valid"].parent / "missing.yaml")]) == 2
