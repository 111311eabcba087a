#!/usr/bin/env bash
# The GPU suite: CUDA checks, the optimization-ladder benchmark and one deploy record on one
# NVIDIA GPU, in about six minutes.
#
#   scripts/gpu_suite.sh OUT_DIR [MODEL_DIR] [DATA_DIR]
#
# MODEL_DIR: the embedded all-MiniLM-L6-v2 folder (default: the installed package's);
#            a float16 copy works (weights are read into float32; the shipped SST-2 head applies).
# DATA_DIR:  a folder holding sst2/dev.tsv (default: the usual search path).
# Where bertg4 (and so the package holding the embedded checkpoint) is not installed,
# `python scripts/gpu_carry.py .gpu`, run where it is, writes MODEL_DIR in float16 (44 MiB) to
# carry beside the working tree: scripts/gpu_suite.sh OUT .gpu/minilm (data/sst2 travels as is).
# Writes to OUT_DIR: env.json, nvidia-smi.csv, pytest.log (the CUDA tests), records.jsonl,
# table.md and suite.log (`bertg4 bench --suite gpu`: every rung on BERT-base, seq 128,
# batch 1/8/32/128, beside transformers sdpa fp16 and torch.compile), deploy_all_b128.json
# (`bertg4 deploy --recipe all` on the embedded model over SST-2 dev), and traffic/ (records.jsonl,
# traffic.md, traffic.log: BERT-base fp16 on the 872 SST-2 dev sentences' lengths at batch 128,
# padding fixed vs longest vs packed, at the `all` rung and at `+graph_pass`).
#
# TRAFFIC_ROWS=N limits the real-traffic step to the first N sentences (a dry run); DEVICE=cpu
# runs only that step on the CPU (the rungs that need a GPU are then recorded as not applicable).
set -euo pipefail
out=${1:?usage: scripts/gpu_suite.sh OUT_DIR [MODEL_DIR] [DATA_DIR]}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${2:-}" ]; then export BERTG4_EMBEDDED_DIR=$(realpath "$2"); fi
if [ -n "${3:-}" ]; then export BERTG4_DATA_DIR=$(realpath "$3"); fi
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
vocab=$($py -c 'import bertg4.checkpoint as c, os; print(os.path.join(c.embedded_dir(), "vocab.txt"))')

# real traffic: whole passes over SST-2 dev's lengths (one warm-up pass, median of 5), BERT-base
# random weights, fp16 rungs, batch 128; padding fixed / longest / packed side by side
traffic() {
    $py -m bertg4.cli bench --model random:bert_12_768_12 --vocab "$vocab" --device "$device" \
        --task SST --traffic sst2-dev ${TRAFFIC_ROWS:+--max-rows "$TRAFFIC_ROWS"} \
        --padding fixed --padding longest --padding packed --recipe all --recipe +graph_pass \
        --batch-sizes 128 --repeats 5 --warmup 1 --fresh --output "$out/traffic" 2>&1 | tee "$out/traffic.log"
}
if [ "$device" = cpu ]; then traffic; exit 0; fi

$py -m bertg4.cli env | tee "$out/env.json"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/nvidia-smi.csv"

# the CUDA tests: fp32/fp16 parity, every rung, CUDA graphs == eager, true FP16 restored
$py -m pytest -q -p no:cacheprovider -o addopts="" tests/test_gpu.py 2>&1 | tee "$out/pytest.log" || true

# the ladder: every rung timed and checked against fp32, beside transformers in the same run
$py -m bertg4.cli bench --suite gpu --vocab "$vocab" --output "$out" 2>&1 | tee "$out/suite.log"

$py -m bertg4.cli deploy --device cuda --no-progress --recipe all --task SST --batch-size 128 \
    --max-iters 200 --warmup 20 --output-dir /tmp/bertg4_all --json "$out/deploy_all_b128.json" \
    2>&1 | tail -n 8

traffic
