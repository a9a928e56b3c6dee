#!/usr/bin/env bash
# Makes the GPU bundle: a self-contained folder to carry to a GPU machine whose
# image has a torch wheel (2.11, CUDA 13) but no MPI, HDF5 or Boost (issue 18).
#
#   bench/gpu_bundle.sh [--build DIR] [--python PY] [--wheels DIR|none] [--limit-mib N] OUTDIR
#
# OUTDIR gets
#   bin/      dinv, dinv_mpi_tests (its NCCL tests), mpirun (Open MPI's orterun), orted, ompi_info
#   lib/      every shared library they need that neither glibc nor the torch
#             wheel provides (Open MPI, PMIx, HDF5, Boost.Program_options, libpng,
#             libjpeg, hwloc, libevent, HDF5's libcurl and its TLS stack, ...),
#             copied from this machine (Debian 12) and stripped;
#             lib/openmpi and lib/pmix: the MCA plugins (without the InfiniBand,
#             UCX, libfabric and OpenSHMEM ones: a single node needs none of them)
#   compat/   libstdc++ and libgcc_s of this machine: env.sh puts them on the
#             library path only where the image's own are older than dinv needs
#   glibc/    this machine's glibc (loader, libc, libm, ...): env.sh starts the
#             executables through it where the image's glibc is older than the
#             bundle needs (Debian 12's libevent needs 2.36; Ubuntu 22.04 has 2.35)
#   share/, etc/  Open MPI's and PMIx's help texts and default parameters;
#             share/dinv: dinv's data directory where the build has one
#   env.sh    source it: PATH, LD_LIBRARY_PATH (the bundle, then torch's lib
#             folder found through PYTHON), OPAL_* / PMIX_* so that mpirun runs
#             from here
#   run_checks.sh, checks.py, bench/*.py, configs/   the checks of issue 18
#   wheels/   with --wheels DIR: the *.whl files of DIR (pure-Python packages
#             the checks import and the image may lack); none by default
# Nothing of the torch wheel is copied (libtorch*, libc10*, CUDA, cuDNN, NCCL):
# the GPU image has them. The image's glibc is used where it is as new as the
# bundle needs (BUNDLE.txt), else the bundle's (glibc/).
# The script fails when the bundle plus the repository's tracked files exceed
# --limit-mib (64: what the GPU machine takes).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=$repo/build python="" wheels=none limit_mib=64
while [[ $# -gt 1 ]]; do
  case $1 in
    --build) build=$2 ;; --python) python=$2 ;; --wheels) wheels=$2 ;; --limit-mib) limit_mib=$2 ;;
    *) echo "gpu_bundle.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift 2
done
[[ $# -eq 1 ]] || { sed -n 2,31p "$0" >&2; exit 2; }
out=$1
build=$(cd "$build" && pwd)
if [[ -z $python ]]; then
  python=$(sed -n 's/^DINV_PYTHON:FILEPATH=//p' "$build/CMakeCache.txt" 2>/dev/null || true)
  python=${python:-python3}
fi
log() { printf '[gpu_bundle] %s\n' "$*"; }
die() { printf 'gpu_bundle.sh: %s\n' "$*" >&2; exit 1; }

for f in dinv tests/dinv_mpi_tests; do [[ -x $build/$f ]] || die "$build/$f is missing: build first (cmake --build $build)"; done
orterun=$(command -v orterun || true)
[[ -n $orterun ]] || die "orterun (Open MPI's mpirun) not found: install openmpi-bin"
ompi_libdir=$(dirname "$(readlink -f "$(ldconfig -p | awk '/libmpi\.so\.40 / && !f {print $NF; f = 1}')")")
ompi_plugins=$(ompi_info --parsable --path pkglibdir 2>/dev/null | sed -n 's/^path:pkglibdir://p')
ompi_plugins=${ompi_plugins:-$ompi_libdir/openmpi3}
ompi_data=$(ompi_info --parsable --path pkgdatadir 2>/dev/null | sed -n 's/^path:pkgdatadir://p')
ompi_data=${ompi_data:-/usr/share/openmpi}
ompi_etc=$(ompi_info --parsable --path sysconfdir 2>/dev/null | sed -n 's/^path:sysconfdir://p')
ompi_etc=${ompi_etc:-/etc/openmpi}
pmix_root=$(dirname "$(dirname "$(readlink -f "$(ldconfig -p | awk '/libpmix\.so\.2 / && !f {print $NF; f = 1}')")")")
# Where the torch wheel's libraries live (torch/lib and the nvidia-* wheels):
# anything ldd resolves under this site-packages folder stays out of the bundle.
site=$("$python" -c 'import torch, os; print(os.path.dirname(os.path.dirname(os.path.realpath(torch.__file__))))') ||
  die "$python cannot import torch (--python PY: the Python whose torch dinv was built with)"

rm -rf "$out"
mkdir -p "$out"/{bin,lib/openmpi,lib/pmix,compat,share/openmpi,share/pmix,etc/openmpi,bench,configs}
out=$(cd "$out" && pwd)

log "executables from $build"
cp "$build/dinv" "$build/tests/dinv_mpi_tests" "$out/bin/"
cp "$(readlink -f "$orterun")" "$out/bin/mpirun"
ln -s mpirun "$out/bin/mpiexec"
for tool in orted ompi_info; do
  p=$(command -v $tool || true)
  [[ -n $p ]] && cp "$(readlink -f "$p")" "$out/bin/$tool"
done

log "Open MPI plugins from $ompi_plugins, PMIx plugins from $pmix_root/lib/pmix"
# Skipped: interconnects (InfiniBand verbs, UCX, libfabric, PSM), OpenSHMEM, Java.
skip='mca_(btl_openib|btl_ofi|mtl_|pml_ucx|osc_ucx|atomic_|spml_|sshmem_|memheap_|scoll_)'
for p in "$ompi_plugins"/*.so; do
  [[ $(basename "$p") =~ ^$skip ]] || cp "$p" "$out/lib/openmpi/"
done
cp "$pmix_root"/lib/pmix/*.so "$out/lib/pmix/" 2>/dev/null || true
cp -r "$ompi_data"/. "$out/share/openmpi/"
cp "$ompi_etc"/openmpi-mca-params.conf "$ompi_etc"/openmpi-default-hostfile "$out/etc/openmpi/" 2>/dev/null || true
[[ -d $pmix_root/share/pmix ]] && cp -r "$pmix_root"/share/pmix/. "$out/share/pmix/"
[[ -f $pmix_root/share/pmix-mca-params.conf ]] && cp "$pmix_root"/share/pmix-mca-params.conf "$out/etc/"

# glibc's libraries: every Linux image has its own (the version check is env.sh's).
glibc='^(linux-vdso\.so|ld-linux-x86-64\.so|libc\.so|libm\.so|libmvec\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libanl\.so|libnsl\.so|libBrokenLocale\.so|libnss_)'
# The torch wheel's own libraries and those of its nvidia-* wheels, by name too:
# the build may have found CUDA's runtime elsewhere (/usr/local/cuda here).
torch_wheel='^(libtorch|libc10|libcaffe2|libshm|libgomp|libcuda|libcudart|libcublas|libcudnn|libcufft|libcufile|libcurand|libcusolver|libcusparse|libcupti|libnccl|libnvrtc|libnvJitLink|libnvshmem|libnvToolsExt|libnvtx|libnvperf|libtriton)'
log "libraries (ldd closure without glibc and the torch wheel's: $site)"
declare -A seen=()
missing=()
elfs=("$out"/bin/* "$out"/lib/openmpi/*.so "$out"/lib/pmix/*.so)
for f in "${elfs[@]}"; do
  [[ -L $f ]] && continue
  # ldd (slow: it loads the file) only where a direct dependency is new
  new=0
  for n in $(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
    [[ -n ${seen[$n]:-} || $n =~ $glibc || $n =~ $torch_wheel ]] || { new=1; break; }
  done
  ((new)) || continue
  while read -r name arrow path _; do
    [[ $arrow == "=>" ]] || continue
    [[ -n ${seen[$name]:-} || $name =~ $glibc || $name =~ $torch_wheel ]] && continue
    if [[ $path == "not" ]]; then missing+=("$name (needed by $(basename "$f"))"); continue; fi
    seen[$name]=1
    real=$(readlink -f "$path")
    [[ $real == "$site"/* ]] && continue
    case $name in
      libstdc++.so.*|libgcc_s.so.*) cp "$real" "$out/compat/$name" ;;
      *) cp "$real" "$out/lib/$name" ;;
    esac
  done < <(ldd "$f" 2>/dev/null)
done
((${#missing[@]} == 0)) || die "unresolved libraries on this machine: ${missing[*]}"

# Debian 12's glibc, for images whose own is older (env.sh starts the
# executables through this loader then; never stripped, never on LD_LIBRARY_PATH).
mkdir -p "$out/glibc"
for lib in ld-linux-x86-64.so.2 libc.so.6 libm.so.6 libmvec.so.1 libpthread.so.0 libdl.so.2 librt.so.1 libutil.so.1 \
           libresolv.so.2 libanl.so.1; do
  p=$(ldconfig -p | awk -v n="$lib" '$1 == n && /x86-64/ && !f {print $NF; f = 1}')
  if [[ -n $p ]]; then cp "$(readlink -f "$p")" "$out/glibc/$lib"; fi
done
[[ -x $out/glibc/ld-linux-x86-64.so.2 ]] || cp "$(readlink -f /lib64/ld-linux-x86-64.so.2)" "$out/glibc/ld-linux-x86-64.so.2"
chmod +x "$out/glibc/ld-linux-x86-64.so.2"

log "stripping"
find "$out/bin" "$out/lib" "$out/compat" -type f -exec strip --strip-unneeded {} + 2>/dev/null || true
chmod -R u+w "$out"

log "check scripts"
cp "$repo"/bench/gpu_bundle/run_checks.sh "$repo"/bench/gpu_bundle/env.sh "$repo"/bench/gpu_bundle/checks.py \
   "$repo"/bench/gpu_bundle/stage_speed.py "$out/"
# dinv's data directory (the CLIP merge list, ...), where this dinv looks for it:
# <bin>/../share/dinv, the layout of an install; a build tree links it as <build>/share/dinv.
if [[ -d $build/share/dinv ]]; then
  mkdir -p "$out/share/dinv"
  cp -rL "$build/share/dinv"/. "$out/share/dinv/"
fi
cp "$repo"/bench/*.py "$out/bench/"
cp "$repo"/configs/*.ini "$out/configs/"
chmod +x "$out/run_checks.sh"
if [[ $wheels != none ]]; then
  mkdir -p "$out/wheels"
  cp "$wheels"/*.whl "$out/wheels/"
fi
{
  echo "dinv GPU bundle, made $(date -u '+%Y-%m-%d %H:%M UTC') on $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "commit: $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)')"
  echo "build: $build"
  echo "glibc: $(getconf GNU_LIBC_VERSION | awk '{print $2}') (glibc/, used where the image's is older)"
  echo "torch of the build: $("$python" -c 'import torch; print(torch.__version__)')"
  echo "needs: glibc >= $(objdump -T "$out"/bin/* "$out"/lib/*.so* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | cut -d_ -f2)," \
       "libstdc++ GLIBCXX $(objdump -T "$out"/bin/* "$out"/lib/*.so* 2>/dev/null | grep -o 'GLIBCXX_[0-9.]*' | sort -uV | tail -1 | cut -d_ -f2) (compat/ has it)"
} > "$out/BUNDLE.txt"

bundle_bytes=$(du -sb "$out" | cut -f1)
tracked_bytes=$(cd "$repo" && git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
total=$((bundle_bytes + tracked_bytes))
echo "size: bundle $bundle_bytes bytes, repository's tracked files $tracked_bytes bytes, total $total bytes" \
     "($(awk -v t="$total" 'BEGIN{printf "%.1f", t/1048576}') MiB of $limit_mib MiB)" | tee -a "$out/BUNDLE.txt"
((total <= limit_mib * 1048576)) || die "the bundle plus the repository exceed $limit_mib MiB"
log "done: $out (run: bash $out/run_checks.sh OUTDIR)"
