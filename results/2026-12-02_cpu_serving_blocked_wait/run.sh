#!/usr/bin/env bash
# The MiniLM server of the closed-loop capacity record (results/2026-12-02_cpu_serving_closed_loop_capacity),
# loaded at five fractions of its closed-loop capacity, with every answer's x-bertg4-clock: each
# load record simulates the headline (the measured spread of service times, the time outside the
# handler less the batches a request waited for on its way in) and, beside it, the mean curve
# with that overhead (`*_mean_curve`) and the mean curve with all of it (`*_raw_overhead`, the
# headline of the earlier records). Every request is kept (requests.jsonl.gz).
#   run1 ... run4  max batch 4, as the earlier records
#   batch8         max batch 8 (offline throughput measured at batch 8 too)
# Up to 1,000 timed requests a level, at most 30 s. Run from the repository root on a quiet machine:
#   bash results/2026-12-02_cpu_serving_blocked_wait/run.sh [OUT]      # about 35 minutes
set -u
OUT=${1:-results/2026-12-02_cpu_serving_blocked_wait}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
LOAD="--capacity-fractions 0.2,0.35,0.5,0.65,0.8 --find-max --price-per-hour 0.17 --offline --requests 1000 --duration 30
      --keep-requests"
B8="--seq-length 64 --max-batch-size 8 --batch-wait-ms 5 --threads 2 --num-cpus 2"
RC=0
serve_and_load_runs "$OUT" 4 "$RECORD_SERVE --direct-ingress" $LOAD || RC=$?
serve_and_load batch8 "$OUT/batch8" "$B8 --direct-ingress" $LOAD > "$OUT/batch8.txt" 2>&1 || RC=$?
exit $RC
