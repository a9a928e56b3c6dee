#!/usr/bin/env bash
# Take a fresh Debian 12 machine (root; Debian packages and PyPI reachable) to a
# built dinv tree. Every step checks first, so a second run is a no-op apart
# from an incremental build that takes seconds.
#
#   DINV_VENV   Python virtual environment (default /opt/dinv/venv), shared by
#               every checkout on the machine so that torch is installed once.
#   BUILD_DIR   CMake build folder (default build/ in the checkout).
#   DINV_BUILD_TYPE  Release (default) or Debug / RelWithDebInfo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${DINV_VENV:-/opt/dinv/venv}"
build="${BUILD_DIR:-$repo/build}"
log() { printf '[bootstrap] %s\n' "$*"; }

apt_packages=(
  build-essential cmake git pkg-config ccache clang-format
  openmpi-bin libopenmpi-dev libhdf5-openmpi-dev hdf5-tools
  libboost-program-options-dev libgtest-dev
  libpng-dev libjpeg62-turbo-dev zlib1g-dev nlohmann-json3-dev
  python3 python3-venv
  environment-modules
)

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  else
    log "Debian packages present"
  fi
}

install_python() {
  local req="$repo/scripts/requirements.txt"
  local stamp="$venv/.dinv-requirements.sha256"
  local want; want=$(sha256sum "$req" | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    log "Python environment $venv up to date"
    return
  fi
  [[ -x "$venv/bin/python" ]] || { log "creating $venv"; mkdir -p "$(dirname "$venv")"; python3 -m venv "$venv"; }
  log "installing Python requirements into $venv (torch is large: minutes on a first run)"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -r "$req"
  echo "$want" > "$stamp"
}

configure_and_build() {
  local cmake="$venv/bin/cmake"   # CMake from PyPI: Debian's 3.25 trips on Torch's CUDA setup
  if [[ ! -f "$build/CMakeCache.txt" ]]; then
    log "configuring $build"
    "$cmake" -S "$repo" -B "$build" -G Ninja \
      -DCMAKE_BUILD_TYPE="${DINV_BUILD_TYPE:-Release}" \
      -DDINV_PYTHON="$venv/bin/python" \
      -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja"
  fi
  log "building (ccache at ${CCACHE_DIR:-~/.cache/ccache})"
  "$cmake" --build "$build" --parallel "$(nproc)"
}

install_apt
install_python
configure_and_build
log "done: $build/dinv"
