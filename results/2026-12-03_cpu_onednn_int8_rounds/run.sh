#!/usr/bin/env bash
# onednn-int8 beside ONNX Runtime's dynamic INT8 (and PyTorch's int8) at fixed shapes, six rounds,
# each engine in a fresh process: the command of results/2026-11-29_cpu_onednn_int8_rounds, run again.
# From the repository root, in the environment where `bertg4` runs, on a quiet machine (about 8 minutes):
#   bash results/2026-12-03_cpu_onednn_int8_rounds/run.sh
set -eu
OUT=results/2026-12-03_cpu_onednn_int8_rounds
lscpu > "$OUT/lscpu.txt"
bertg4 bench --model random:bert_12_768_12 --task SST --engine pt --engine ort --recipe onednn-int8 \
  --recipe int8 --seq-lengths 128 --batch-sizes 1,8 --iters 40 --max-seconds 30 --rounds 6 --fresh \
  --no-progress --output "$OUT" > "$OUT/output.txt" 2>&1
