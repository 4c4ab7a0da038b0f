"""The CPython component that runs ``code.python``: built once per machine with componentize-py, then cached.

The component (~18 MB: CPython 3.14 for wasm32-wasip2, the guest in ``guests/python`` and the standard modules it
imports) is not shipped in the repository: it is built on first use (about 5 s) into a cache folder, keyed by
everything it is made of (guest source, WIT world, componentize-py version), so an upgrade rebuilds it and
concurrent processes build it once (a file lock). The build runs in a subprocess with an empty environment: the
interpreter is snapshotted after the guest's imports, and nothing of the operator's environment (secrets) may
end up inside it.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from engine.errors import IonfluxError

log = logging.getLogger("ionflux.sandbox")
GUEST = Path(__file__).parent / "guests" / "python"
WORLD = "python-step"
EXPORT = "run"
BUILD_TIMEOUT_SECONDS = 300


class ComponentBuildError(IonfluxError):
    code = "sandbox.python_unavailable"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ionflux" / "python-component"


def fingerprint() -> str:
    """What the component is made of: a change to any of it means another component."""
    digest = hashlib.sha256()
    for name in ("guest.py", "world.wit"):
        digest.update((GUEST / name).read_bytes())
    try:
        digest.update(metadata.version("componentize-py").encode())
    except metadata.PackageNotFoundError:
        raise ComponentBuildError(
            "code.python is not available: the componentize-py package is not installed",
            hint="install IONFLUX with its dependencies (./scripts/start or uv sync)",
        ) from None
    return digest.hexdigest()[:16]


def built() -> bool:
    """Whether this machine has the component already (``path()`` returns at once)."""
    return _target().exists()


def _target() -> Path:
    return cache_dir() / f"python-step-{fingerprint()}.wasm"


def path() -> Path:
    """The component's file, built first if this machine has none yet (blocks while another process builds it)."""
    target = _target()
    folder = target.parent
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():  # another process may have built it while this one waited
            _build(target)
    return target


def _build(target: Path) -> None:
    started = time.monotonic()
    log.info("building the code.python component (once per machine, ~5 s) into %s", target.parent)
    with tempfile.TemporaryDirectory(prefix="ionflux-pybuild-") as work:
        out = Path(work) / "component.wasm"
        command = [
            sys.executable,
            "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
            "--wit-path",
            str(GUEST / "world.wit"),
            "--world",
            WORLD,
            "--quiet",
            "componentize",
            "--python-path",
            str(GUEST),
            "guest",
            "--output",
            str(out),
        ]
        # an empty environment (no VIRTUAL_ENV: nothing of the venv is bundled; no secrets snapshotted)
        env = {"PATH": os.defpath, "HOME": work}
        try:
            done = subprocess.run(
                command, cwd=work, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_SECONDS
            )
        except subprocess.TimeoutExpired:
            raise ComponentBuildError(
                f"building the code.python component took over {BUILD_TIMEOUT_SECONDS} s",
                hint="check the machine's load and retry; the build is cached once it succeeds",
            ) from None
        if done.returncode != 0 or not out.exists():
            tail = (done.stderr or done.stdout).strip()[-800:]
            raise ComponentBuildError(
                f"building the code.python component failed (componentize-py exit {done.returncode}): {tail}",
                hint="reinstall the dependencies (uv sync); the log above says what componentize-py refused",
            )
        staged = target.with_suffix(".tmp")
        staged.write_bytes(out.read_bytes())
        staged.replace(target)  # atomic: a reader sees the whole component or none
    log.info("built the code.python component in %.1f s", time.monotonic() - started)
