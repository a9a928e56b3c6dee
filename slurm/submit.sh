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
export DINV="${DINV:-$(cd "$here/.." && pwd)/build/dinv}"

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
