#!/usr/bin/env bash
# INT8 at fixed shapes beside ONNX Runtime's INT8, six rounds, twice on the same machine:
# kept/ with bertg4's default (freed memory kept in the heap), glibc_default/ with
# BERTG4_KEEP_FREED_MEMORY=0 (glibc's defaults, as every record before this one).
# Run from the repository root on a quiet machine: bash results/2026-12-01_cpu_allocator/run_int8.sh
set -eu
D=$(dirname "$0")
ARGS="--model random:bert_12_768_12 --task SST --engine pt --engine ort --recipe onednn-int8 --recipe int8
      --seq-lengths 128 --batch-sizes 1,8 --iters 40 --max-seconds 30 --rounds 6 --fresh --no-progress"
bertg4 bench $ARGS --output "$D/kept" > "$D/kept.txt" 2>&1
BERTG4_KEEP_FREED_MEMORY=0 bertg4 bench $ARGS --output "$D/glibc_default" > "$D/glibc_default.txt" 2>&1
