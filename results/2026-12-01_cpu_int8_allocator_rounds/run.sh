#!/usr/bin/env bash
# INT8 at batch 8 beside ONNX Runtime's INT8, the two allocator settings in turn: in each of four
# rounds one `bertg4 bench` round with bertg4's default (freed memory kept in the heap; kept_rN/)
# and one with BERTG4_KEEP_FREED_MEMORY=0 (glibc's defaults; default_rN/), the order swapped every
# round, so that the machine's drift falls on both settings alike. Every engine runs in a fresh
# process (--fresh). Run from the repository root on a quiet machine:
#   bash results/2026-12-01_cpu_int8_allocator_rounds/run.sh [OUT]
set -eu
OUT=${1:-results/2026-12-01_cpu_int8_allocator_rounds}
ARGS="--model random:bert_12_768_12 --task SST --engine pt --engine ort --recipe onednn-int8 --recipe int8
      --seq-lengths 128 --batch-sizes 8 --iters 40 --max-seconds 30 --rounds 1 --fresh --no-progress"
kept() { bertg4 bench $ARGS --output "$OUT/kept_r$1" > "$OUT/kept_r$1.txt" 2>&1; }
default() { BERTG4_KEEP_FREED_MEMORY=0 bertg4 bench $ARGS --output "$OUT/default_r$1" > "$OUT/default_r$1.txt" 2>&1; }
for r in 1 2 3 4; do
    if [ $((r % 2)) = 1 ]; then kept $r; default $r; else default $r; kept $r; fi
done
