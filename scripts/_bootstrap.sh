# Sourced by the scripts: make sure uv exists and the locked environment is installed.
# Needs only Python 3.11+ and pip on the machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
UV_VERSION="0.13.8"

find_uv() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  if [ -x "$ROOT/.tools/bin/uv" ]; then echo "$ROOT/.tools/bin/uv"; return; fi
  echo "bootstrap: installing uv $UV_VERSION into .tools/" >&2
  python3 -m venv "$ROOT/.tools" >&2
  "$ROOT/.tools/bin/pip" install --quiet "uv==$UV_VERSION" >&2
  echo "$ROOT/.tools/bin/uv"
}

UV="$(find_uv)"
export UV_PYTHON_DOWNLOADS=never
"$UV" sync --frozen --quiet ${UV_SYNC_ARGS:-}
export PATH="$ROOT/.venv/bin:$PATH"
