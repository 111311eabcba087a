#!/usr/bin/env bash
# The capacity record's server (results/2026-11-29_cpu_serving_capacity) three times on the
# embedded MiniLM (minilm_run1..3), then once on BERT-base's shapes with random weights
# (bert_base): the load levels are fractions (20, 50, 65 and 80 %) of the capacity a closed loop
# measures, the simulated server turns requests away at the replica's bounded queues, and each
# level sends up to 2,000 timed requests (600 before), so that its p99 rests on about 20
# requests instead of 6. Run from the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_serving_closed_loop_capacity/run.sh [OUT]      # about 27 minutes
set -u
OUT=${1:-results/2026-12-02_cpu_serving_closed_loop_capacity}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
LOAD="--capacity-fractions 0.2,0.5,0.65,0.8 --find-max --price-per-hour 0.17 --offline --requests 2000 --duration 60"
RC=0
for n in 1 2 3; do
    serve_and_load minilm_run$n "$OUT/minilm_run$n" "$RECORD_SERVE --direct-ingress" $LOAD \
        > "$OUT/minilm_run$n.txt" 2>&1 || RC=$?
done
serve_and_load bert_base "$OUT/bert_base" "--model random:bert_12_768_12 $RECORD_SERVE --seq-length 128 --direct-ingress" \
    $LOAD > "$OUT/bert_base.txt" 2>&1 || RC=$?
exit $RC
