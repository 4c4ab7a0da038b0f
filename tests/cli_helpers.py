"""Running the ``ionflux`` command as a user does: a fresh IONFLUX_HOME, none of the caller's IONFLUX_* settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT


def ionflux(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 120, **settings: str
) -> subprocess.CompletedProcess[str]:
    """``ionflux ARGS`` with IONFLUX_HOME=home plus ``settings`` (names without the IONFLUX_ prefix)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IONFLUX_")}
    env.update({f"IONFLUX_{name.upper()}": value for name, value in settings.items()})
    env.update(IONFLUX_HOME=str(home), PYTHONPATH=str(ROOT), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
