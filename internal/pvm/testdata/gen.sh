#!/usr/bin/env bash
# Regenerates the .wasm test kernels from their .wat sources (needs wabt's wat2wasm).
set -euo pipefail
cd "$(dirname "$0")"
for f in *.wat; do
  wat2wasm --enable-all "$f" -o "${f%.wat}.wasm"
done
