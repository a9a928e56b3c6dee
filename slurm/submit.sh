#!/usr/bin/env bash
# Submit the whole method as a chain of Slurm jobs:
#   embed -> generate (afterok) -> train (afterok)
# usage: slurm/submit.sh CONFIG [--nodes N] [--ntasks-per-node K] [--time T] [--partition P] [--dry-run]
# Every stage resumes if requeued; the jobs share CONFIG (store.path etc.).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="${1:?usage: submit.sh CONFIG [sbatch options] [--dry-run]}"
shift
sbatch_opts=()
dry=0
for a in "$@"; do
  if [[ $a == --dry-run ]]; then dry=1; else sbatch_opts+=("$a"); fi
done
[[ -r "$config" ]] || { echo "submit.sh: cannot read config '$config'" >&2; exit 2; }
# The dinv to run: $DINV, else the one installed with this script
# (<prefix>/share/dinv/slurm -> <prefix>/bin/dinv), else the repository's build,
# else dinv on PATH (a loaded module).
find_dinv() {
  local c
  for c in "$here/../../../bin/dinv" "$here/../build/dinv"; do
    [[ -x $c ]] && { (cd "$(dirname "$c")" && echo "$PWD/dinv"); return; }
  done
  command -v dinv || { echo "submit.sh: no dinv found: set DINV, load the dinv module or build it" >&2; exit 2; }
}
[[ -n ${DINV:-} ]] || DINV=$(find_dinv)
export DINV
echo "dinv: $DINV" >&2

submit() {  # submit STAGE [dependency]
  local stage=$1 dep=${2:-}
  local args=(--parsable --job-name="dinv-$stage" "${sbatch_opts[@]}")
  [[ -n $dep ]] && args+=(--dependency="afterok:$dep" --kill-on-invalid-dep=yes)
  if ((dry)); then
    echo "sbatch ${args[*]} $here/stage.sbatch $stage $config" >&2
    echo "DRY$stage"
  else
    sbatch "${args[@]}" "$here/stage.sbatch" "$stage" "$config"
  fi
}

embed=$(submit embed)
generate=$(submit generate "$embed")
train=$(submit train "$generate")
echo "submitted: embed $embed, generate $generate, train $train"
