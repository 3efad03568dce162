#!/bin/bash
# Submit the whole NeuroCare-BIDS pipeline to Slurm from a login node:
#   1. validate the dataset once, here (the array tasks then skip validation);
#   2. participant level: one array task per subject (participant.sbatch);
#   3. group level: one GPU array task per fold (group_fold.sbatch), after every participant task succeeded;
#   4. aggregation and final model (group_aggregate.sbatch), after every fold succeeded.
# Usage:
#   SIF=neurocare-bids-0.1.0.sif BIDS_DIR=/data/bids OUT_DIR=/scratch/$USER/neurocare [CONFIG=my.toml] \
#       examples/hpc/submit.sh [extra sbatch options, e.g. --account=myproject --partition=gpu]
# SCRATCH_DIR (default: the job's $TMPDIR, else /tmp) holds each task's work folder on node-local disk.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
: "${SIF:?set SIF to the neurocare-bids .sif image}" "${BIDS_DIR:?set BIDS_DIR}" "${OUT_DIR:?set OUT_DIR}"
mkdir -p "$OUT_DIR"
SIF=$(realpath "$SIF")
BIDS_DIR=$(realpath "$BIDS_DIR")
OUT_DIR=$(realpath "$OUT_DIR")
CONFIG_ARGS=()
if [ -n "${CONFIG:-}" ]; then
    CONFIG=$(realpath "$CONFIG")
    CONFIG_ARGS=(--bind "$CONFIG:/data/config.toml:ro")
fi
export SIF BIDS_DIR OUT_DIR CONFIG SCRATCH_DIR

N_SUBJECTS=$(find "$BIDS_DIR" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' | wc -l)
[ "$N_SUBJECTS" -gt 0 ] || { echo "no sub-* folder in $BIDS_DIR" >&2; exit 66; }

# The number of folds: cv.folds of the effective configuration, at most one per subject.
NEUROCARE_ARGS=(--print-config)
if [ -n "${CONFIG:-}" ]; then NEUROCARE_ARGS+=(--config /data/config.toml); fi
FOLDS=$(apptainer run --cleanenv --bind "$BIDS_DIR:/data/bids:ro" "${CONFIG_ARGS[@]}" \
            "$SIF" /data/bids /data/out group "${NEUROCARE_ARGS[@]}" | sed -n '/^\[cv\]/,/^\[/s/^folds = //p')
case "$FOLDS" in
    '' | *[!0-9]*) echo "could not read cv.folds from the configuration (got '$FOLDS')" >&2; exit 64 ;;
esac
N_FOLDS=$(( FOLDS < N_SUBJECTS ? FOLDS : N_SUBJECTS ))

echo "validating $BIDS_DIR"
apptainer exec --cleanenv --bind "$BIDS_DIR:/data/bids:ro" "$SIF" bids-validator-deno /data/bids

jobid() { cut -d';' -f1; }  # sbatch --parsable prints "id" or "id;cluster"
P=$(sbatch --parsable "$@" --array="1-$N_SUBJECTS" "$HERE/participant.sbatch" | jobid)
F=$(sbatch --parsable "$@" --array="1-$N_FOLDS" --dependency="afterok:$P" "$HERE/group_fold.sbatch" | jobid)
A=$(sbatch --parsable "$@" --dependency="afterok:$F" "$HERE/group_aggregate.sbatch" | jobid)
echo "participant array $P ($N_SUBJECTS subjects) -> fold array $F ($N_FOLDS folds) -> aggregation $A"
echo "outputs: $OUT_DIR; follow with: squeue -u \$USER"
