#!/usr/bin/env bash
# The GPU suite: CUDA checks and deploy records on one NVIDIA GPU, in about five minutes.
#
#   scripts/gpu_suite.sh OUT_DIR [MODEL_DIR] [DATA_DIR]
#
# MODEL_DIR: the embedded all-MiniLM-L6-v2 folder (default: the installed package's);
#            a float16 copy works (weights are read into float32).
# DATA_DIR:  a folder holding sst2/dev.tsv (default: the usual search path).
# Writes OUT_DIR/env.json, OUT_DIR/pytest.log and one deploy_*.json record per run:
# BERT-base (random weights, seq 128) at batch 1 and 128 in float32 and float16,
# and the embedded model on SST-2 dev.
set -euo pipefail
out=${1:?usage: scripts/gpu_suite.sh OUT_DIR [MODEL_DIR] [DATA_DIR]}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${2:-}" ]; then export BERTG4_EMBEDDED_DIR=$(realpath "$2"); fi
if [ -n "${3:-}" ]; then export BERTG4_DATA_DIR=$(realpath "$3"); fi
py=${PYTHON:-python3}
vocab=$($py -c 'import bertg4.checkpoint as c, os; print(os.path.join(c.embedded_dir(), "vocab.txt"))')

$py -m bertg4.cli env | tee "$out/env.json"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/nvidia-smi.csv"

# every test, the CUDA ones included (tests/test_gpu.py)
$py -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$out/pytest.log"

deploy() {  # name, then deploy arguments
  local name=$1; shift
  $py -m bertg4.cli deploy --device cuda --no-progress --output-dir "/tmp/bertg4_$name" \
      --json "$out/deploy_$name.json" "$@" 2>&1 | tail -n 8
}
for dtype in float32 float16; do
  for bs in 1 128; do
    deploy "bert-base_${dtype}_b${bs}" --model random:bert_12_768_12 --vocab "$vocab" \
      --task SST --dtype "$dtype" --batch-size "$bs" --seq-length 128 --max-iters 200 --warmup 20
  done
done
deploy minilm_float16_b128 --task SST --dtype float16 --batch-size 128 --max-iters 200 --warmup 20
