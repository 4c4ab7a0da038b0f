# Sourced by the scripts: find uv, or install it from PyPI for this user, then sync the locked environment.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  echo "ionflux: installing uv (the project's package manager) from PyPI..." >&2
  python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  UV=(python3 -m uv)
fi
"${UV[@]}" sync --frozen --quiet
