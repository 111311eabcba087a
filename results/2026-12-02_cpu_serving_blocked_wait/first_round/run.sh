#!/usr/bin/env bash
# The first round of this record, run to choose the simulator's headline (see ../README.md):
# the MiniLM server of the closed-loop capacity record, loaded at five fractions of its
# closed-loop capacity, with every answer's x-bertg4-clock. It ran the code of the record's
# commit except for the headline: its records' p50/p99_ms_simulated are the mean curve
# (today's `*_mean_curve`) and p50/p99_ms_simulated_spread the measured spread (today's
# headline), both with the overhead less the batches waited for on the way in; the
# `*_raw_overhead` fields are as today. No requests kept.
#   run1, run2  max batch 4, as the earlier records
#   batch8      max batch 8 (offline throughput measured at batch 8 too)
# Up to 1,000 timed requests a level, at most 30 s. Run from the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_serving_blocked_wait/first_round/run.sh [OUT]      # about 20 minutes
set -u
OUT=${1:-results/2026-12-02_cpu_serving_blocked_wait/first_round}
. "$(dirname "$0")/../../../scripts/serve_ready.sh"
LOAD="--capacity-fractions 0.2,0.35,0.5,0.65,0.8 --find-max --price-per-hour 0.17 --offline --requests 1000 --duration 30"
B8="--seq-length 64 --max-batch-size 8 --batch-wait-ms 5 --threads 2 --num-cpus 2"
RC=0
for n in 1 2; do
    serve_and_load run$n "$OUT/run$n" "$RECORD_SERVE --direct-ingress" $LOAD > "$OUT/run$n.txt" 2>&1 || RC=$?
done
serve_and_load batch8 "$OUT/batch8" "$B8 --direct-ingress" $LOAD > "$OUT/batch8.txt" 2>&1 || RC=$?
exit $RC
