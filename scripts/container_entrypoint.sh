#!/bin/sh
# Container entry point (Docker ENTRYPOINT, Singularity %runscript): prepares a writable home, then runs the
# BIDS-App CLI with the container's arguments.
#
# Why: the image runs as any user (`--user UID:GID`, Apptainer's calling user) on a read-only root file system,
# so the image's HOME may not exist or not be writable, and Matplotlib, Keras and other libraries want to
# write small configuration and cache files there. When HOME is not a writable folder, a private one is made
# under $TMPDIR (default /tmp: a tmpfs under podman --read-only, bound from the host under Apptainer). Nothing is
# ever written into the image. Thread counts default to the CPUs Slurm granted when running under Slurm.
set -eu

if [ -z "${HOME:-}" ] || [ ! -d "$HOME" ] || [ ! -w "$HOME" ]; then
    tmp="${TMPDIR:-/tmp}"
    if [ -d "$tmp" ] && [ -w "$tmp" ] && home=$(mktemp -d "$tmp/neurocare-home.XXXXXX"); then
        HOME="$home"
        export HOME
    elif [ "$#" -gt 0 ] && [ "$1" != "--version" ] && [ "$1" != "--help" ] && [ "$1" != "-h" ]; then
        echo "neurocare-bids (container): warning: neither HOME (${HOME:-unset}) nor $tmp is writable; with" \
             "'docker run --read-only' add '--tmpfs /tmp'" >&2
    fi
fi
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$HOME/.cache}"
export XDG_CONFIG_HOME="${XDG_CONFIG_HOME:-$HOME/.config}"
export MPLCONFIGDIR="${MPLCONFIGDIR:-$HOME/.config/matplotlib}"
export KERAS_HOME="${KERAS_HOME:-$HOME/.keras}"

# Under Slurm, size the BLAS/OpenMP thread pools to the task's CPUs unless the user chose.
if [ -n "${SLURM_CPUS_PER_TASK:-}" ]; then
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}"
    export OPENBLAS_NUM_THREADS="${OPENBLAS_NUM_THREADS:-$SLURM_CPUS_PER_TASK}"
    export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$SLURM_CPUS_PER_TASK}"
fi

exec /opt/neurocare/bin/neurocare-bids "$@"
