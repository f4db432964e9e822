#!/usr/bin/env bash
# Installs what instseg needs on Debian 12 and is quiet when everything is already there.
# Usage: scripts/setup.sh [--tests]   (--tests adds the Python reference used by the test suite and
#                                      clang for the sanitizer build and the fuzzers)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libtorch-dev libopencv-dev nlohmann-json3-dev libcli11-dev
  libgtest-dev libgmock-dev
  libopenblas0-pthread   # LibTorch's fully-connected layers are ~30x slower on the reference BLAS
  # Headers of the Gloo collectives that LibTorch's c10d process group includes (libtorch-dev does
  # not pull them in): without them instseg builds but trains in one process only (docs/distributed.md).
  libgloo-dev
  libcpp-httplib-dev     # `instseg serve` (docs/serving.md)
  libdnnl-dev            # predict's fused oneDNN convolutions (the oneDNN LibTorch itself links)
)
if [[ "${1:-}" == "--tests" ]]; then
  # Test-only reference: torchvision 0.14 under /usr/bin/python3; never needed at run time.
  packages+=(python3-torchvision python3-numpy)
  # torchrun (/usr/bin/torchrun): tests/cli/distributed_command_test.cpp launches jobs with it.
  packages+=(python3-torch)
  # scripts/sanitize.sh and scripts/fuzz.sh: clang with its sanitizer and libFuzzer runtimes.
  packages+=(clang libclang-rt-14-dev)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
