#!/usr/bin/env bash
# Submit the whole method as a chain of Slurm jobs, each after the one before
# (afterok), the sweep's job array last:
#   embed -> generate -> the sweep            (the default chain)
#   --stages=pretrain,embed,generate,retrieve  any stages before the sweep, in order
# usage: slurm/submit.sh CONFIG [--stages=LIST] [--section.key=value ...] [sbatch options ...] [--dry-run]
#
# --stages names the stages run before the sweep, in the order given, from
# pretrain, embed, retrieve and generate (retrieve: the retrieval baseline's
# samples, written to the same store, so it never runs beside generate).
# sbatch options come from the configuration: [slurm] for every job, and
# [slurm.<stage>] (e.g. [slurm.embed], [slurm.sweep]) for one stage (a stage's
# key wins; "none" unsets a [slurm] key there); `dinv slurm STAGE` prints them.
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
usage="usage: submit.sh CONFIG [--stages=LIST] [--section.key=value ...] [sbatch options] [--dry-run]"
config="${1:?$usage}"
shift
sbatch_opts=()
overrides=()
dry=0
stages=embed,generate
for a in "$@"; do
  if [[ $a == --dry-run ]]; then
    dry=1
  elif [[ $a == --stages=* ]]; then
    stages=${a#--stages=}
  elif [[ $a =~ ^--[a-z_]+\.[a-z_.]+= ]]; then
    overrides+=("$a")
  else
    sbatch_opts+=("$a")
  fi
done
[[ -r "$config" ]] || { echo "submit.sh: cannot read config '$config'" >&2; exit 2; }
IFS=, read -r -a chain <<<"$stages"
((${#chain[@]})) || { echo "submit.sh: --stages is empty ($usage)" >&2; exit 2; }
for stage in "${chain[@]}"; do
  case $stage in
    pretrain | embed | retrieve | generate) ;;
    *) echo "submit.sh: --stages: '$stage' is not a stage run before the sweep (pretrain, embed, retrieve, generate)" >&2; exit 2 ;;
  esac
done
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

# The first stage is held until the whole chain is queued: a stage that
# failed at once would otherwise end before its dependents exist, and they
# would never learn of it. A chain that cannot be completed is cancelled.
ids=()
names=()
cancel_chain() { ((dry)) || ((${#ids[@]} == 0)) || scancel "${ids[@]}" 2>/dev/null || true; }
for stage in "${chain[@]}"; do
  if ((${#ids[@]} == 0)); then
    id=$(submit "$stage" "" --hold) || { echo "submit.sh: submitting $stage failed" >&2; exit 1; }
  else
    id=$(submit "$stage" "${ids[-1]}") || {
      cancel_chain
      echo "submit.sh: submitting $stage failed; cancelled ${names[*]} (jobs ${ids[*]})" >&2
      exit 1
    }
  fi
  ids+=("$id")
  names+=("$stage $id")
done
last=${ids[-1]}
# The sweep writes its frozen configuration and array script into
# train.results_dir and submits the array after the last stage (dinv records
# the job id for `dinv sweep --status`); raw sbatch options are passed on to
# it. (sweep.template's default, slurm/sweep.sbatch.in, is found beside build/dinv.)
sweep_args=(sweep --config "$config" "${overrides[@]}" --sweep.mode=slurm)
if ((${#sbatch_opts[@]})); then
  sweep_args+=(--sweep.sbatch_args="$(printf '%q ' "${sbatch_opts[@]}")")
fi
if ((dry)); then
  echo "$DINV ${sweep_args[*]} --sweep.after=$last" >&2
  "$DINV" "${sweep_args[@]}"
  sweep=DRYsweep
else
  out=$("$DINV" "${sweep_args[@]}" --sweep.submit --sweep.after="$last") || {
    echo "$out" >&2
    echo "submit.sh: submitting the sweep failed; cancelling ${names[*]}" >&2
    cancel_chain
    exit 1
  }
  # One job per array (a sweep over Slurm's MaxArraySize is several).
  sweep=$(sed -n 's/^submitted sweep .* as job \([0-9][0-9]*\).*/\1/p' <<<"$out" | paste -sd, -)
  scontrol release "${ids[0]}"
fi
submitted=$(printf '%s, ' "${names[@]}")
echo "submitted: ${submitted}sweep $sweep"
