#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs `instseg demo` (trains a small
# Mask R-CNN on generated shapes, evaluates it and draws its predictions into out/demo).
# Extra arguments go to the demo, e.g. scripts/run.sh --minutes 3
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh --target instseg
# --overwrite: each run of this script is a fresh demo in its own folder, replacing the last one.
exec build/instseg demo --out out/demo --overwrite "$@"
