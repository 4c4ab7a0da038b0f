# Sourced by the scripts: find uv (or install it privately into .tools/), then sync the locked environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOOLS=.tools  # git-ignored; holds only uv, so deleting it is always safe

_install_uv() {
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "ionflux: python3 3.11 or newer is needed (on Debian/Ubuntu: sudo apt install python3 python3-venv)" >&2
    exit 1
  fi
  echo "ionflux: installing uv (the project's package manager) from PyPI into $TOOLS/..." >&2
  rm -rf "$TOOLS"
  # A venv of our own rather than `pip install --user`: Debian 12+ refuses that (PEP 668, externally managed).
  # Its pip comes from ensurepip, which Debian ships separately in python3-venv.
  if python3 -m venv "$TOOLS" >/dev/null 2>&1 &&
    "$TOOLS/bin/python" -m pip install --quiet --disable-pip-version-check uv; then
    return
  fi
  rm -rf "$TOOLS"
  # No python3-venv: the system pip can still install into a private folder (--target is outside PEP 668's
  # rule because it leaves the system's packages alone). uv is one self-contained binary, so this suffices.
  if python3 -m pip --version >/dev/null 2>&1 &&
    PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --target "$TOOLS" uv; then
    return
  fi
  rm -rf "$TOOLS"
  cat >&2 <<'EOF'
ionflux: could not install uv (pip's error, if any, is above). Either
  - check that PyPI is reachable, and that python3 has venv or pip (Debian/Ubuntu: sudo apt install python3-venv),
    then run this again
  - or install uv yourself: https://docs.astral.sh/uv/getting-started/installation/
EOF
  exit 1
}

if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  if ! "$TOOLS/bin/uv" --version >/dev/null 2>&1; then
    _install_uv
  fi
  UV=("$PWD/$TOOLS/bin/uv")
  # Trust the system's CA store, as Debian's pip (which just fetched uv) does; uv's built-in roots fail behind
  # TLS-inspecting proxies. UV_NATIVE_TLS is the older uv's name for UV_SYSTEM_CERTS; a user's own setting wins.
  export UV_SYSTEM_CERTS="${UV_SYSTEM_CERTS:-1}" UV_NATIVE_TLS="${UV_NATIVE_TLS:-1}"
fi
"${UV[@]}" sync --frozen --quiet
