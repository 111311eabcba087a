#!/usr/bin/env bash
# The peers on real traffic and at the article's fixed shape, on a 2-core Intel Xeon with AMX
# (amx_bf16, amx_int8; the CPU records of 2026-11-29 to 2026-12-02 before it ran on a 2-core
# AMD EPYC without it). Run from
# the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_amx_peers/run.sh [OUT]     # about 20 minutes (7 of them fine-tuning)
set -eu
OUT=${1:-results/2026-12-02_cpu_amx_peers}
bertg4 bench --model embedded --task SST --task embedding --engine pt --recipe baseline --recipe onednn-fp32 \
  --recipe bf16 --recipe onednn-int8 --traffic sst2-dev --padding packed --batch-sizes 32 --repeats 5 \
  --peers --fresh --no-progress --output "$OUT/traffic" > "$OUT/traffic.txt" 2>&1
bertg4 bench --model random:bert_12_768_12 --task SST --engine pt --engine ort --recipe baseline \
  --recipe onednn-fp32 --recipe bf16 --recipe onednn-int8 --recipe int8 --seq-lengths 128 --batch-sizes 1,8 \
  --iters 40 --max-seconds 20 --rounds 2 --fresh --no-progress --output "$OUT/fixed" > "$OUT/fixed.txt" 2>&1
# agreement with float32 on SST-2 dev (the fine-tuned MiniLM of the earlier INT8 records)
bertg4 finetune --task SST --schedule cpu --output /tmp/sst_cpu > "$OUT/finetune.txt" 2>&1
bertg4 accuracy --model /tmp/sst_cpu --engine pt --recipe baseline --recipe onednn-fp32 --recipe bf16 \
  --recipe onednn-int8 --recipe int8 --output "$OUT/agreement" > "$OUT/agreement.txt" 2>&1
