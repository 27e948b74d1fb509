#!/usr/bin/env bash
# Installs what `make run` and `make test` need, once, from package
# registries only (nothing from a CDN or model hub). Idempotent: a second
# run checks and returns.
#
#   LINGXI_CACHE_DIR   default ~/.cache/lingxi (shared by clones and CI)
set -euo pipefail

CACHE="${LINGXI_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lingxi}"
WEB="${LINGXI_ASSETS_DIR:-$CACHE/web}"

say() { printf '[setup] %s\n' "$*" >&2; }

# --- GraphiQL (npm registry) -------------------------------------------------
GRAPHIQL_VERSION=3.8.3
REACT_VERSION=18.3.1
graphiql_files=(react.production.min.js react-dom.production.min.js graphiql.min.js graphiql.min.css)
if [[ -f "$WEB/.version" && "$(cat "$WEB/.version")" == "graphiql-$GRAPHIQL_VERSION react-$REACT_VERSION" ]]; then
  say "GraphiQL $GRAPHIQL_VERSION present in $WEB"
elif ! command -v npm >/dev/null 2>&1; then
  say "npm not found: GraphiQL will not be served (the API works without it)"
else
  say "fetching GraphiQL $GRAPHIQL_VERSION from the npm registry into $WEB"
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "graphiql@$GRAPHIQL_VERSION" "react@$REACT_VERSION" "react-dom@$REACT_VERSION" >/dev/null)
  mkdir -p "$tmp/x" "$WEB"
  tar -xzf "$tmp/graphiql-$GRAPHIQL_VERSION.tgz" -C "$tmp/x" package/graphiql.min.js package/graphiql.min.css
  cp "$tmp/x/package/graphiql.min.js" "$tmp/x/package/graphiql.min.css" "$WEB/"
  tar -xzf "$tmp/react-$REACT_VERSION.tgz" -C "$tmp/x" package/umd/react.production.min.js
  cp "$tmp/x/package/umd/react.production.min.js" "$WEB/"
  tar -xzf "$tmp/react-dom-$REACT_VERSION.tgz" -C "$tmp/x" package/umd/react-dom.production.min.js
  cp "$tmp/x/package/umd/react-dom.production.min.js" "$WEB/"
  for f in "${graphiql_files[@]}"; do [[ -s "$WEB/$f" ]] || { say "missing $f after install"; exit 1; }; done
  echo "graphiql-$GRAPHIQL_VERSION react-$REACT_VERSION" > "$WEB/.version"
fi
