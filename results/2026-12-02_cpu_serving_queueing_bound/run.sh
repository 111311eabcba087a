#!/usr/bin/env bash
# The capacity record's server and load (results/2026-11-29_cpu_serving_capacity) twice on the
# embedded MiniLM (minilm_run1, minilm_run2), then the same batching on BERT-base's shapes with
# random weights (bert_base); each summary now carries the offline service curve per batch size
# and the queueing bound at the p99 target (an ideal server of that curve). Run from the
# repository root on a quiet machine:
#   bash results/2026-12-02_cpu_serving_queueing_bound/run.sh [OUT]      # about 11 minutes
set -u
OUT=${1:-results/2026-12-02_cpu_serving_queueing_bound}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
RC=0
for n in 1 2; do
    serve_and_load minilm_run$n "$OUT/minilm_run$n" "$RECORD_SERVE --direct-ingress" $RECORD_LOAD \
        > "$OUT/minilm_run$n.txt" 2>&1 || RC=$?
done
serve_and_load bert_base "$OUT/bert_base" "--model random:bert_12_768_12 $RECORD_SERVE --seq-length 128 --direct-ingress" \
    $RECORD_LOAD > "$OUT/bert_base.txt" 2>&1 || RC=$?
exit $RC
