# Source this file (bash) to run dinv and mpirun from the GPU bundle:
#   PYTHON=/path/to/python . BUNDLE/env.sh
# PYTHON (default python3) is a Python with the torch wheel: its torch/lib
# folder (LibTorch, c10) and the nvidia-* wheels' lib folders come after the
# bundle's lib/ on LD_LIBRARY_PATH. Open MPI and PMIx are told through
# OPAL_* / PMIX_* where their plugins, help texts and parameters are. Sets
# DINV_BUNDLE, DINV_BIN (where dinv, mpirun... are), DINV_GLIBC (which glibc),
# TORCH_LIB, NVIDIA_LIBS and DINV_ENV_ERROR (empty when dinv starts).
DINV_BUNDLE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
DINV_ENV_ERROR=""
TORCH_LIB=$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null) ||
  { TORCH_LIB=""; DINV_ENV_ERROR="$PYTHON cannot import torch (set PYTHON to a Python with the torch wheel)"; }
# dinv links libnccl.so.2 (and CUDA's runtime) itself: the nvidia-* wheels' lib
# folders next to torch (libtorch_cuda finds them through its own RUNPATH).
NVIDIA_LIBS=$("$PYTHON" -c 'import glob, os, torch
site = os.path.dirname(os.path.dirname(torch.__file__))
print(":".join(sorted(glob.glob(os.path.join(site, "nvidia", "*", "lib")))))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$DINV_BUNDLE/lib${TORCH_LIB:+:$TORCH_LIB}${NVIDIA_LIBS:+:$NVIDIA_LIBS}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
# The bundle's glibc (Debian 12's) where the image's is older than the bundle
# needs (BUNDLE.txt) or DINV_GLIBC_COMPAT=1: then DINV_BIN is a folder of
# wrappers that start each executable through the bundle's dynamic loader; the
# loader's library path (the bundle's glibc and libstdc++ first) applies to
# that process only, so that the image's own programs (Python) are unaffected.
DINV_BIN="$DINV_BUNDLE/bin" DINV_GLIBC="the image's ($(getconf GNU_LIBC_VERSION 2>/dev/null))"
glibc_need=$(sed -n 's/^needs: glibc >= \([0-9.]*\),.*/\1/p' "$DINV_BUNDLE/BUNDLE.txt" 2>/dev/null)
glibc_have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
use_glibc=${DINV_GLIBC_COMPAT:-auto}
if [[ $use_glibc == auto ]]; then
  use_glibc=0
  [[ -n $glibc_need && -n $glibc_have && $(printf '%s\n' "$glibc_need" "$glibc_have" | sort -V | head -1) != "$glibc_need" ]] && use_glibc=1
fi
if [[ $use_glibc == 1 && -x $DINV_BUNDLE/glibc/ld-linux-x86-64.so.2 ]]; then
  DINV_BIN=$(mktemp -d "${TMPDIR:-/tmp}/dinv-bundle-bin.XXXXXX")
  for exe in "$DINV_BUNDLE"/bin/*; do
    if [[ -L $exe ]]; then ln -s "$(readlink "$exe")" "$DINV_BIN/${exe##*/}"; continue; fi
    printf '#!/bin/sh\nexec "%s/glibc/ld-linux-x86-64.so.2" --library-path "%s/glibc:%s/compat:$LD_LIBRARY_PATH" "%s" "$@"\n' \
      "$DINV_BUNDLE" "$DINV_BUNDLE" "$DINV_BUNDLE" "$exe" > "$DINV_BIN/${exe##*/}"
    chmod +x "$DINV_BIN/${exe##*/}"
  done
  DINV_GLIBC="the bundle's ($(sed -n 's/^glibc: \([0-9.]*\).*/\1/p' "$DINV_BUNDLE/BUNDLE.txt" 2>/dev/null); the image has ${glibc_have:-?}), through wrappers in $DINV_BIN"
fi
unset glibc_need glibc_have use_glibc exe
export PATH="$DINV_BIN:$PATH"
export OPAL_PREFIX="$DINV_BUNDLE" OPAL_BINDIR="$DINV_BUNDLE/bin" OPAL_LIBDIR="$DINV_BUNDLE/lib" \
       OPAL_PKGLIBDIR="$DINV_BUNDLE/lib/openmpi" OPAL_DATADIR="$DINV_BUNDLE/share" \
       OPAL_PKGDATADIR="$DINV_BUNDLE/share/openmpi" OPAL_SYSCONFDIR="$DINV_BUNDLE/etc/openmpi"
export PMIX_PREFIX="$DINV_BUNDLE" PMIX_LIBDIR="$DINV_BUNDLE/lib" PMIX_PKGLIBDIR="$DINV_BUNDLE/lib/pmix" \
       PMIX_PKGDATADIR="$DINV_BUNDLE/share/pmix" PMIX_MCA_mca_base_component_path="$DINV_BUNDLE/lib/pmix"
export OMPI_MCA_mca_base_component_path="$DINV_BUNDLE/lib/openmpi"
# Containers run as root; one node, more ranks than cores allowed.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# libstdc++ / libgcc_s of the build machine, only where the image's are older.
if [[ -z $DINV_ENV_ERROR ]] && ! err=$("$DINV_BIN/dinv" --version 2>&1 >/dev/null); then
  if grep -q "GLIBCXX\|CXXABI\|GCC_[0-9]" <<<"$err"; then
    export LD_LIBRARY_PATH="$DINV_BUNDLE/compat:$LD_LIBRARY_PATH"
    err=$("$DINV_BIN/dinv" --version 2>&1 >/dev/null) && err=""
  fi
  if [[ -n $err ]]; then
    DINV_ENV_ERROR="bin/dinv does not start: $(head -c 600 <<<"$err")"
    grep -q "GLIBC_" <<<"$err" && DINV_ENV_ERROR+=" (this image's glibc is older than the build machine's: $(cat "$DINV_BUNDLE/BUNDLE.txt" 2>/dev/null | grep '^needs'))"
  fi
fi
unset err
