"""docs/api.md's walkthrough, pasted into bash as a newcomer would, against a real `ionflux up` on loopback:
first owner and token, a flow posted, run, followed over SSE, and read back with its outputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.services import free_port, need_commands


def _walkthrough() -> str:
    page = (ROOT / "docs" / "api.md").read_text("utf-8")
    section = page[page.index("## A walkthrough you can paste") :]
    found = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_curl_walkthrough_works_as_written(tmp_path: Path) -> None:
    need_commands("curl", "jq")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IONFLUX_")}
    env.update(IONFLUX_HOME=str(tmp_path / "home"), IONFLUX_BIND=f"127.0.0.1:{port}", PYTHONPATH=str(ROOT))
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "up", "--seconds", "120"], env=env, cwd=ROOT, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the server did not start: " + (tmp_path / "server.log").read_text())
                time.sleep(0.2)
        script = _walkthrough().replace("http://127.0.0.1:8080", f"http://127.0.0.1:{port}")
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert '"id":"hello-api"' in done.stdout.replace(" ", "")
        assert "event: end" in done.stdout  # the live stream ran to the run's end
        assert done.stdout.rstrip().endswith(
            '{\n  "status": "succeeded",\n  "outputs": {\n    "greeting": "Hello, Ana!"\n  }\n}'
        )
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    # `ionflux up` alone keeps the open demo off (./scripts/start turns it on: tests/test_api_edges.py)
    assert "OPEN DEMO" not in (tmp_path / "server.log").read_text()
