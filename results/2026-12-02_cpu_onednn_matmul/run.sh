#!/usr/bin/env bash
# INT8 at the article's fixed shape beside ONNX Runtime's INT8, with the onednn rungs' float32
# matmuls on oneDNN (bertg4's default now) and on PyTorch's default library
# (BERTG4_ONEDNN_MATMUL=0), taking turns: four pairs of commands, the order swapped every pair,
# each command two rounds (the engines in fresh processes, taking turns). Then the kernels alone.
# Run from the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_onednn_matmul/run.sh      # about 20 minutes
set -eu
D=$(dirname "$0")
ARGS="--model random:bert_12_768_12 --task SST --engine pt --engine ort --recipe onednn-int8 --recipe int8
      --seq-lengths 128 --batch-sizes 1,8 --iters 40 --max-seconds 30 --rounds 2 --fresh --no-progress"
on()  { bertg4 bench $ARGS --output "$D/onednn_p$1" > "$D/onednn_p$1.txt" 2>&1; }
off() { BERTG4_ONEDNN_MATMUL=0 bertg4 bench $ARGS --output "$D/default_p$1" > "$D/default_p$1.txt" 2>&1; }
for p in 1 2 3 4; do
    if [ $((p % 2)) = 1 ]; then on $p; off $p; else off $p; on $p; fi
done
python "$D/kernels.py" > "$D/kernels.txt"
ONEDNN_VERBOSE=1 python "$D/verbose.py" | grep -e "^==" -e ",exec," > "$D/verbose.txt"
python "$D/summarize.py" > "$D/summary.txt"
# then the six-round command of results/2026-12-01_cpu_allocator/run_int8.sh as it runs now
bertg4 bench --model random:bert_12_768_12 --task SST --engine pt --engine ort --recipe onednn-int8 --recipe int8 \
    --seq-lengths 128 --batch-sizes 1,8 --iters 40 --max-seconds 30 --rounds 6 --fresh --no-progress \
    --output "$D/rounds6" > "$D/rounds6.txt" 2>&1
# agreement with float32 on SST-2 dev, both settings (needs the fine-tuned model:
#   bertg4 finetune --task SST --schedule cpu --output /tmp/sst_cpu   # about 10 minutes)
A="--model /tmp/sst_cpu --engine pt --recipe baseline --recipe onednn-fp32 --recipe onednn-int8"
bertg4 accuracy $A --output "$D/agreement" > "$D/agreement.txt" 2>&1
BERTG4_ONEDNN_MATMUL=0 bertg4 accuracy $A --output "$D/agreement_default" > "$D/agreement_default.txt" 2>&1
