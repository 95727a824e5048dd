#!/usr/bin/env bash
# A prepared GPU check of issues 15 and 18, for a machine with one or more NVIDIA GPUs; under 10 minutes on one H200.
#
#   bash bench/gpu_check.sh                      # from the repository root
#   PY=python OUT=/some/folder bash bench/gpu_check.sh
#
# Steps (each a fresh process, each under `timeout`, each writing to a temporary --out folder):
#   1 GPU:   train_lightning.py --gpus 1 and train_keras.py --gpus 1, each with --precision 32 and 16-mixed,
#            and with --compile true (torch.compile / XLA);
#            python -m bench.speed --gpus 1 --compile (every way, the hand-written loop included, on the GPU, each
#            a fresh process, the compiled ways too), 1 round of 2 epochs on TRAIN_IMAGES images
#   2 GPUs (only when `nvidia-smi -L` lists at least 2): train_lightning.py --gpus 2 (DDP over NCCL),
#            train_lightning.py --gpus 2 --sync-batchnorm true --model cnn --batch-norm true,
#            train_keras.py --gpus 2 (MirroredStrategy)
#   the lab: run_lab.py --gpus N (N: every GPU listed) with the tiny preset, section 1 on digits, both backends:
#            each run in a process of its own on one GPU (CUDA_VISIBLE_DEVICES), the search over N workers
# Data: Fashion-MNIST when /usr/share/datasets/fashion-mnist (or DATA_DIR) holds it, else the bundled digits,
# which need no files; DATASET=... and DATA_DIR=... choose. EPOCHS (default 3) sets the training runs' epochs,
# TRAIN_IMAGES their training images (default: 20,000 of Fashion-MNIST, all of digits).
# Prints a summary (per step: ok/failed, seconds, test accuracy, images/s, compile time and the per-step profile
# from the run's results.json)
# and writes it to $OUT/gpu_check.txt when OUT is set, with every step's log under $OUT/gpu_check-logs/.
# Exit code: 0 when every step passed, 1 otherwise. Without a GPU every step fails at once with the lab's own
# one sentence ("--gpus 1 asks for 1 GPU(s) but this machine has no usable GPU ...", exit code 2).
set -euo pipefail

PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-3}
BUDGET_S=${BUDGET_S:-360}   # steps not started by then are skipped, so the check stays under 10 minutes
if [[ ! -f train_lightning.py || ! -d bench ]]; then
    echo "gpu_check.sh: run it from the repository root (where train_lightning.py is)." >&2
    exit 2
fi
if [[ -z ${DATASET:-} ]]; then
    if [[ -n ${DATA_DIR:-} || -d /usr/share/datasets/fashion-mnist ]]; then DATASET=fashion_mnist; else DATASET=digits; fi
fi
DATA=(--dataset "$DATASET")
[[ -n ${DATA_DIR:-} ]] && DATA+=(--data-dir "$DATA_DIR")
# the training runs' images per epoch: Fashion-MNIST's 54,000 cut to 20,000 to keep within the 10 minutes
[[ $DATASET != digits ]] && TRAIN_IMAGES=${TRAIN_IMAGES:-20000}

GPUS=$( { nvidia-smi -L 2>/dev/null || true; } | grep -c '^GPU' || true)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-XXXXXX")  # the runs' --out folders
trap 'rm -rf "$WORK"' EXIT
LOGS=${OUT:+$OUT/gpu_check-logs}
[[ -z $LOGS ]] && LOGS=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-logs-XXXXXX")  # kept; $WORK is removed at the end
mkdir -p "$LOGS"
START=$SECONDS
SUMMARY=()
FAILED=0

echo "== GPU check: $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $GPUS GPU(s)"
{ nvidia-smi -L 2>/dev/null || echo "(no nvidia-smi or no GPU)"; } | sed 's/^/   /'
"$PY" -c 'import torch, tensorflow as tf; print("   torch", torch.__version__, "cuda", torch.cuda.is_available(),
"devices", torch.cuda.device_count(), "| tensorflow", tf.__version__, "GPUs", len(tf.config.list_physical_devices("GPU")))' \
    2>/dev/null || echo "   (could not import torch and tensorflow with $PY)"
echo "   dataset $DATASET${TRAIN_IMAGES:+ ($TRAIN_IMAGES training images)}, $EPOCHS epochs per training run, logs in $LOGS"

# The run's figures from the one results.json under a step's --out folder.
figures() {
    "$PY" - "$1" <<'EOF' 2>/dev/null || echo "no results.json"
import json, sys
from pathlib import Path
found = sorted(Path(sys.argv[1]).rglob("results.json"))
if not found:
    print("no results.json")
    sys.exit()
r = json.loads(found[0].read_text())
t, ips = r["timing"], r["timing"].get("images_per_s")
precision = r["hyperparameters"].get("precision", "?")
p = r.get("profile")
compiled = f", compiled (first epoch +{t['compile_s']:.1f} s)" if t.get("compile_s") is not None else ""
profile = (f", step {p['step_ms']:.2f} ms = compute {p['compute_ms']:.2f} + data {p['data_ms']:.2f} + loop "
           f"{p['overhead_ms']:.2f}" if p else "")
print(f"test {r['test']['accuracy']:.2%}, {ips:,.0f} images/s, steady epoch {t['steady_epoch_s']:.2f} s, "
      f"{r.get('device', '?')}, precision {precision}{compiled}{profile}"
      + ("" if len(found) == 1 else f", {len(found)} results.json!"))
EOF
}

# step NAME LIMIT_S COMMAND...: runs COMMAND under `timeout`, with --out added for training scripts.
step() {
    local name=$1 limit=$2
    shift 2
    local out="$WORK/$name" log="$LOGS/$name.log" rc=0 begun=$SECONDS
    echo
    echo "== $name: $*"
    if (( SECONDS - START > BUDGET_S )); then
        echo "   skipped: the check's budget of ${BUDGET_S} s is spent"
        SUMMARY+=("$(printf '%-30s skipped (budget)' "$name")")
        FAILED=1
        return
    fi
    local cmd=("$@")
    [[ ${cmd[1]} == train_*.py ]] && cmd+=(--out "$out")
    # timeout signals the whole process group, so DDP's other ranks go with it
    if timeout -k 15 "$limit" "${cmd[@]}" >"$log" 2>&1; then rc=0; else rc=$?; fi
    local took=$((SECONDS - begun)) result
    tail -n 4 "$log" | sed 's/^/   /'
    if (( rc == 0 )); then
        if [[ ${cmd[1]} == train_*.py ]]; then
            result=$(figures "$out")
        else  # bench.speed: its ratio lines
            result=$(grep -E ' / ' "$log" | sed 's/^ *//; s/  */ /g' | paste -sd ';' - | sed 's/;/; /g' || true)
        fi
        SUMMARY+=("$(printf '%-30s ok      %4d s  %s' "$name" "$took" "$result")")
    else
        FAILED=1
        (( rc == 124 || rc == 137 )) && result="timed out after ${limit} s" \
            || result="exit $rc: $(grep -v '^\s*$' "$log" | tail -n 1 | cut -c1-160)"
        SUMMARY+=("$(printf '%-30s FAILED  %4d s  %s' "$name" "$took" "$result")")
    fi
}

TRAIN=(--epochs "$EPOCHS" "${DATA[@]}" ${TRAIN_IMAGES:+--train-images "$TRAIN_IMAGES"})
step lightning-gpu1-fp32 120 "$PY" train_lightning.py --gpus 1 --precision 32 "${TRAIN[@]}"
step lightning-gpu1-16mixed 120 "$PY" train_lightning.py --gpus 1 --precision 16-mixed "${TRAIN[@]}"
step keras-gpu1-fp32 120 "$PY" train_keras.py --gpus 1 --precision 32 "${TRAIN[@]}"
step keras-gpu1-16mixed 120 "$PY" train_keras.py --gpus 1 --precision 16-mixed "${TRAIN[@]}"
step lightning-gpu1-compile 180 "$PY" train_lightning.py --gpus 1 --compile true "${TRAIN[@]}"
step keras-gpu1-compile 150 "$PY" train_keras.py --gpus 1 --compile true "${TRAIN[@]}"
step speed-gpu1-compile 240 "$PY" -m bench.speed --gpus 1 --compile --rounds 1 --epochs 2 "${DATA[@]}" \
    ${TRAIN_IMAGES:+--train-images "$TRAIN_IMAGES"}
if (( GPUS >= 2 )); then
    step lightning-gpu2-ddp 150 "$PY" train_lightning.py --gpus 2 "${TRAIN[@]}"
    step lightning-gpu2-syncbn 150 "$PY" train_lightning.py --gpus 2 --sync-batchnorm true --model cnn \
        --batch-norm true "${TRAIN[@]}"
    step keras-gpu2-mirrored 150 "$PY" train_keras.py --gpus 2 "${TRAIN[@]}"
else
    SUMMARY+=("$(printf '%-30s skipped (%d GPU(s); the 2-GPU steps need 2)' "gpu2 steps" "$GPUS")")
fi
if (( GPUS >= 1 )); then
    step "lab-gpus$GPUS" 300 "$PY" run_lab.py --preset tiny --mnist-dataset digits --sections 1 --gpus "$GPUS" \
        --out "$WORK/lab-gpus$GPUS"
fi

REPORT="$WORK/gpu_check.txt"
{
    echo "GPU check $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $GPUS GPU(s):"
    { nvidia-smi -L 2>/dev/null || echo "no GPU listed by nvidia-smi"; } | sed 's/^/  /'
    echo "dataset $DATASET${TRAIN_IMAGES:+ ($TRAIN_IMAGES training images)}, $EPOCHS epochs per training run; total $((SECONDS - START)) s"
    printf '  %s\n' "${SUMMARY[@]}"
} >"$REPORT"
echo
cat "$REPORT"
if [[ -n ${OUT:-} ]]; then
    mkdir -p "$OUT"
    cp "$REPORT" "$OUT/gpu_check.txt"
fi
exit "$FAILED"
