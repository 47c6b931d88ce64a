#!/usr/bin/env bash
# The GPU check of the trainer (issue 4, item 6): train_lora against transformers' Trainer on one
# GPU, bf16, on random-weight models with SmolLM2-135M's and SmolLM2-1.7B's shapes (real weights
# do not travel to a GPU box without network; throughput depends on shapes, not values).
#   bash bench/gpu_train_check.sh MODEL_SRC GSM8K_JSONL OUT_DIR
# MODEL_SRC: a folder with SmolLM2's config.json and tokenizer files.
set -uo pipefail
SRC=$1 GSM8K=$2 OUT=$3
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', \
transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"
$PY bench/random_model.py "$SRC" /tmp/m135
$PY bench/random_model.py "$SRC" /tmp/m1700 --hidden 2048 --intermediate 8192 --layers 24 \
    --heads 32 --kv-heads 32
# transformers before train_sampling_strategy: no grouped baseline
RUNNERS=ours,trainer,trainer-grouped
$PY -c "import transformers as t, sys; sys.exit('train_sampling_strategy' not in \
t.TrainingArguments.__dataclass_fields__)" || RUNNERS=ours,trainer
run() {  # name model steps batch
    $PY bench/train_throughput.py --device cuda --model-path "$2" --gsm8k "$GSM8K" \
        --skip-promotion --steps "$3" --batch-size "$4" --warmup-steps 2 --repeats 2 --runners "$RUNNERS" \
        --out "$OUT/train_$1.json" 2>&1 | grep -v -i "warn" | tail -8
}
run 135m /tmp/m135 32 16
run 1700m /tmp/m1700 32 8
