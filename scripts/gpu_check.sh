#!/usr/bin/env bash
# GPU checks for a machine with one CUDA GPU and no network: the GPU-marked tests, the speed run beside
# the peer recipe (10 seeds), the benchmark of both training paths, the default MLP and CNN for 2 epochs
# (the CNN also compiled), the mlp_best and cnn_best presets (seed 1), and start-up's slowest imports,
# printing their figures. Skips cleanly without a GPU.
#
#   bash scripts/gpu_check.sh [WHEEL_DIR]
#
# Needs torch (2.11 or newer) and lightning already installed. What else is missing (hydra-core,
# omegaconf, antlr4-python3-runtime; torchmetrics, tensorboard if absent) is installed from
# WHEEL_DIR (default .whl/) into a private folder, without network. MNIST must be in data/MNIST/raw
# (the four files, plain or .gz); the script does not download it.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"

if ! $PY -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    echo "gpu_check: no CUDA GPU visible to torch here; nothing to check."
    exit 0
fi
if ! $PY -c 'import hydra, omegaconf, torchmetrics, tensorboard' 2>/dev/null; then
    WHEELS=${1:-.whl}
    echo "gpu_check: installing the missing packages from $WHEELS (no network)"
    $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/mnist-lit-site "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=/tmp/mnist-lit-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
$PY -c 'import torch, lightning; print(f"torch {torch.__version__}, lightning {lightning.__version__}, {torch.cuda.get_device_name(0)}")'

status=0
step() { echo; echo "== $1"; shift; "$@" || { echo "gpu_check: FAILED: $*"; status=1; }; }

step "GPU tests" $PY -m pytest -m gpu -q -p no:cacheprovider tests/test_train.py
step "speed run beside the peer recipe, 10 seeds" $PY -m benchmarks.speedrun --seeds 10 --output "$OUT/speedrun.json"
step "benchmark (both training paths vs plain loop, on the GPU)" \
    $PY -m benchmarks.bench --models mlp mlp-fast cnn cnn-fast --rounds 2 --epochs 3 --output "$OUT/bench.json"
step "default MLP, 2 epochs" $PY train.py trainer=gpu trainer.max_epochs=2 "hydra.run.dir=$OUT/mlp"
step "default CNN, 2 epochs" $PY train.py model=cnn trainer=gpu trainer.max_epochs=2 "hydra.run.dir=$OUT/cnn"
step "default CNN, 2 epochs, torch.compile" \
    $PY train.py model=cnn model.compile=true trainer=gpu trainer.max_epochs=2 "hydra.run.dir=$OUT/cnn-compiled"
step "experiment=mlp_best, seed 1" $PY train.py experiment=mlp_best seed=1 trainer=gpu "hydra.run.dir=$OUT/mlp_best"
step "experiment=cnn_best, seed 1" $PY train.py experiment=cnn_best seed=1 trainer=gpu "hydra.run.dir=$OUT/cnn_best"
step "start-up: the slowest imports of train.py" sh -c \
    "$PY -X importtime -c 'import train' 2> '$OUT/importtime.txt'; sort -t'|' -k2 -n -r '$OUT/importtime.txt' | head -15"

echo; echo "== figures"
for run in mlp cnn cnn-compiled mlp_best cnn_best; do
    [ -f "$OUT/$run/metrics.json" ] && $PY - "$OUT/$run/metrics.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
epochs = ", ".join("%.2f" % r["seconds"] for r in m["history"])
print(f"{sys.argv[1]}: test/acc {m['test/acc']:.4f}, epochs {m['epochs']}, fit {m['fit_seconds']:.1f} s "
      f"(epoch seconds: {epochs}), start-up {m['startup_seconds']} s")
PY
done
exit $status
