#!/usr/bin/env bash
# The pipeline end to end on one GPU node that has JAX but no TensorFlow (issue 18: the group level on JAX on a
# GPU; issue 14: the hard benchmark at the default training budget), from a source checkout, as one prepared
# script: the lent GPU machine gives a session 15 minutes and 10 per command.
#
# Prepare where pip can download (the wheels the node lacks, about 19 MiB):
#     python benchmarks/device_wheels.py .whl          # and list .whl in .git/info/exclude
# Run there from the repository root (device tool: carry [".whl"]), with a time limit per command:
#     bash benchmarks/device_group.sh demo             # make demo's data, participant + group level (demo.toml)
#     bash benchmarks/device_group.sh hard SEED        # the hard benchmark, the default configuration and budget:
#                                                      # its 8 folds at once (one process each, one GPU), no final model
# EXTRA_TOML=FILE appends settings to the hard benchmark's configuration (without a [cv] table).
# Writes to $OUT (or ./device-out): summary.txt (wall times, the folds' compute records, metrics), metrics.json,
# the group log, and gpu.csv (nvidia-smi's utilisation every second while the group level trains).
set -euo pipefail
MODE=${1:?demo or hard}
SEED=${2:-42}
OUT=${OUT:-$PWD/device-out}
mkdir -p "$OUT"
WORK=${WORK:-/tmp/neurocare-device}
rm -rf "$WORK" && mkdir -p "$WORK"

if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$WORK/site" .whl/*.whl
fi
export PYTHONPATH="$PWD:$WORK/site" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
# Several training processes share the GPU: each takes memory as it needs it, not 75 % up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
NB=(python3 -m neurocare_bids)
CPUS=$(nproc)
summary="$OUT/summary.txt"
{
    echo "device_group.sh $MODE seed $SEED, $(date -u +%FT%TZ), $CPUS CPUs"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    python3 -c "import jax, keras, numpy; print('jax', jax.__version__, jax.devices(), 'keras', keras.__version__, 'numpy', numpy.__version__)"
    python3 -c "import importlib.util as u; print('tensorflow installed:', u.find_spec('tensorflow') is not None)"
} | tee "$summary"

step() {  # step NAME COMMAND...: run, time, log
    local name=$1; shift
    local start=$SECONDS
    "$@" > "$OUT/$name.log" 2>&1 || { echo "$name FAILED (exit $?) after $((SECONDS - start)) s" | tee -a "$summary"; tail -30 "$OUT/$name.log"; exit 1; }
    echo "$name: $((SECONDS - start)) s" | tee -a "$summary"
}

gpu_watch() {  # utilisation of the GPU's cores and memory, every second, until killed
    nvidia-smi --query-gpu=timestamp,utilization.gpu,utilization.memory,memory.used --format=csv,noheader,nounits \
        -l 1 > "$OUT/gpu.csv" 2>/dev/null &
    echo $!
}

bids="$WORK/bids"
deriv="$WORK/derivatives"
case $MODE in
demo)
    step demo-data "${NB[@]}" demo-data "$bids"
    step participant "${NB[@]}" "$bids" "$deriv" participant --nprocs "$CPUS" --skip-bids-validation
    watcher=$(gpu_watch)
    step group "${NB[@]}" "$bids" "$deriv" group --config examples/demo.toml --skip-bids-validation -v
    kill "$watcher" 2>/dev/null || true
    ;;
hard)
    step demo-data "${NB[@]}" demo-data "$bids" --difficulty hard
    step participant "${NB[@]}" "$bids" "$deriv" participant --nprocs "$CPUS" --skip-bids-validation
    printf '[cv]\nfinal_model = false\n' > "$WORK/hard.toml"
    if [ -n "${EXTRA_TOML:-}" ]; then cat "$EXTRA_TOML" >> "$WORK/hard.toml"; fi  # e.g. a short budget, to rehearse
    watcher=$(gpu_watch)
    start=$SECONDS
    pids=()
    # Eight jobs share the node's cores, as eight array tasks would have their own: OpenMP (the gradient boosting)
    # busy-waits when its threads outnumber the cores, so each job gets its share.
    share=$(( CPUS / 8 > 0 ? CPUS / 8 : 1 ))
    for fold in 1 2 3 4 5 6 7 8; do  # separate jobs, as a Slurm array would run them
        OMP_NUM_THREADS=$share "${NB[@]}" "$bids" "$deriv" group --config "$WORK/hard.toml" --seed "$SEED" \
            --fold "$fold" --skip-bids-validation > "$OUT/fold-$fold.log" 2>&1 &
        pids+=($!)
    done
    failed=0
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    echo "8 folds at once: $((SECONDS - start)) s (failed: $failed)" | tee -a "$summary"
    kill "$watcher" 2>/dev/null || true
    [ "$failed" = 0 ] || { tail -30 "$OUT"/fold-*.log; exit 1; }
    step aggregate "${NB[@]}" "$bids" "$deriv" group --config "$WORK/hard.toml" --seed "$SEED" --skip-bids-validation
    ;;
*)
    echo "unknown mode $MODE (demo or hard)" >&2; exit 64 ;;
esac

cp "$deriv/group/metrics.json" "$OUT/"
python3 - "$deriv/group" "$OUT/gpu.csv" <<'EOF' | tee -a "$summary"
import json, sys
from pathlib import Path
group, gpu = Path(sys.argv[1]), Path(sys.argv[2])
for fold in sorted(group.glob("fold-*/fold.json"), key=lambda p: int(p.parent.name[5:])):
    c = json.loads(fold.read_text())["compute"]
    print(f"{fold.parent.name}: {c['backend']} {c.get('input_pipeline')}, fit {c['fit_seconds']:.0f} s, "
          f"{c.get('epochs')} epochs of {c.get('batches_per_epoch')} x {c.get('batch_size')}, "
          f"training {c.get('training_windows_per_second')} windows/s, validation {c.get('validation_seconds')} s, "
          f"peak RSS {c['peak_rss_mib']:.0f} MiB")
m = json.loads((group / "metrics.json").read_text())
e, w = m["event"], m["window"]
print(f"event F1 {e['f1']:.3f}, sensitivity {e['sensitivity']:.3f}, FP/24 h {e['fp_per_24h']:.1f}, "
      f"latency median {e.get('latency_median_s')}; window PR-AUC {w['pr_auc']:.3f}, ROC-AUC {w['roc_auc']:.3f}")
rows = [line.split(", ") for line in gpu.read_text().splitlines() if line.count(",") == 3] if gpu.exists() else []
busy = [float(r[1]) for r in rows if r[1].strip().replace(".", "").isdigit()]
if busy:
    print(f"GPU utilisation while training: mean {sum(busy) / len(busy):.0f} %, {len(busy)} s sampled, "
          f"max memory used {max(float(r[3]) for r in rows):.0f} MiB")
EOF
