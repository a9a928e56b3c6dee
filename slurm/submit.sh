#!/usr/bin/env bash
# Submit the whole method as a chain of Slurm jobs:
#   embed -> generate (afterok) -> the sweep's job array (afterok)
# usage: slurm/submit.sh CONFIG [--section.key=value ...] [sbatch options ...] [--dry-run]
#
# sbatch options come from the configuration: [slurm] for every job, and
# [slurm.embed], [slurm.generate], [slurm.sweep] for one stage (a stage's key
# wins; "none" unsets a [slurm] key there); `dinv slurm STAGE` prints them.
# --section.key=value arguments override the configuration of every stage
# (e.g. --slurm.partition=gpu --slurm.sweep.time=00:30:00 --embed.steps=50);
# other arguments are passed to every sbatch as they are (e.g. --ntasks 2) and
# win over the configuration. The sweep is CONFIG's [sweep] grid (one point,
# a single training run named sweep.name, when it has no axes).
#
# Every job resumes if requeued. A stage that fails says so in its output
# file (dinv-<stage>-<jobid>.out) and the jobs after it are cancelled
# (--kill-on-invalid-dep=yes). `dinv sweep --config CONFIG --status` shows the
# sweep's points, `--resubmit` runs its failed and missing ones again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
config="${1:?usage: submit.sh CONFIG [--section.key=value ...] [sbatch options] [--dry-run]}"
shift
sbatch_opts=()
overrides=()
dry=0
for a in "$@"; do
  if [[ $a == --dry-run ]]; then
    dry=1
  elif [[ $a =~ ^--[a-z_]+\.[a-z_.]+= ]]; then
    overrides+=("$a")
  else
    sbatch_opts+=("$a")
  fi
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
config="$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"

options() {  # options STAGE: the stage's sbatch options from the configuration, one per line
  "$DINV" slurm "$1" --config "$config" "${overrides[@]}" --run.log_level=warn
}

submit() {  # submit STAGE [dependency] [more sbatch options]
  local stage=$1 dep=${2:-} opts
  opts=$(options "$stage") || { echo "submit.sh: dinv slurm $stage failed" >&2; return 2; }
  local args=(--parsable --job-name="dinv-$stage")
  [[ -n $opts ]] && mapfile -t -O ${#args[@]} args <<<"$opts"
  args+=("${sbatch_opts[@]}")
  [[ -n $dep ]] && args+=(--dependency="afterok:$dep" --kill-on-invalid-dep=yes)
  args+=("${@:3}")
  if ((dry)); then
    echo "sbatch ${args[*]} $here/stage.sbatch $stage $config ${overrides[*]}" >&2
    echo "DRY$stage"
  else
    sbatch "${args[@]}" "$here/stage.sbatch" "$stage" "$config" "${overrides[@]}"
  fi
}

# embed is held until the whole chain is queued: a stage that failed at once
# would otherwise end before its dependents exist, and they would never learn
# of it. A chain that cannot be completed is cancelled.
embed=$(submit embed "" --hold)
cancel_chain() { ((dry)) || scancel "$@" 2>/dev/null || true; }
generate=$(submit generate "$embed") || { cancel_chain "$embed"; echo "submit.sh: submitting generate failed; cancelled embed $embed" >&2; exit 1; }
# The sweep writes its frozen configuration and array script into
# train.results_dir and submits the array after generate (dinv records the job
# id for `dinv sweep --status`); raw sbatch options are passed on to it.
# (sweep.template's default, slurm/sweep.sbatch.in, is found beside build/dinv.)
sweep_args=(sweep --config "$config" "${overrides[@]}" --sweep.mode=slurm)
if ((${#sbatch_opts[@]})); then
  sweep_args+=(--sweep.sbatch_args="$(printf '%q ' "${sbatch_opts[@]}")")
fi
if ((dry)); then
  echo "$DINV ${sweep_args[*]} --sweep.after=$generate" >&2
  "$DINV" "${sweep_args[@]}"
  sweep=DRYsweep
else
  out=$("$DINV" "${sweep_args[@]}" --sweep.submit --sweep.after="$generate") || {
    echo "$out" >&2
    echo "submit.sh: submitting the sweep failed; cancelling embed $embed and generate $generate" >&2
    cancel_chain "$embed" "$generate"
    exit 1
  }
  sweep=$(sed -n 's/^submitted sweep .* as job \([0-9][0-9]*\).*/\1/p' <<<"$out" | tail -n1)
  scontrol release "$embed"
fi
echo "submitted: embed $embed, generate $generate, sweep $sweep"
