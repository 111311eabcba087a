#!/usr/bin/env bash
# The capacity record's server and load (results/2026-11-29_cpu_serving_capacity) on three servers
# one after the other (run1-run3); each record carries the simulator's percentiles with the mean
# service curve (p50/p99_ms_simulated) and, from the same run, with each batch's service time drawn
# from the measured spread (p50/p99_ms_simulated_spread). Run from the repository root on a quiet
# machine:  bash results/2026-12-01_cpu_serving_spread/run.sh [OUT]      # about 7 minutes
set -u
OUT=${1:-results/2026-12-01_cpu_serving_spread}
. "$(dirname "$0")/../../scripts/serve_ready.sh"
RC=0
for n in 1 2 3; do
    serve_and_load run$n "$OUT/run$n" "$RECORD_SERVE --direct-ingress" $RECORD_LOAD > "$OUT/run$n.txt" 2>&1 || RC=$?
done
exit $RC
