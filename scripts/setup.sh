#!/usr/bin/env bash
# Sets up a Debian/Ubuntu machine for mproc and builds it: installs the missing packages,
# configures ./build (RelWithDebInfo), builds with every core and runs the demo.
# Idempotent: run it again at any time; it installs nothing that is there and rebuilds
# only what changed.
#
# Environment: BUILD_DIR (default: build), CMAKE_ARGS (extra arguments for cmake's configure,
# e.g. CMAKE_ARGS=-DBUILD_SHARED_LIBS=ON).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD_DIR=${BUILD_DIR:-build}
jobs=$(nproc 2>/dev/null || echo 2)

step() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- 1. packages -------------------------------------------------------------------------
required=(build-essential g++ cmake libgtest-dev libgmock-dev libbenchmark-dev libcereal-dev libssl-dev python3)
optional=(ninja-build    # faster builds; Makefiles otherwise
          clang          # scripts/fuzz.sh (libFuzzer); its runtime is installed below
          tmux           # the progress bar's test in a real terminal (progress_in_tmux)
          libopenmpi-dev openmpi-bin  # mproc::mpi (<mproc/mpi.hpp>) and its tests under mpiexec
          python3-mpi4py)  # bench/python/mpi_futures.py: mpi4py.futures beside mproc::mpi

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

if command -v dpkg-query >/dev/null 2>&1; then
  missing=() missing_optional=()
  for p in "${required[@]}"; do is_installed "$p" || missing+=("$p"); done
  for p in "${optional[@]}"; do is_installed "$p" || missing_optional+=("$p"); done

  if [ ${#missing[@]} -eq 0 ] && [ ${#missing_optional[@]} -eq 0 ]; then
    step "packages: all present"
  else
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
      elif [ ${#missing[@]} -eq 0 ]; then
        sudo=(none)   # only optional packages missing and no way to install them: go on
      else
        printf 'error: missing packages, and no root or password-less sudo to install them.\n' >&2
        printf 'Install them, then run this script again:\n' >&2
        printf '  sudo apt-get install -y %s\n' "${missing[*]}" >&2
        exit 1
      fi
    fi
    if [ "${sudo[*]}" = none ]; then
      step "packages: optional ${missing_optional[*]} missing (not root); using what is there"
    else
      to_install=("${missing[@]}" "${missing_optional[@]}")
      step "packages: installing ${to_install[*]}"
      export DEBIAN_FRONTEND=noninteractive
      "${sudo[@]}" apt-get update -qq
      "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${to_install[@]}" >/dev/null
    fi
  fi
else
  step "packages: no dpkg-query (not Debian?); assuming ${required[*]} are installed"
fi
# libFuzzer ships in Clang's runtime package, named after Clang's major version
# (libclang-rt-14-dev on Debian 12): installed when Clang is there and cannot link a fuzzer.
if command -v clang++ >/dev/null 2>&1 && command -v dpkg-query >/dev/null 2>&1; then
  probe=$(mktemp -d)
  printf 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }\n' >"$probe/f.cpp"
  if clang++ -fsanitize=fuzzer "$probe/f.cpp" -o "$probe/f" >/dev/null 2>&1; then
    step "libFuzzer: present"
  else
    major=$(clang++ -dumpversion | cut -d. -f1)
    runtime="libclang-rt-$major-dev"
    if [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
      sudo=(); [ "$(id -u)" -eq 0 ] || sudo=(sudo -n)
      step "libFuzzer: installing $runtime"
      export DEBIAN_FRONTEND=noninteractive
      "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$runtime" >/dev/null ||
        { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$runtime" >/dev/null; } ||
        step "libFuzzer: $runtime could not be installed; scripts/fuzz.sh will not build"
    else
      step "libFuzzer: $runtime missing (not root); scripts/fuzz.sh will not build"
    fi
  fi
  rm -rf "$probe"
fi
command -v cmake >/dev/null || die "cmake not found"
command -v c++ >/dev/null || command -v g++ >/dev/null || die "no C++ compiler found"

# --- 2. configure ------------------------------------------------------------------------
# shellcheck disable=SC2206  # CMAKE_ARGS is a list of words on purpose
extra=(${CMAKE_ARGS:-})
if [ -f "$BUILD_DIR/CMakeCache.txt" ]; then
  step "configure: $BUILD_DIR (already configured; refreshing)"
  cmake -S . -B "$BUILD_DIR" "${extra[@]}" >/dev/null
else
  generator=()
  if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
  step "configure: $BUILD_DIR (RelWithDebInfo${generator[*]:+, Ninja})"
  cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo "${extra[@]}" >/dev/null
fi

# --- 3. build ----------------------------------------------------------------------------
step "build: $jobs jobs"
start=$SECONDS
cmake --build "$BUILD_DIR" -j "$jobs"
step "build: done in $((SECONDS - start)) s"

# --- 4. demo -----------------------------------------------------------------------------
step "demo: ./$BUILD_DIR/examples/demo"
"./$BUILD_DIR/examples/demo"
step "ready. Run the tests with: scripts/test.sh"
