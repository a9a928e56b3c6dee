#!/usr/bin/env bash
# ctest bundle.gpu_bundle: bench/gpu_bundle.sh makes the GPU bundle from this
# build into a temporary folder; then
#   1. the bundle plus the repository's tracked files fit in 64 MiB (the script's own check);
#   2. with LD_LIBRARY_PATH = the bundle's lib/ and the torch wheel's folders only,
#      ldd resolves every library of every executable and plugin of the bundle
#      into the bundle, the torch wheel or glibc / libstdc++ / libgcc_s;
#   3. `mpirun -np 1 dinv --version` from the bundle, in a clean environment
#      (env -i), and where this user may (root), in a mount namespace where
#      the system's Open MPI, PMIx, HDF5 and Boost files are hidden.
# Needs DINV_SOURCE_DIR, DINV_BUILD_DIR, DINV_PYTHON (ctest sets them).
set -euo pipefail
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bundle=$tmp/bundle
fail() { echo "FAIL: $*" >&2; exit 1; }

bash "$DINV_SOURCE_DIR/bench/gpu_bundle.sh" --build "$DINV_BUILD_DIR" --python "$DINV_PYTHON" "$bundle" > "$tmp/make.log" 2>&1 ||
  { cat "$tmp/make.log" >&2; fail "gpu_bundle.sh failed"; }
grep '^size:' "$tmp/make.log"

site=$("$DINV_PYTHON" -c 'import os, torch; print(os.path.dirname(os.path.dirname(os.path.realpath(torch.__file__))))')
torch_lib=$("$DINV_PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
nvidia_libs=$("$DINV_PYTHON" -c 'import glob, os; print(":".join(sorted(glob.glob(os.path.join("'"$site"'", "nvidia", "*", "lib")))))')
base='^(linux-vdso|ld-linux-x86-64|libc|libm|libmvec|libdl|libpthread|librt|libresolv|libutil|libanl|libstdc\+\+|libgcc_s)\.so'
checked=0
for f in "$bundle"/bin/* "$bundle"/lib/*.so* "$bundle"/lib/openmpi/*.so "$bundle"/lib/pmix/*.so; do
  [[ -L $f ]] && continue
  out=$(env -i LD_LIBRARY_PATH="$bundle/lib:$torch_lib${nvidia_libs:+:$nvidia_libs}" ldd "$f" 2>&1) || fail "ldd $f: $out"
  ! grep -q "not found" <<< "$out" || fail "$(basename "$f"): $(grep "not found" <<< "$out" | tr -s ' \t' ' ')"
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    real=$(readlink -f "$path")
    [[ $path == "$bundle"/* || $real == "$site"/* || $name =~ $base ]] ||
      fail "$(basename "$f") loads $name from $path, outside the bundle and the torch wheel"
  done <<< "$out"
  checked=$((checked + 1))
done
echo "ldd: $checked files resolve into the bundle, the torch wheel or glibc / libstdc++"

one_rank='. "$0/env.sh" && { [[ -z $DINV_ENV_ERROR ]] || { echo "env.sh: $DINV_ENV_ERROR"; exit 1; }; } &&
  { [[ $(command -v mpirun) == "$0/bin/mpirun" ]] || { echo "mpirun is $(command -v mpirun)"; exit 1; }; } &&
  mpirun -np 1 dinv --version'
out=$(cd "$tmp" && env -i PATH=/usr/bin:/bin HOME="$tmp" PYTHON="$DINV_PYTHON" bash -c "$one_rank" "$bundle" 2>&1) ||
  fail "mpirun -np 1 dinv --version from the bundle (env -i): $out"
echo "env -i: $(head -1 <<< "$out")"

# The same with the system's copies hidden (bind mounts of /dev/null over them).
if [[ $(id -u) == 0 ]] && unshare --mount --propagation private true 2>/dev/null; then
  hide=$tmp/hide.sh
  {
    echo 'set -e'
    # not the libraries that the Python importing torch has loaded (zlib, libffi, ...): any image has its own
    python_libs=" $("$DINV_PYTHON" -c 'import os, ctypes, torch
print(" ".join(sorted({os.path.basename(l.split()[-1]) for l in open("/proc/self/maps") if ".so" in l})))') "
    for f in "$bundle"/lib/*.so*; do
      for sys in /usr/lib/x86_64-linux-gnu/$(basename "$f") /lib/x86_64-linux-gnu/$(basename "$f"); do
        [[ -e $sys ]] || continue
        real=$(readlink -f "$sys")
        [[ $python_libs == *" $(basename "$real") "* ]] || echo "mount --bind /dev/null $real"
      done
    done
    for b in /usr/bin/orterun /usr/bin/orted; do [[ -e $b ]] && echo "mount --bind /dev/null $b"; done
    # then the folders of Open MPI's and PMIx's plugins, help texts and settings
    for d in /usr/lib/x86_64-linux-gnu/openmpi /usr/lib/x86_64-linux-gnu/pmix2 /usr/share/openmpi /etc/openmpi; do
      [[ -d $d ]] && echo "mount -t tmpfs none $d"
    done
    echo 'exec env -i PATH=/usr/bin:/bin HOME="$2" PYTHON="$3" bash -c "$4" "$1"'
  } > "$hide"
  out=$(cd "$tmp" && unshare --mount --propagation private bash "$hide" "$bundle" "$tmp" "$DINV_PYTHON" "$one_rank" 2>&1) ||
    fail "mpirun -np 1 dinv --version with the system's MPI/HDF5/Boost hidden: $out"
  echo "system libraries hidden ($(grep -c "^mount" "$hide") mounts): $(head -1 <<< "$out")"
else
  echo "not root or no unshare: the run with the system's libraries hidden was not tried"
fi
echo "PASS"
