# Sourced by scripts/test: the browser tests (tests/browser) drive the system Chromium
# through Playwright; a browser is never downloaded (`playwright install` is not used).
# Installed with apt when missing and we are root; otherwise skipped quietly, and the
# browser tests then skip locally and fail under CI=true.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then return 0; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then return 0; fi
  echo "== installing chromium (apt) for the browser tests"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; } \
    || echo "   chromium could not be installed; browser tests will skip (fail under CI=true)"
}
ensure_chromium
mkdir -p "$ROOT/test-output"  # screenshots (git-ignored)
