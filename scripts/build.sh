#!/usr/bin/env bash
# Configures and builds instseg into build/ (Release). Extra arguments go to cmake --build.
set -euo pipefail
cd "$(dirname "$0")/.."
# INSTSEG_BUILD_BENCH=OFF leaves out bench/ (the test run does: no test uses the benchmarks, and
# they cost minutes of a 2-core CI run).
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DINSTSEG_BUILD_BENCH="${INSTSEG_BUILD_BENCH:-ON}" >/dev/null
cmake --build build -j"$(nproc)" "$@"
