"""The invalid-document corpus: each file under tests/corpus/invalid states the exact errors it must produce.

Header format (the first lines of each file)::

    # expect: graph.cycle at 12:5
    # expect: ref.undeclared_secret at 20:14

The test asserts that the set of (code, line, column) of the *errors* equals the expected set exactly: no
missing error, no extra one. Warnings are not counted.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.dsl.validator import check_flow

CORPUS = Path(__file__).parent / "corpus" / "invalid"
EXPECT = re.compile(rb"^# expect: (?P<code>[a-z_.]+) at (?P<line>\d+):(?P<col>\d+)\s*$", re.M)
FILES = sorted(CORPUS.glob("*.yaml"))


def expectations(raw: bytes) -> set[tuple[str, int, int]]:
    return {(m["code"].decode(), int(m["line"]), int(m["col"])) for m in EXPECT.finditer(raw)}


def test_the_corpus_is_large_enough() -> None:
    assert len(FILES) >= 40


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_invalid_document_reports_exactly_its_expected_errors(path: Path) -> None:
    # Given a document whose header says which errors it must produce
    raw = path.read_bytes()
    expected = expectations(raw)
    assert expected, f"{path.name} has no '# expect: code at line:col' header"

    # When it is validated
    report = check_flow(raw, path.name)

    # Then exactly those errors are reported, each with a file, a line and a column
    got = {(i.code, i.location.line, i.location.column) for i in report.errors}
    assert got == expected, "\n".join(str(i) for i in report.issues)
    assert all(i.location.file == path.name and i.message and i.hint for i in report.errors)
