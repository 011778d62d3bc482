# Sourced by scripts/test: the JavaScript client tests (tests/e2e/test_js_clients.py) run the
# node examples in examples/node/ (Apollo Client 4, graphql-ws, the graphql-http audit) with
# Debian's node and the packages pinned by examples/node/package-lock.json. node and npm are
# installed with apt when missing and we are root; `npm ci` runs only when the lock file
# changed since the last install (a checksum kept in node_modules/), so a second run costs
# nothing. Without node the tests skip locally and fail under CI=true.
ensure_node_clients() {
  local dir="$ROOT/examples/node" stamp sum
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then return 0; fi
    echo "== installing nodejs and npm (apt) for the JavaScript client tests"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq nodejs npm >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq nodejs npm >/dev/null 2>&1; } \
      || { echo "   node could not be installed; JavaScript client tests will skip (fail under CI=true)"; return 0; }
  fi
  stamp="$dir/node_modules/.orders-api-lock.sha256"
  sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$sum" ]; then return 0; fi
  echo "== npm ci in examples/node (Apollo Client, graphql-ws, graphql-http)"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
    || { echo "   npm ci failed; JavaScript client tests will skip (fail under CI=true)"; return 0; }
  echo "$sum" > "$stamp"
}
ensure_node_clients
