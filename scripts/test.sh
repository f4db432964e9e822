#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite; then the unit tests of the
# core and the checkpoint reader under ASan + UBSan, and a short fuzz pass (30 s per harness).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
INSTSEG_BUILD_BENCH=OFF scripts/build.sh
(cd build && ctest --output-on-failure -j"$(nproc)" --timeout 1200) | tee build/ctest.log
scripts/sanitize.sh
scripts/fuzz.sh --seconds 30
# ctest's summary last, where CI reads it.
grep -E '^[0-9]+% tests passed' build/ctest.log
