#!/usr/bin/env bash
# Create (idempotently) the isolated virtualenv used by bench/prefect_side.py.
#
# Prefect is deliberately kept out of the project's own uv environment: it pulls in a large, pinned dependency tree
# that would conflict with / bloat the engine's lockfile. The venv lives under .bench/ (git-ignored).
#
# Usage: bash bench/prefect_env.sh
# The last line of stdout is the absolute path of the venv's python; all progress output goes to stderr.
set -euo pipefail

PREFECT_VERSION="3.8.8"
# fastapi >= 0.140 breaks prefect 3.8.8's server, so it is pinned to the last compatible minor series.
FASTAPI_SPEC="fastapi==0.139.*"

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bench_dir="${repo_root}/.bench"
venv_dir="${bench_dir}/prefect-venv"
venv_python="${venv_dir}/bin/python"

log() { echo "[prefect_env] $*" >&2; }

# True when the venv's python can import prefect at exactly the pinned version.
prefect_ready() {
    [[ -x "${venv_python}" ]] || return 1
    "${venv_python}" - "${PREFECT_VERSION}" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version

import prefect  # noqa: F401  (import check: a broken install must not count as ready)

sys.exit(0 if version("prefect") == sys.argv[1] else 1)
PY
}

if prefect_ready; then
    log "prefect ${PREFECT_VERSION} already installed in ${venv_dir}"
else
    mkdir -p "${bench_dir}"
    if [[ ! -x "${venv_python}" ]]; then
        log "creating virtualenv at ${venv_dir}"
        python3 -m venv "${venv_dir}"
    fi
    log "installing prefect==${PREFECT_VERSION} and ${FASTAPI_SPEC}"
    # pip's own output goes to stderr so that stdout stays machine-readable (last line = python path).
    "${venv_python}" -m pip install --disable-pip-version-check --quiet --upgrade pip >&2
    "${venv_python}" -m pip install --disable-pip-version-check "prefect==${PREFECT_VERSION}" "${FASTAPI_SPEC}" >&2
    if ! prefect_ready; then
        log "ERROR: prefect ${PREFECT_VERSION} still not importable after install"
        exit 1
    fi
    log "done"
fi

echo "${venv_python}"
