#!/usr/bin/env bash
# The initialisation comparison that needs full fine-tuning (see README.md "Initialisations"),
# sized for one short GPU session: grouped 5-fold CV of B0 from Lite0's weights, Lite0 and B0
# from scratch, all layers trained; a final model on every family for the first two (B0 from
# scratch gets CV only), and the leaky random split for B0-from-Lite0. The chains run side by
# side on one GPU: at batch 32 each is bound by kernel launches, not by the GPU's arithmetic.
#
# Usage (from training/): ./run_gpu_experiments.sh PREPARED_DIR [PYTHON]   (mammo-eval prepare --out PREPARED_DIR)
# Environment: DEVICE (default cuda), EPOCHS (default 10), PATIENCE (default 3), THREADS (default 4).
# Logs and results in runs/; run `python -m mammo_train.report runs/NAME` on the results.
# On a machine lent for a fixed time, copy each runs/*-final/model.pt away as soon as it
# appears: in the first run the CVs used the whole budget and the finals were lost with it.
set -euo pipefail
cd "$(dirname "$0")"
data=$1
py=${2:-../.venv-train/bin/python}
device=${DEVICE:-cuda}
epochs=${EPOCHS:-10}
patience=${PATIENCE:-3}
threads=${THREADS:-4}
mkdir -p runs

train() {
    local name=$1; shift
    $py -m mammo_train.train --data "$data" --split splits/split.csv --out "runs/$name" \
        --trainable all --device "$device" --threads "$threads" --patience "$patience" "$@" \
        > "runs/$name.log" 2>&1
}

# Epochs for a final model: the median best epoch of its CV folds.
median_best() {
    $py -c "import json,statistics;s=json.load(open('runs/$1/summary.json'));print(max(1,round(statistics.median(f['best_epoch'] for f in s['folds']))))"
}

# CV, then (unless told "cv-only") the final model.
chain() {
    local init=$1 lr=$2 final=${3:-final}
    train "$init-all" --init "$init" --lr "$lr" --fold all --epochs "$epochs"
    if [ "$final" = final ]; then
        train "$init-all-final" --init "$init" --lr "$lr" --fold none --epochs "$(median_best "$init-all")"
    fi
}

started=$(date +%s)
chain b0-lite0 3e-4 &
chain lite0 3e-4 &
chain b0-scratch 1e-3 cv-only &  # ~56 points behind on fold 0 (CPU): no final model
train b0-lite0-all-leaky --init b0-lite0 --lr 3e-4 --leaky --epochs "$epochs" &
wait
echo "GPU experiments done in $(( $(date +%s) - started )) s"
